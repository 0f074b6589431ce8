"""An endpoint's `fewshot:` option checked when the endpoint is saved, and its index built then.

Saving is where a mistake is cheapest to hear about (a 400 naming `fewshot.dataset`), and where the
index of a new version is built (once), so no caller waits for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmops.errors import NotFound, UserError
from fmops.fewshot.schemas import FewshotSpec
from fmops.providers.base import ProviderError

if TYPE_CHECKING:
    from fmops.datasets import DatasetService
    from fmops.fewshot.index import ExampleIndex
    from fmops.settings import Settings
    from fmops.store import Store

WHERE = "fewshot.dataset"


def datasets_of(store: Store, settings: Settings) -> DatasetService:
    from fmops.artifacts import ArtifactStore
    from fmops.datasets import DatasetService

    return DatasetService(store, ArtifactStore.from_settings(settings))


def prepared(datasets: DatasetService, project_id: str, spec: FewshotSpec) -> ExampleIndex:
    """The option's index (built now if it was not), or a UserError naming what to fix."""
    from fmops.fewshot.index import ExampleIndex

    try:
        version = datasets.resolve(project_id, spec.dataset)
    except NotFound as exc:
        raise UserError(f"{WHERE}: {exc.message}", param=WHERE) from None
    try:
        return ExampleIndex.for_version(datasets, version, project_id=project_id)
    except UserError as exc:
        raise UserError(f"{WHERE}: {exc.message.removeprefix(WHERE + ': ')}", param=WHERE) from None
    except ProviderError as exc:
        raise UserError(
            f"{WHERE}: the example index of {spec.dataset} cannot be built: {exc.message}", param=WHERE
        ) from None
