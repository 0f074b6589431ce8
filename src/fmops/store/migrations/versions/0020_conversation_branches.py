"""regenerated and edited messages kept as branches (issue 18)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # A message's parent is the one it answers or follows; siblings (same parent) are the versions a
    # regenerate or an edit made. The conversation's leaf is the last message of the branch shown.
    op.add_column("conversation_messages", sa.Column("parent_id", sa.String(length=32), nullable=True))
    op.add_column("conversation_messages", sa.Column("endpoint", sa.String(length=200), nullable=True))
    op.add_column("conversation_messages", sa.Column("prompt_name", sa.String(length=200), nullable=True))
    op.add_column("conversation_messages", sa.Column("prompt_version", sa.Integer(), nullable=True))
    op.add_column("conversations", sa.Column("leaf_id", sa.String(length=32), nullable=True))
    op.add_column("conversations", sa.Column("params", JSON, nullable=True))
    # The conversations so far were linear: each message follows the one before it.
    op.execute(
        "UPDATE conversation_messages SET parent_id = ("
        " SELECT p.id FROM conversation_messages p"
        " WHERE p.conversation_id = conversation_messages.conversation_id"
        " AND p.seq < conversation_messages.seq ORDER BY p.seq DESC LIMIT 1)"
    )
    op.execute(
        "UPDATE conversations SET leaf_id = ("
        " SELECT m.id FROM conversation_messages m"
        " WHERE m.conversation_id = conversations.id ORDER BY m.seq DESC LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("params")
        batch_op.drop_column("leaf_id")
    with op.batch_alter_table("conversation_messages", schema=None) as batch_op:
        batch_op.drop_column("prompt_version")
        batch_op.drop_column("prompt_name")
        batch_op.drop_column("endpoint")
        batch_op.drop_column("parent_id")
