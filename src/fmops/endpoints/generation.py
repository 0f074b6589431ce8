"""The registry generation of a project: one row every replica reads to know its cache is current.

Every change that alters what an endpoint serves (an endpoint saved, a prompt label moved) calls
`bump` in the same transaction, so a replica that reads the new number also sees the change.
"""

from __future__ import annotations

import threading

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from fmops.store import upsert
from fmops.store.models import RegistryGeneration

_BUMPED = "fmops_generation_bumped"
_committed = [0]  # bumps this process has committed (fmops.endpoints.reader: reads made before are stale)
_lock = threading.Lock()


def local_changes() -> int:
    """How many transactions that bumped a generation this process has committed so far."""
    return _committed[0]


@event.listens_for(Session, "after_commit")
def _count(session: Session) -> None:
    if session.info.pop(_BUMPED, False):
        with _lock:
            _committed[0] += 1


def bump(session: Session, project_id: str) -> None:
    stmt = upsert.insert(session.get_bind().dialect.name, RegistryGeneration).values(
        project_id=project_id, generation=1
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["project_id"], set_={"generation": RegistryGeneration.generation + 1}
        )
    )
    session.info[_BUMPED] = True


def current(session: Session, project_id: str) -> int:
    found = session.scalar(
        select(RegistryGeneration.generation).where(RegistryGeneration.project_id == project_id)
    )
    return int(found or 0)


__all__ = ["bump", "current", "local_changes"]
