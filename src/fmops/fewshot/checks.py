"""An endpoint's `fewshot:` option checked when the endpoint is saved, and a small index built then.

Saving is where a mistake is cheapest to hear about (a 400 naming `fewshot.dataset`). A version of
up to BUILD_ON_SAVE records has its index built then (seconds), so no call goes without; a larger
one is checked on a sample and built by the gateway at its first call, on a thread of its own (a
save does not wait minutes; `fmops data index` builds it ahead, with a progress bar).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmops.errors import NotFound, UserError
from fmops.fewshot.examples import demonstration
from fmops.fewshot.schemas import FewshotSpec
from fmops.providers.base import ProviderError

if TYPE_CHECKING:
    from fmops.datasets import DatasetService
    from fmops.settings import Settings
    from fmops.store import Store

WHERE = "fewshot.dataset"
BUILD_ON_SAVE = 2_000  # records; ~1 minute of MiniLM on one busy core
SAMPLE = 1_000  # records read to check a larger version demonstrates something


def datasets_of(store: Store, settings: Settings) -> DatasetService:
    from fmops.artifacts import ArtifactStore
    from fmops.datasets import DatasetService

    return DatasetService(store, ArtifactStore.from_settings(settings))


def prepared(datasets: DatasetService, project_id: str, spec: FewshotSpec) -> None:
    """Check the option (building a small version's index now); a UserError naming what to fix."""
    from fmops.fewshot.index import CACHE, ExampleIndex

    try:
        version = datasets.resolve(project_id, spec.dataset)
    except NotFound as exc:
        raise UserError(f"{WHERE}: {exc.message}", param=WHERE) from None
    if version.rows > BUILD_ON_SAVE and not CACHE.stored(datasets, version, project_id=project_id):
        sample = next(datasets.iter_records(version, batch_size=SAMPLE), [])
        if not any(demonstration(version.kind, record) for record in sample):
            raise UserError(
                f"{WHERE}: none of the first {len(sample):,} records of {spec.dataset} ({version.kind}) "
                "has both an input and an output to demonstrate",
                param=WHERE,
            )
        return
    try:
        ExampleIndex.for_version(datasets, version, project_id=project_id)
    except UserError as exc:
        raise UserError(f"{WHERE}: {exc.message.removeprefix(WHERE + ': ')}", param=WHERE) from None
    except ProviderError as exc:
        raise UserError(
            f"{WHERE}: the example index of {spec.dataset} cannot be built: {exc.message}", param=WHERE
        ) from None
