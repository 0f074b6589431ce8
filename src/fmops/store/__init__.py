"""Metadata store: SQLAlchemy models, engine and Alembic migrations (SQLite or PostgreSQL)."""

from fmops.store.engine import Store
from fmops.store.migrate import current_revision, head_revision, is_current, upgrade
from fmops.store.types import new_id, utcnow

__all__ = ["Store", "current_revision", "head_revision", "is_current", "new_id", "upgrade", "utcnow"]
