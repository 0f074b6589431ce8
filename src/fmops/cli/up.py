"""`fmops up`: start the platform."""

from __future__ import annotations

import typer

from fmops.cli.common import settings
from fmops.settings import load_settings


def up(
    host: str | None = typer.Option(None, help="Bind address (FMOPS_HOST); default 127.0.0.1"),
    port: int | None = typer.Option(None, help="Port (FMOPS_PORT); default 8000"),
    workers: int | None = typer.Option(None, help="Job worker processes (FMOPS_WORKERS)"),
    gateway_workers: int | None = typer.Option(
        None,
        help="Server processes on the one port (FMOPS_GATEWAY_WORKERS); default 1; more than 1 needs "
        "FMOPS_REDIS_URL, so that every process shares rate limits, budgets and the cache",
    ),
) -> None:
    """Migrate the database, create the first admin key if needed, start job workers and serve the API."""
    from fmops.server.runner import serve

    given = {"host": host, "port": port, "workers": workers, "gateway_workers": gateway_workers}
    overrides = {k: v for k, v in given.items() if v is not None}
    serve(load_settings(overrides) if overrides else settings())
