"""Start, with the server, the models whose provider runs something of its own (a managed vLLM
server loads for minutes): the first call then finds it loading or ready instead of launching it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import select

from fmops.catalog import Catalog
from fmops.catalog.entry import ModelEntry
from fmops.errors import UserError
from fmops.gateway.service import Gateway
from fmops.providers.registry import get_provider_class
from fmops.store import Store
from fmops.store.models import CatalogModel

__all__ = ["ProviderWarmup"]

log = logging.getLogger(__name__)


class ProviderWarmup:
    """A platform service: on start, each such model's provider is built by the gateway (the very
    instance calls will use) and started, in the background; the gateway closes them."""

    def __init__(self, store: Store, catalog: Catalog, gateway: Gateway) -> None:
        self.store = store
        self.catalog = catalog
        self.gateway = gateway
        self._task: asyncio.Task[None] | None = None

    def _entries(self) -> list[ModelEntry]:
        with self.store.session() as session:
            rows = session.execute(
                select(CatalogModel.project_id, CatalogModel.alias, CatalogModel.provider)
            ).all()
        starts: dict[str, bool] = {}
        for _, _, name in rows:  # only the providers in use are imported
            if name not in starts:
                try:
                    starts[name] = get_provider_class(name).starts_with_server
                except UserError:  # a plugin uninstalled since: its calls say so
                    starts[name] = False
        return [self.catalog.models(project)[alias] for project, alias, name in rows if starts[name]]

    async def _warm(self) -> None:
        for entry in await asyncio.to_thread(self._entries):
            try:
                await self.gateway.provider(entry).start()
            except Exception:  # the first call reports it to its caller
                log.exception("model could not be started", extra={"model": entry.alias})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._warm())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
