"""custom instructions and saved prompts per user (issue 18)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _owner_columns(table: str) -> list[Any]:
    return [
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f(f"fk_{table}_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "custom_instructions",
        sa.Column("id", sa.String(length=32), nullable=False),
        *_owner_columns("custom_instructions"),
        sa.Column("about", sa.Text(), nullable=False),
        sa.Column("style", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_instructions")),
        sa.UniqueConstraint("project_id", "user_id", name="uq_custom_instructions_project_user"),
    )
    op.create_table(
        "saved_prompts",
        sa.Column("id", sa.String(length=32), nullable=False),
        *_owner_columns("saved_prompts"),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("variables", JSON, nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("promoted_to", sa.String(length=100), nullable=True),
        sa.Column("promoted_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_prompts")),
        sa.UniqueConstraint("project_id", "user_id", "name", name="uq_saved_prompts_project_user_name"),
    )
    op.create_index("ix_saved_prompts_shared", "saved_prompts", ["project_id", "shared"])
    op.create_table(
        "conversation_tailoring",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("instructions", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_tailoring_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_conversation_tailoring")),
    )


def downgrade() -> None:
    op.drop_table("conversation_tailoring")
    op.drop_index("ix_saved_prompts_shared", table_name="saved_prompts")
    op.drop_table("saved_prompts")
    op.drop_table("custom_instructions")
