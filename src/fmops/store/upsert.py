"""`INSERT … ON CONFLICT` for the dialect a statement runs on: one place instead of a
`postgresql.insert if … else sqlite.insert` in every writer, each dialect module imported on first use."""

from __future__ import annotations

from typing import Any


def insert(dialect: str, table: Any) -> Any:
    """The dialect's INSERT of `table` (a table or a mapped class), which has `on_conflict_do_…`."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise NotImplementedError(f"fmops stores data on SQLite or PostgreSQL, not {dialect}")
