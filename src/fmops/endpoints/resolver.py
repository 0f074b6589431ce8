"""What an endpoint serves right now, cached per project and checked on every call.

The cache of a project is valid for one registry generation. Each call reads that one number (a
primary-key lookup); every change to an endpoint or a prompt label bumps it in the same
transaction, so a label moved through the API, the CLI or another replica is served on the very
next call, with no restart and no time-to-live to wait out. Between changes a call costs that
lookup and nothing else: prompt versions, models and guardrails are resolved once.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from fmops.auth import Audience, Principal
from fmops.endpoints.reader import GenerationReader
from fmops.endpoints.schemas import EndpointConfig, VariantSpec
from fmops.endpoints.service import endpoint_names
from fmops.errors import Conflict, FmopsError
from fmops.fewshot.retrieval import Retriever
from fmops.fewshot.schemas import FewshotSpec
from fmops.gateway.schemas import CacheOption
from fmops.guardrails.policy import Policy
from fmops.guardrails.schemas import endpoint_policy
from fmops.scorers.json_schema import validator
from fmops.store import Store
from fmops.store.models import Endpoint

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from fmops.prompts.schemas import PromptVersionView
    from fmops.prompts.service import PromptService


@dataclass(frozen=True)
class ServedVariant:
    """One way the endpoint answers: a concrete prompt version, model and merged params."""

    name: str | None  # None when the endpoint has no variants
    weight: float
    prompt: PromptVersionView | None
    model: str
    params: dict[str, Any]  # prompt version's < endpoint's < variant's
    schema: dict[str, Any] | None = None  # the prompt version's output schema
    checker: Validator | None = None


@dataclass(frozen=True)
class Resolved:
    name: str
    variants: tuple[ServedVariant, ...]
    sticky: str
    # Its `guardrails:` entries as the guardrail engine runs them (after the stored policies).
    guardrails: tuple[Policy, ...]
    cache: CacheOption | None
    fallbacks: tuple[str, ...]
    has_variants: bool
    _bounds: tuple[float, ...] = field(default=(), repr=False)
    # The registry generation it was resolved at: what the call's guardrail lookup is then told, so it
    # reads nothing more (fmops.guardrails.service.GuardrailService.policies).
    generation: int = 0
    # An output entry the answer must pass (`expect: pass`: contains, json, a minimum length) judges
    # the whole answer, which a stream's beginning would fail: such a stream is run whole and
    # replayed, as before. Entries that find what must not appear cut a stream where it appears.
    whole_output: bool = False
    # Who may call it (`access:`); None: every role. Someone else is answered as if it did not exist.
    access: Audience | None = None
    # Examples of a dataset version to insert into each call, and who finds them (fmops.fewshot).
    fewshot: FewshotSpec | None = None
    retriever: Retriever | None = field(default=None, repr=False)

    def admits(self, principal: Principal) -> bool:
        """Whether `principal` may call it: a rank comparison and a set lookup, nothing read."""
        return self.access is None or self.access.admits(principal)

    def choose(self, subject: str) -> ServedVariant:
        """The variant for `subject`: a stable hash of (endpoint, subject) placed over the weights,
        so a user keeps their variant across calls, servers and restarts."""
        if len(self.variants) == 1:
            return self.variants[0]
        return self.variants[bisect_right(self._bounds, position(self.name, subject))]


def position(endpoint: str, subject: str) -> float:
    """A point in [0, 1) fixed by (endpoint, subject)."""
    digest = hashlib.blake2b(f"{endpoint}\x00{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def bounds(weights: list[float]) -> tuple[float, ...]:
    """Upper bounds in [0, 1] of each variant's share; zero-weight variants get an empty share."""
    total = math.fsum(weights)
    edges = [w / total for w in accumulate(weights)]
    return (*edges[:-1], 1.0)


class _Miss:
    """Not in the cache (or cached for an older generation): load it."""


_MISS = _Miss()


def _served(found: Resolved | str | None) -> Resolved:
    if not isinstance(found, Resolved):
        raise Conflict(str(found), param="model", code="endpoint_misconfigured")
    return found


@dataclass
class _ProjectCache:
    generation: int
    names: dict[str, bool]  # endpoint name -> enabled
    resolved: dict[str, Resolved | str] = field(default_factory=dict)  # str: why it cannot serve


class EndpointResolver:
    def __init__(self, store: Store, prompts: PromptService, *, fewshot: Retriever | None = None) -> None:
        self.store = store
        self.prompts = prompts
        self.fewshot = fewshot  # None: endpoints' `fewshot:` options are not served (no examples)
        self.generations = GenerationReader(store)
        self._projects: dict[str, _ProjectCache] = {}
        self._lock = threading.Lock()

    async def resolve(self, project_id: str, name: str) -> Resolved | None:
        """The endpoint `name` as served now; None when no endpoint of that name serves (a model,
        then). A disabled endpoint is None too: its caller gets the unknown model's 404, word for
        word, so that the answer does not tell that it exists.

        Between changes this costs the generation read alone; the rest comes from the cache."""
        current = await self.generations.read(project_id)
        found = self._cached(project_id, name, current)
        if isinstance(found, _Miss):
            return await asyncio.to_thread(self._load_at, project_id, name, current)
        return found

    def resolve_now(self, project_id: str, name: str) -> Resolved | None:
        """`resolve`, blocking (for the CLI and tests)."""
        current = self.generations.read_now(project_id)
        found = self._cached(project_id, name, current)
        return self._load_at(project_id, name, current) if isinstance(found, _Miss) else found

    def _cached(self, project_id: str, name: str, current: int) -> Resolved | _Miss | None:
        with self._lock:
            cache = self._projects.get(project_id)
        if cache is None or cache.generation != current:
            return _MISS
        if not cache.names.get(name):  # none of that name, or disabled: not there (see resolve)
            return None
        found = cache.resolved.get(name)
        return _MISS if found is None else _served(found)

    def _load_at(self, project_id: str, name: str, current: int) -> Resolved | None:
        """Load what generation `current` serves (a read racing a change is fixed by the next one)."""
        with self._lock:
            cache = self._projects.get(project_id)
        if cache is None or cache.generation != current:
            with self.store.session() as session:
                cache = _ProjectCache(current, endpoint_names(session, project_id))
            with self._lock:
                self._projects[project_id] = cache
        if not cache.names.get(name):
            return None
        found = cache.resolved.get(name)
        if found is None:
            found = cache.resolved[name] = self._load(project_id, name, current)
        return _served(found)

    def close(self) -> None:
        self.generations.close()

    def _load(self, project_id: str, name: str, current: int) -> Resolved | str:
        with self.store.session() as session:
            row = session.scalars(
                select(Endpoint).where(Endpoint.project_id == project_id, Endpoint.name == name)
            ).first()
        if row is None:
            return f"endpoint {name!r} was deleted while it was being read; retry"
        try:
            return self._build(project_id, name, EndpointConfig.model_validate(row.config), current)
        except FmopsError as exc:
            # Something it names is gone (a label removed, a prompt deleted): say what, every call,
            # until an engineer fixes the endpoint (which bumps the generation and clears this).
            return (
                f"endpoint {name!r} cannot serve: {exc.message}; fix it with `fmops endpoints update {name}`"
            )

    def _build(self, project_id: str, name: str, config: EndpointConfig, current: int) -> Resolved:
        versions: dict[tuple[int | None, str | None], PromptVersionView] = {}

        def version(number: int | None, label: str | None) -> PromptVersionView | None:
            if config.prompt is None:
                return None
            key = (number, label)
            if key not in versions:
                versions[key] = self.prompts.get(project_id, config.prompt, version=number, label=label)
            return versions[key]

        arms: list[VariantSpec | None] = [*config.variants] or [None]
        variants = []
        for arm in arms:
            pinned = arm is not None and (arm.version is not None or arm.label is not None)
            served = (
                version(arm.version, arm.label)
                if arm is not None and pinned
                else version(config.version, config.label)
            )
            model = (arm.model if arm else None) or config.model or (served.model if served else None)
            if model is None:
                raise Conflict("no model to call: set `model` on the endpoint")
            params = {**(served.params if served else {}), **config.params, **(arm.params if arm else {})}
            schema = served.output_schema if served else None
            variants.append(
                ServedVariant(
                    name=arm.name if arm else None,
                    weight=arm.weight if arm else 1.0,
                    prompt=served,
                    model=model,
                    params=params,
                    schema=schema,
                    checker=validator(schema) if schema else None,
                )
            )
        return Resolved(
            name=name,
            variants=tuple(variants),
            sticky=config.sticky,
            guardrails=tuple(endpoint_policy(name, g) for g in config.guardrails),
            cache=config.cache,
            fallbacks=tuple(config.fallbacks),
            has_variants=bool(config.variants),
            _bounds=bounds([v.weight for v in variants]),
            generation=current,
            whole_output=any(g.on == "output" and g.expect == "pass" for g in config.guardrails),
            access=Audience.of(config.access.roles, config.access.users) if config.access else None,
            fewshot=config.fewshot,
            retriever=self.fewshot if config.fewshot else None,
        )
