"""traces: indexes for searching spans by status and by user

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 18:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_spans_project_status_start", "spans", ["project_id", "status", "start_time"], unique=False
    )
    op.create_index(
        "ix_spans_project_user_start", "spans", ["project_id", "user", "start_time"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_spans_project_user_start", table_name="spans")
    op.drop_index("ix_spans_project_status_start", table_name="spans")
