"""Example indexes that no dataset version holds any more: what deleting a dataset leaves behind.

An index is keyed by its project and the content hash of the records it was built from (index.py),
so versions with the same records share one; it is garbage once no version of that project has
its content hash. Removed by `fmops data sweep`, as the dataset files a crashed import left.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from fmops.store import Store
from fmops.store.models import Dataset, DatasetVersion

if TYPE_CHECKING:
    from fmops.artifacts import ArtifactStore

PREFIX = "fewshot"  # where index.py stores indexes (defined here: a sweep imports no numpy)


def sweep_indexes(store: Store, artifacts: ArtifactStore, *, older_than_seconds: float = 3600.0) -> list[str]:
    """Remove the indexes whose records no version of their project holds, written at least
    `older_than_seconds` ago (an index being built for a version saved meanwhile is left); the keys."""
    cutoff = time.time() - older_than_seconds
    keys = [k for k in artifacts.keys(PREFIX) if k.endswith(".npz")]
    if not keys:
        return []
    with store.session() as session:
        held = {
            (project_id, content_hash)
            for project_id, content_hash in session.execute(
                select(Dataset.project_id, DatasetVersion.content_hash).join(
                    Dataset, Dataset.id == DatasetVersion.dataset_id
                )
            ).all()
        }
    removed = []
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3:  # not an index this version of fmops wrote: left alone
            continue
        project_id, content_hash = parts[1], parts[2].split(".", 1)[0]
        if (project_id, content_hash) not in held and artifacts.modified(key) < cutoff:
            artifacts.delete(key)
            removed.append(key)
    return removed
