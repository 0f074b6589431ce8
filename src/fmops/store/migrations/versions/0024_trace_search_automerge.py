"""trace search: FTS5 merges the search index's segments 8 at a time instead of 4 (SQLite)

FTS5 writes each indexing transaction's terms as one more segment, and merges segments as they
pile up (`automerge`, 4 by default). For the short inputs and outputs of typical spans the merging
was a third of the indexing's CPU: at 8, fmops.tracing.search_index indexes a span in ~13 µs
instead of ~19 (60,000 spans in transactions of 3,000), and a search's index lookup reads more
segments: ~1.5 ms instead of ~0.9 ms. Indexing runs beside span ingest on the same core, so that is
CPU given back to ingest (benchmarks/otlp_ingest.py). PostgreSQL: nothing (pg_trgm).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUTOMERGE = 8
DEFAULT_AUTOMERGE = 4  # FTS5's own


def _automerge(segments: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # A setting kept in the index's own config table.
        op.execute(
            sa.text("INSERT INTO spans_fts(spans_fts, rank) VALUES ('automerge', :n)").bindparams(n=segments)
        )


def upgrade() -> None:
    _automerge(AUTOMERGE)


def downgrade() -> None:
    _automerge(DEFAULT_AUTOMERGE)
