"""The registry generation of a project: one row every replica reads to know its cache is current.

Every change that alters what an endpoint serves (an endpoint saved, a prompt label moved) calls
`bump` in the same transaction, so a replica that reads the new number also sees the change.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fmops.store import upsert
from fmops.store.models import RegistryGeneration


def bump(session: Session, project_id: str) -> None:
    stmt = upsert.insert(session.get_bind().dialect.name, RegistryGeneration).values(
        project_id=project_id, generation=1
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["project_id"], set_={"generation": RegistryGeneration.generation + 1}
        )
    )


def current(session: Session, project_id: str) -> int:
    found = session.scalar(
        select(RegistryGeneration.generation).where(RegistryGeneration.project_id == project_id)
    )
    return int(found or 0)


__all__ = ["bump", "current"]
