"""annotation: annotation queues, their copied items and people's decisions (issue 13)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "annotation_queues",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("filter", JSON, nullable=False),
        sa.Column("sampling_rate", sa.Float(), nullable=False),
        sa.Column("label_schema", JSON, nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("annotators", JSON, nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_annotation_queues_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_queues")),
        sa.UniqueConstraint("project_id", "name", name="uq_annotation_queues_project_name"),
    )
    op.create_table(
        "annotation_items",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=32), nullable=False),
        sa.Column("input", JSON, nullable=True),
        sa.Column("output", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["queue_id"],
            ["annotation_queues.id"],
            name=op.f("fk_annotation_items_queue_id_annotation_queues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_items")),
        sa.UniqueConstraint("queue_id", "trace_id", name="uq_annotation_items_queue_trace"),
    )
    op.create_index("ix_annotation_items_queue_position", "annotation_items", ["queue_id", "position"])
    op.create_index("ix_annotation_items_project_trace", "annotation_items", ["project_id", "trace_id"])
    op.create_table(
        "annotation_decisions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("user_name", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("corrected_output", JSON, nullable=True),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["annotation_items.id"],
            name=op.f("fk_annotation_decisions_item_id_annotation_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_decisions")),
        sa.UniqueConstraint("item_id", "user_id", name="uq_annotation_decisions_item_user"),
    )
    op.create_index("ix_annotation_decisions_queue", "annotation_decisions", ["queue_id"])


def downgrade() -> None:
    op.drop_index("ix_annotation_decisions_queue", table_name="annotation_decisions")
    op.drop_table("annotation_decisions")
    op.drop_index("ix_annotation_items_project_trace", table_name="annotation_items")
    op.drop_index("ix_annotation_items_queue_position", table_name="annotation_items")
    op.drop_table("annotation_items")
    op.drop_table("annotation_queues")
