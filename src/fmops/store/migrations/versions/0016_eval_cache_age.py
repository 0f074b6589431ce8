"""eval cache age index: pruning reads the oldest entries first (issue 15)

The eval response cache is pruned by age (`eval_cache_days`) and size (`eval_cache_max_entries`);
both delete the oldest entries first, which without this index is a scan of the whole table.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 20:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_eval_cache_created_at", "eval_cache", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_eval_cache_created_at", table_name="eval_cache")
