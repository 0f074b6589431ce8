"""prompt optimisation runs and their candidates (issue 20)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "prompt_optimizations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("prompt_name", sa.String(length=100), nullable=False),
        sa.Column("start_version", sa.Integer(), nullable=False),
        sa.Column("optimizer", sa.String(length=100), nullable=False),
        sa.Column("suite_name", sa.String(length=100), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.Column("result", _json(), nullable=True),
        sa.Column("pushed_version", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_optimizations")),
    )
    op.create_index(
        "ix_prompt_optimizations_project_id", "prompt_optimizations", ["project_id", "id"], unique=False
    )
    op.create_table(
        "prompt_candidates",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("parent_seq", sa.Integer(), nullable=True),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("messages", _json(), nullable=False),
        sa.Column("opt_score", sa.Float(), nullable=True),
        sa.Column("opt_scores", _json(), nullable=False),
        sa.Column("heldout_score", sa.Float(), nullable=True),
        sa.Column("heldout_scores", _json(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["prompt_optimizations.id"],
            name=op.f("fk_prompt_candidates_run_id_prompt_optimizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_candidates")),
        sa.UniqueConstraint("run_id", "seq", name="uq_prompt_candidates_run_seq"),
    )


def downgrade() -> None:
    op.drop_table("prompt_candidates")
    op.drop_index("ix_prompt_optimizations_project_id", table_name="prompt_optimizations")
    op.drop_table("prompt_optimizations")
