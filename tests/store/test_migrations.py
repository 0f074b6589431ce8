"""The migrations and the models agree, and upgrading is repeatable, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from fmops.store import Store, current_revision, head_revision, migrate, upgrade
from fmops.store.migrate import modelled
from fmops.store.models import Base


def test_models_match_the_migrated_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": modelled})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"a model changed without a migration: {diff}"


def test_upgrade_twice_is_a_no_op(store: Store) -> None:
    before, after = upgrade(store)
    assert before == after == head_revision()
    assert current_revision(store) == head_revision()


def test_the_head_read_from_the_revision_files_is_alembics(store: Store) -> None:
    # `upgrade` answers "already at the head" without Alembic from these: they must agree with it.
    assert migrate._head_from_files() == head_revision()
    assert migrate._at_head(store) == head_revision()
    with store.engine.begin() as conn:  # a database behind the head is Alembic's to upgrade
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    assert migrate._at_head(store) is None
