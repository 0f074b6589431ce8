"""The migrations and the models agree, and upgrading is repeatable, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from fmops.store import Store, current_revision, head_revision, upgrade
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
