"""Guardrail policies of a project: kept in the store, checked when written, served from a cache.

Writing: every policy is checked against what it names before it is stored (its guardrail and that
guardrail's config, the model or endpoint it is attached to, an action the guardrail can take, a stage
it can run at); what is wrong comes back as one 400 naming each bad field. Each change bumps the
project's registry generation in the same transaction, as endpoint changes do.

Serving (`policies`): a project's enabled policies are loaded and their guardrails built once per
registry generation, as `fmops.endpoints.resolver` caches endpoints, and each call picks the
project's, the model's and the endpoint's policies out of that cache. Which generation is current:

- an endpoint call passes the one its resolver has just read (nothing more is read), so a change
  applies on the very next endpoint call, wherever it was made;
- a plain model call reads the generation at most once every `RECHECK_SECONDS` per project (a
  primary-key lookup, but a round trip to PostgreSQL that model calls did not pay before guardrails).
  A change made through this service (the API, the console, and so the replica that made it) applies
  at once: it forgets the project's last check synchronously. A change made on another replica, or
  by the CLI against the same database, applies within `RECHECK_SECONDS`.

A stored policy that no longer builds (its plugin uninstalled, its config refused after an upgrade)
serves as a check that cannot decide: its `on_error` says whether calls it covers fail or pass.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fmops.catalog import Catalog
from fmops.endpoints import generation
from fmops.endpoints.reader import GenerationReader
from fmops.endpoints.service import endpoint_names, guardrail_entry_labels
from fmops.errors import Conflict, FmopsError, NotFound, UserError
from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, GuardrailError, Stage
from fmops.guardrails.checks.judge import Judge, RegistryRef, prompt_problem
from fmops.guardrails.policy import Action, Policy, PolicySpec, Scope
from fmops.guardrails.registry import AnyGuardrail, build, guardrails
from fmops.guardrails.schemas import (
    Applied,
    AttachedPolicy,
    Change,
    PolicyView,
    fields,
    joined,
)
from fmops.prompts.schemas import PromptVersionView
from fmops.prompts.service import PromptService
from fmops.store import Store, utcnow
from fmops.store.models import GuardrailPolicy

log = logging.getLogger(__name__)
Policies = tuple[Policy, ...]
NONE: Policies = ()
SPAN_ACTIONS = frozenset({Action.redact, Action.mask})
# How long a replica serves a project's policies without reading its registry generation again, on
# calls that did not read it already (plain model calls). Reading it on every call cost ~0.3-0.6 ms
# on PostgreSQL (a round trip; ~10 us on SQLite); once a second it costs nothing per call. The price:
# a change made on another replica (or by the CLI) applies up to this long later; the replica that
# made it applies it at once. Shorter costs more reads, longer delays other replicas' changes.
RECHECK_SECONDS = 1.0
# How long a plain model call waits for that read when policies are already known; past it (the
# database is down or unreachable) the known ones are served and the read finishes on its own.
READ_SECONDS = 0.25
# Aliases: inside GuardrailService, `list` is the method's name.
Views = list[PolicyView]
Done = list[Applied]


class Unbuildable(Guardrail[Any]):
    """Stands in for a stored policy whose guardrail no longer builds: every check cannot decide."""

    name: ClassVar[str] = "unbuildable"
    description: ClassVar[str] = "A stored policy whose guardrail could not be built"

    def __init__(self, why: str) -> None:
        super().__init__(GuardrailConfig())
        self.why = why

    def check(self, text: str, context: Context) -> Decision:
        raise GuardrailError(self.why)


@dataclass(frozen=True)
class _Served:
    """What one registry generation of a project serves."""

    generation: int
    project: Policies = NONE
    models: dict[str, Policies] = field(default_factory=dict)
    endpoints: dict[str, Policies] = field(default_factory=dict)
    # Each stored row (scope, target, spec as JSON) and what it built: the next generation reuses it.
    built: dict[str, Policy | None] = field(default_factory=dict)

    def pick(self, model: str | None, endpoint: str | None) -> Policies:
        found_model = self.models.get(model, NONE) if model and self.models else NONE
        found_endpoint = self.endpoints.get(endpoint, NONE) if endpoint and self.endpoints else NONE
        if not (found_model or found_endpoint):
            return self.project
        return self.project + found_model + found_endpoint


class _Names:
    """The project's model aliases and endpoint names, each read once and only when a check needs it."""

    def __init__(self, service: GuardrailService, project_id: str) -> None:
        self.service, self.project_id = service, project_id
        self._models: frozenset[str] | None = None
        self._endpoints: frozenset[str] | None = None

    def models(self) -> frozenset[str]:
        if self._models is None:
            self._models = frozenset(self.service.catalog.models(self.project_id))
        return self._models

    def endpoints(self) -> frozenset[str]:
        if self._endpoints is None:
            with self.service.store.session() as session:
                self._endpoints = frozenset(endpoint_names(session, self.project_id))
        return self._endpoints


class GuardrailService:
    def __init__(self, store: Store, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog
        self.generations = GenerationReader(store)
        self._served: dict[str, _Served] = {}
        self._building: dict[str, threading.Lock] = {}  # a project's one build at a time
        # Until when (time.monotonic) a project's served policies stand without reading its generation.
        self._fresh_until: dict[str, float] = {}
        self._changes = 0  # this service's own changes: a check that raced one is not trusted
        self._reading: dict[str, asyncio.Future[int]] = {}  # each project's generation read in flight
        self._lock = threading.Lock()

    # --- serving --------------------------------------------------------------------------------

    async def policies(
        self, project_id: str, *, model: str | None, endpoint: str | None, generation: int | None = None
    ) -> Policies:
        """The enabled policies a call to `model` (through `endpoint`, if any) runs: the project's,
        then the model's, then the endpoint's, each in name order. `generation`: the project's registry
        generation when the caller has just read it (it is then not read again); without it, the
        generation is read when the project's last check is older than `RECHECK_SECONDS`."""
        if generation is not None:
            return (await self._at(project_id, generation)).pick(model, endpoint)
        served = self._recent(project_id)
        if served is None:
            served = await self._check(project_id)
        return served.pick(model, endpoint)

    async def _check(self, project_id: str) -> _Served:
        """Read the project's generation and serve it. One read at a time per project: calls that come
        while it is in flight serve the policies known. A read that fails or outlasts `READ_SECONDS`
        (the database is down or cut off) serves them too, and the next check waits a window: plain
        model calls answer from their caches through an outage, as they did before guardrails. With
        nothing known yet (a fresh process), the call waits for the read and its error is the call's."""
        known = self._served.get(project_id)
        inflight = self._reading.get(project_id)
        if inflight is not None and known is not None:
            return known
        since, changes = monotonic(), self._changes
        if inflight is None:
            inflight = self._reading[project_id] = asyncio.ensure_future(self.generations.read(project_id))
            inflight.add_done_callback(lambda done: self._read_done(project_id, done))
        if known is None:
            current = await asyncio.shield(inflight)
        else:
            try:
                current = await asyncio.wait_for(asyncio.shield(inflight), READ_SECONDS)
            except Exception as exc:  # TimeoutError, Unavailable: the last known policies stand
                log.warning(
                    "guardrail policies of project %s served as last known: %s",
                    project_id,
                    type(exc).__name__,
                )
                with self._lock:
                    self._fresh_until[project_id] = monotonic() + RECHECK_SECONDS
                return known
        served = await self._at(project_id, current)
        self._checked(project_id, since, changes)
        return served

    def policies_now(self, project_id: str, *, model: str | None, endpoint: str | None) -> Policies:
        """`policies` without a generation, blocking (for jobs and tests)."""
        served = self._recent(project_id)
        if served is None:
            since, changes = monotonic(), self._changes
            current = self.generations.read_now(project_id)
            known = self._served.get(project_id)
            served = (
                known
                if known is not None and known.generation == current
                else self._load(project_id, current)
            )
            self._checked(project_id, since, changes)
        return served.pick(model, endpoint)

    async def _at(self, project_id: str, current: int) -> _Served:
        served = self._served.get(project_id)
        if served is None or served.generation != current:
            served = await asyncio.to_thread(self._load, project_id, current)
        return served

    def _recent(self, project_id: str) -> _Served | None:
        """The project's served policies while its last generation check stands, else None."""
        served = self._served.get(project_id)
        if served is None or self._fresh_until.get(project_id, 0.0) <= monotonic():
            return None
        return served

    def _checked(self, project_id: str, since: float, changes: int) -> None:
        """The generation read from `since` on is served: trust it for `RECHECK_SECONDS` from then,
        unless this service changed a policy meanwhile (the read may predate that change)."""
        with self._lock:
            if self._changes == changes:
                self._fresh_until[project_id] = since + RECHECK_SECONDS

    def _read_done(self, project_id: str, done: asyncio.Future[int]) -> None:
        if self._reading.get(project_id) is done:
            del self._reading[project_id]
        if not done.cancelled():
            done.exception()  # retrieved: a read nobody awaited any more is not an unhandled error

    def _forget(self, project_id: str) -> None:
        """After this service's own change committed: the next call reads the generation again (a
        read already in flight may predate the change: it is not waited for)."""
        with self._lock:
            self._changes += 1
            self._fresh_until.pop(project_id, None)
            self._reading.pop(project_id, None)

    @contextmanager
    def _change(self, project_id: str) -> Iterator[Session]:
        """A write transaction that changes the project's policies, applied here once it commits."""
        with self.store.write() as session:
            yield session
        self._forget(project_id)

    def close(self) -> None:
        self.generations.close()

    def _load(self, project_id: str, current: int) -> _Served:
        """Build what generation `current` serves (a read racing a change is fixed by the next call,
        which sees the newer generation). One build at a time per project, and a policy stored as it
        was is not built again: a generation bumped by another change (an endpoint saved, a label
        moved) costs a read of the rows, not a reload of a classifier."""
        with self._lock:
            building = self._building.setdefault(project_id, threading.Lock())
        with building:
            known = self._served.get(project_id)
            if known is not None and known.generation >= current:
                return known  # built meanwhile, by the call this one waited for
            with self.store.session() as session:
                rows = session.execute(
                    select(GuardrailPolicy.scope, GuardrailPolicy.target, GuardrailPolicy.spec)
                    .where(GuardrailPolicy.project_id == project_id)
                    .order_by(GuardrailPolicy.scope, GuardrailPolicy.target, GuardrailPolicy.name)
                ).all()
            before = known.built if known is not None else {}
            built: dict[str, Policy | None] = {}
            project: list[Policy] = []
            by_target: dict[Scope, dict[str, list[Policy]]] = {Scope.model: {}, Scope.endpoint: {}}
            for scope_name, target, raw in rows:
                key = orjson.dumps([scope_name, target, raw], option=orjson.OPT_SORT_KEYS).decode()
                kept = before.get(key)
                reuse = key in before and not (kept is not None and isinstance(kept.guardrail, Unbuildable))
                policy = kept if reuse else _served_policy(Scope(scope_name), target, raw)
                built[key] = policy
                if policy is None:
                    continue
                if isinstance(policy.guardrail, Judge) and policy.guardrail.registry_ref is not None:
                    # Resolved again for each generation: a label moved (which bumps it) applies.
                    ref = policy.guardrail.registry_ref
                    policy.guardrail.bind_prompt(self._judge_prompt(project_id, ref))
                if policy.scope is Scope.project:
                    project.append(policy)
                else:
                    by_target[policy.scope].setdefault(target, []).append(policy)
            served = _Served(
                current,
                tuple(project),
                {k: tuple(v) for k, v in by_target[Scope.model].items()},
                {k: tuple(v) for k, v in by_target[Scope.endpoint].items()},
                built,
            )
            with self._lock:
                self._served[project_id] = served
            return served

    # --- reading --------------------------------------------------------------------------------

    def list(self, project_id: str, *, scope: Scope | None = None, target: str | None = None) -> Views:
        query = select(GuardrailPolicy).where(GuardrailPolicy.project_id == project_id)
        if scope is not None:
            query = query.where(GuardrailPolicy.scope == scope.value)
        if target is not None:
            query = query.where(GuardrailPolicy.target == target)
        order = {Scope.project: 0, Scope.model: 1, Scope.endpoint: 2}
        with self.store.session() as session:
            views = [_view(row) for row in session.scalars(query)]
        return sorted(views, key=lambda v: (order[v.scope], v.target, v.name))

    def get(self, project_id: str, scope: Scope, target: str, name: str) -> PolicyView:
        with self.store.session() as session:
            return _view(self._row(session, project_id, scope, target, name))

    # --- changing -------------------------------------------------------------------------------

    def create(self, project_id: str, policy: AttachedPolicy, *, actor: str | None) -> PolicyView:
        """A new policy; 409 when its scope and target already have one of that name."""
        self.check(project_id, [policy])
        with self._change(project_id) as session:
            if self._find(session, project_id, *policy.key) is not None:
                raise Conflict(
                    f"policy {_label(policy)!r} already exists; change it with PUT or "
                    "`fmops guardrails apply`, or pick another name",
                    param="name",
                )
            _no_entry_clash(session, project_id, [policy])
            row = self._insert(session, project_id, policy, actor)
            generation.bump(session, project_id)
            return _view(row)

    def apply(self, project_id: str, policies: Sequence[AttachedPolicy], *, actor: str | None) -> Done:
        """Create or replace each policy (none is removed): all of them or, when one is wrong, none.
        Applying the same list twice changes nothing the second time (each says "unchanged")."""
        seen: dict[tuple[Scope, str, str], int] = {}
        for i, policy in enumerate(policies):
            if policy.key in seen:
                raise UserError(
                    f"policies.{i}: {_label(policy)!r} is also policies.{seen[policy.key]}; "
                    "each must appear once",
                    param=f"policies.{i}.name",
                )
            seen[policy.key] = i
        self.check(project_id, policies, numbered=len(policies) > 1)
        done: Done = []
        with self._change(project_id) as session:
            _no_entry_clash(session, project_id, policies, numbered=len(policies) > 1)
            for policy in policies:
                row = self._find(session, project_id, *policy.key)
                change: Change
                if row is None:
                    row, change = self._insert(session, project_id, policy, actor), "created"
                elif row.spec == (stored := policy.spec().model_dump(mode="json")):
                    change = "unchanged"
                else:
                    row.spec, row.updated_by, row.updated_at = stored, actor, utcnow()
                    change = "updated"
                done.append(Applied(change, _view(row)))
            if any(a.change != "unchanged" for a in done):
                generation.bump(session, project_id)
        return done

    def set_enabled(
        self, project_id: str, scope: Scope, target: str, name: str, enabled: bool, *, actor: str | None
    ) -> PolicyView:
        """Switch a policy on or off, unchecked otherwise: a policy whose guardrail no longer builds
        (its plugin uninstalled) can still be turned off."""
        with self._change(project_id) as session:
            row = self._row(session, project_id, scope, target, name)
            if bool(row.spec.get("enabled", True)) != enabled:
                row.spec = {**row.spec, "enabled": enabled}
                row.updated_by, row.updated_at = actor, utcnow()
                generation.bump(session, project_id)
            return _view(row)

    def delete(
        self, project_id: str, scope: Scope, target: str, name: str, *, actor: str | None
    ) -> PolicyView:
        with self._change(project_id) as session:
            row = self._row(session, project_id, scope, target, name)
            view = _view(row)
            session.delete(row)
            generation.bump(session, project_id)
        log.info("guardrail policy deleted", extra={"policy": view.label, "actor": actor})
        return view

    # --- checks ---------------------------------------------------------------------------------

    def check(self, project_id: str, policies: Sequence[AttachedPolicy], *, numbered: bool = False) -> None:
        """Everything each policy names exists and fits; one 400 naming every bad field otherwise."""
        known = guardrails()
        names = _Names(self, project_id)
        found: list[str] = []
        first: str | None = None
        for i, policy in enumerate(policies):
            where = f"policies.{i}." if numbered else ""
            targets: Iterable[str] = (
                names.models() if policy.scope is Scope.model
                else names.endpoints() if policy.scope is Scope.endpoint
                else ()
            )  # fmt: skip
            problems = _policy_problems(policy, known, targets)
            cls = known.get(policy.guardrail)
            judge = policy.config.get("model") if cls is not None and cls.needs_model else None
            if isinstance(judge, str) and judge not in names.models() and judge not in names.endpoints():
                listing = ", ".join(sorted({*names.models(), *names.endpoints()})) or "none yet"
                why = f"{judge!r} is neither a model nor an endpoint of this project; known: {listing}"
                problems.append(("config.model", why))
            prompt = policy.config.get("prompt") if cls is not None and cls.needs_model else None
            ref = RegistryRef.parse(prompt) if isinstance(prompt, str) else None
            if ref is not None and not any(param in ("config", "config.prompt") for param, _ in problems):
                resolved = self._judge_prompt(project_id, ref)
                unusable = resolved if isinstance(resolved, str) else prompt_problem(resolved)
                if unusable is not None:
                    problems.append(("config.prompt", unusable))
            for param, why in problems:
                found.append(f"{where}{param}: {why}")
                first = first or f"{where}{param}"
        if found:
            raise UserError(joined(found), param=first)

    def _judge_prompt(self, project_id: str, ref: RegistryRef) -> PromptVersionView | str:
        """The registry's version a judge's prompt reference names now, or why there is none."""
        try:
            return PromptService(self.store, self.catalog).get(
                project_id, ref.name, version=ref.version, label=ref.label
            )
        except FmopsError as exc:
            return f"judge prompt {str(ref)!r}: {exc.message}"

    # --- rows -----------------------------------------------------------------------------------

    @staticmethod
    def _insert(
        session: Session, project_id: str, policy: AttachedPolicy, actor: str | None
    ) -> GuardrailPolicy:
        now = utcnow()
        row = GuardrailPolicy(
            project_id=project_id,
            scope=policy.scope.value,
            target=policy.target,
            name=policy.name,
            spec=policy.spec().model_dump(mode="json"),
            created_by=actor,
            updated_by=actor,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row

    @staticmethod
    def _find(
        session: Session, project_id: str, scope: Scope, target: str, name: str
    ) -> GuardrailPolicy | None:
        return session.scalars(
            select(GuardrailPolicy).where(
                GuardrailPolicy.project_id == project_id,
                GuardrailPolicy.scope == scope.value,
                GuardrailPolicy.target == target,
                GuardrailPolicy.name == name,
            )
        ).first()

    def _row(
        self, session: Session, project_id: str, scope: Scope, target: str, name: str
    ) -> GuardrailPolicy:
        row = self._find(session, project_id, scope, target, name)
        if row is None:
            where = "the project" if scope is Scope.project else f"{scope} {target!r}"
            raise NotFound(
                f"no policy named {name!r} on {where}; see `fmops guardrails policies`", param="name"
            )
        return row


def _policy_problems(
    policy: AttachedPolicy, known: dict[str, AnyGuardrail], targets: Iterable[str]
) -> list[tuple[str, str]]:
    """(field, why) for each thing wrong with `policy` beyond its shape."""
    found: list[tuple[str, str]] = []
    if policy.scope is not Scope.project and policy.target not in targets:
        listing = ", ".join(sorted(targets)) or "none yet"
        noun = "model" if policy.scope is Scope.model else "endpoint"
        found.append(("target", f"{noun} {policy.target!r} does not exist in this project; known: {listing}"))
    cls = known.get(policy.guardrail)
    if cls is None:
        listing = ", ".join(sorted(known)) or "none are installed"
        found.append(("guardrail", f"unknown guardrail {policy.guardrail!r}; known guardrails: {listing}"))
        return found
    cannot = sorted(s.value for s in policy.spec().stages - cls.stages)
    if cannot:
        can = " or ".join(sorted(s.value for s in cls.stages))
        found.append(("on", f"guardrail {policy.guardrail!r} cannot check the {cannot[0]}; it runs on {can}"))
    if policy.action in SPAN_ACTIONS and not cls.spans:
        found.append(
            (
                "action",
                f"{policy.action} needs the spans of what was found, and guardrail {policy.guardrail!r} "
                "finds none: use block or flag",
            )
        )
    if policy.action is Action.retry and policy.on != "output":
        found.append(("action", "retry asks the model again, so it checks the output only: set `on: output`"))
    try:
        cls.Config.model_validate(dict(policy.config))
    except ValidationError as exc:
        found.extend(fields(exc, "config."))
        return found
    try:
        build(policy.guardrail, policy.config)
    except UserError as exc:
        # What only the built guardrail can tell (a pattern that backtracks): said after G1's prefix.
        found.append(
            ("config", exc.message.removeprefix(f"invalid config for guardrail {policy.guardrail!r}: "))
        )
    return found


def _no_entry_clash(
    session: Session, project_id: str, policies: Sequence[AttachedPolicy], *, numbered: bool = False
) -> None:
    """An endpoint's `guardrails:` entry runs as the policy `endpoint:<endpoint>/<label>`: a stored
    policy of that endpoint may not take the same name (a trace, an error and the "blocked by"
    filter could not tell them apart). A 409 naming both."""
    entries: dict[str, list[str]] = {}
    for i, policy in enumerate(policies):
        if policy.scope is not Scope.endpoint:
            continue
        if policy.target not in entries:
            entries[policy.target] = guardrail_entry_labels(session, project_id, policy.target)
        labels = entries[policy.target]
        if policy.name in labels:
            where = f"policies.{i}." if numbered else ""
            raise Conflict(
                f"{where}name: policy {_label(policy)!r} would share its label with guardrails."
                f"{labels.index(policy.name)} of endpoint {policy.target!r} (its entry {policy.name!r}, "
                "which runs under that label); pick another name, or remove the entry from the "
                f"endpoint first (`fmops endpoints update {policy.target} --file ...` without it)",
                param=f"{where}name",
            )


def _served_policy(scope: Scope, target: str, raw: dict[str, Any]) -> Policy | None:
    """The stored policy ready to run; None when disabled. One that no longer builds serves as a check
    that cannot decide (its on_error then blocks or lets calls pass, and the trace says why)."""
    try:
        spec = PolicySpec.model_validate(raw)
    except ValidationError as exc:
        log.error("stored guardrail policy does not validate; it cannot run", extra={"error": str(exc)})
        name = str(raw.get("name", "?"))
        return Policy(
            name, scope, target, frozenset(Stage), Action.block, Unbuildable("the stored policy is invalid")
        )
    if not spec.enabled:
        return None
    guardrail: Guardrail[Any]
    try:
        guardrail = build(spec.guardrail, spec.config)
    except FmopsError as exc:
        log.error("guardrail policy cannot be built", extra={"policy": spec.name, "error": exc.message})
        guardrail = Unbuildable(f"policy {spec.name!r} cannot run: {exc.message}")
    return Policy(
        name=spec.name,
        scope=scope,
        target=target,
        stages=spec.stages,
        action=spec.action,
        guardrail=guardrail,
        fail_open=spec.on_error == "open",
    )


def _view(row: GuardrailPolicy) -> PolicyView:
    return PolicyView(
        scope=Scope(row.scope),
        target=row.target,
        spec=PolicySpec.model_validate(row.spec),
        created_by=row.created_by,
        updated_by=row.updated_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _label(policy: AttachedPolicy) -> str:
    return policy.name if policy.scope is Scope.project else f"{policy.scope}:{policy.target}/{policy.name}"


__all__ = ["GuardrailService", "Unbuildable"]
