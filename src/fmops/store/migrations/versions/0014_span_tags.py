"""span tags: tags on spans (Langfuse's trace tags), for the trace filters' `tags` (issue 13)

A call carries tags (the OpenAI body's `metadata.tags`, comma-separated; OTLP `fmops.tags` or
`langfuse.trace.tags`). Each is a row of `span_tags`, written by the trace writer in the span's own
transaction. The span's start time is copied into the row so that a tag filter reads its spans
newest first from (project_id, tag, start_time, span_id), without sorting every span of the tag.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "span_tags",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "span_id", "tag", name=op.f("pk_span_tags")),
    )
    op.create_index(
        "ix_span_tags_project_tag_start", "span_tags", ["project_id", "tag", "start_time", "span_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_span_tags_project_tag_start", table_name="span_tags")
    op.drop_table("span_tags")
