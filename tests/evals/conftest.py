"""An eval world on each backend: the default project, its admin key, and models on the mock upstream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from fmops.auth import Principal
from fmops.catalog import ModelSpec
from fmops.evals.job import execute, service_for
from fmops.evals.service import EvalService
from fmops.platform import Platform
from fmops.store.models import EvalRun
from support.mock_upstream import MockUpstream


@dataclass
class EvalWorld:
    platform: Platform
    principal: Principal
    mock: MockUpstream

    @property
    def project(self) -> str:
        return self.principal.project_id

    @property
    def evals(self) -> EvalService:
        return EvalService(
            self.platform.store, self.platform.catalog, self.platform.jobs, lambda: self.platform.datasets
        )

    def add_model(self, alias: str, upstream: str = "m1", **extra: Any) -> None:
        spec = ModelSpec(alias=alias, provider="openai", model=upstream, base_url=self.mock.url, **extra)
        self.platform.catalog.add(self.project, spec, trusted=True)

    def run(self, suite: dict[str, Any] | str, **options: Any) -> EvalRun:
        """Start a run and execute its job here, as `fmops eval run` does; the finished run."""
        run = self.evals.start(self.project, suite, created_by_key_id=self.principal.key_id, **options)
        execute(self.platform.store, self.platform.settings, self.project, run.id)
        return self.evals.get_run(self.project, run.id)

    def runs(self) -> list[EvalRun]:
        with self.platform.store.session() as session:
            return list(session.scalars(select(EvalRun)))


@pytest.fixture
def world(platform: Platform, mock: MockUpstream) -> Iterator[EvalWorld]:
    key = platform.auth.bootstrap(platform.settings.home / "admin.key")
    assert key is not None
    principal = platform.auth.authenticate(key)
    mock.reset()
    w = EvalWorld(platform, principal, mock)
    w.add_model("mock-a", input_price=1.0, output_price=2.0)
    w.add_model("mock-b", "slow-20")
    yield w
    mock.reset()


__all__ = ["EvalWorld", "service_for"]
