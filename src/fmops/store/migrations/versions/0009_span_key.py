"""span key: spans keyed by (project_id, span_id), so two projects may store the same span id

A span id comes from the caller (OTLP ingest, a traceparent header); with `span_id` alone as the key,
a span another project stored first under the same id made this project's span be dropped as a
replay.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 03:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _primary_key(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a primary key: the table is copied (its indexes with it).
        with op.batch_alter_table("spans", recreate="always") as batch:
            batch.drop_constraint("pk_spans", type_="primary")
            batch.create_primary_key("pk_spans", columns)
    else:
        op.drop_constraint("pk_spans", "spans", type_="primary")
        op.create_primary_key("pk_spans", "spans", columns)


def upgrade() -> None:
    _primary_key(["project_id", "span_id"])


def downgrade() -> None:
    # Fails, as it must, where two projects now hold the same span id.
    _primary_key(["span_id"])
