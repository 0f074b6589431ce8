"""`fmops up`: start the platform."""

from __future__ import annotations

import typer

from fmops.cli.common import settings
from fmops.settings import load_settings


def up(
    host: str | None = typer.Option(None, help="Bind address (FMOPS_HOST); default 127.0.0.1"),
    port: int | None = typer.Option(None, help="Port (FMOPS_PORT); default 8000"),
    workers: int | None = typer.Option(None, help="Job worker processes (FMOPS_WORKERS)"),
) -> None:
    """Migrate the database, create the first admin key if needed, start job workers and serve the API."""
    from fmops.server.runner import serve

    overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    serve(load_settings(overrides) if overrides else settings())
