"""`fmops db`: the metadata database."""

from __future__ import annotations

import typer

from fmops.cli.common import console, settings
from fmops.store import Store, current_revision, head_revision, upgrade

app = typer.Typer(help="Metadata database: migrations and status.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision")) -> None:
    """Apply pending migrations (the server also does this on start)."""
    s = settings()
    s.home.mkdir(parents=True, exist_ok=True)
    store = Store(s.database_url)
    try:
        before, after = upgrade(store, revision)
    finally:
        store.dispose()
    if before == after:
        console.print(f"database already at revision {after}")
    else:
        console.print(f"database migrated from {before or 'empty'} to {after}")


@app.command("status")
def db_status() -> None:
    """Show the database URL (without password) and its revision."""
    s = settings()
    store = Store(s.database_url)
    try:
        current = current_revision(store)
    finally:
        store.dispose()
    head = head_revision()
    # A long URL stays on its line (and is text, not markup), whatever the terminal width.
    console.print(
        f"url: {store.engine.url.render_as_string(hide_password=True)}", markup=False, soft_wrap=True
    )
    console.print(
        f"revision: {current or 'empty'} (latest {head})" + ("" if current == head else " - run upgrade")
    )
