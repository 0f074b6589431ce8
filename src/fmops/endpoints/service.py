"""Endpoints of a project: create, read, change and delete them, each change checked and recorded.

Every change is checked against what it names (the prompt and its label or version, every model,
each guardrail's scorer and config), bumps the project's registry generation in the same
transaction (so every replica serves it on its next call) and writes an `EndpointEvent`. A change
to the variants starts a new experiment (`experiment_started_at`). An endpoint of another project
answers 404: it is invisible, not forbidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fmops.auth import Principal, Role, admits
from fmops.catalog import Catalog
from fmops.endpoints import generation
from fmops.endpoints.schemas import EndpointConfig, EndpointSpec, EndpointUpdate, validated
from fmops.errors import Conflict, NotFound, UserError
from fmops.fewshot.checks import datasets_of, prepared
from fmops.scorers import get_scorer
from fmops.store import Store, utcnow
from fmops.store.models import Endpoint, EndpointEvent, GuardrailPolicy

if TYPE_CHECKING:
    from fmops.prompts.schemas import PromptVersionView
    from fmops.prompts.service import PromptService


@dataclass(frozen=True)
class EndpointView:
    id: str
    name: str
    description: str | None
    config: EndpointConfig
    enabled: bool
    experiment_started_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Endpoint) -> EndpointView:
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            config=EndpointConfig.model_validate(row.config),
            enabled=row.enabled,
            experiment_started_at=row.experiment_started_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def public(self) -> dict[str, Any]:
        """The endpoint as the API and `--json` show it: its spec plus when and whether it serves."""
        return {
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            **self.config.model_dump(mode="json"),
            "experiment_started_at": self.experiment_started_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class EventView:
    kind: str
    detail: dict[str, Any]
    actor: str | None
    created_at: datetime


def endpoint_names(session: Session, project_id: str) -> dict[str, bool]:
    """Every endpoint of the project, by name, with whether it is enabled."""
    rows = session.execute(
        select(Endpoint.name, Endpoint.enabled).where(Endpoint.project_id == project_id)
    ).all()
    return {name: bool(enabled) for name, enabled in rows}


# Aliases: inside EndpointService, `list` is the method's name.
Views = list[EndpointView]
Events = list[EventView]


def served_endpoints(
    store: Store, project_id: str, principal: Principal | None = None
) -> list[tuple[str, datetime]]:
    """(name, created_at) of each enabled endpoint (that `principal` may call, when given): what
    `/v1/models` lists beside the models, and the chat's picker offers."""
    with store.session() as session:
        rows = session.execute(
            select(Endpoint.name, Endpoint.created_at, Endpoint.config)
            .where(Endpoint.project_id == project_id, Endpoint.enabled.is_(True))
            .order_by(Endpoint.name)
        ).all()
    return [
        (name, created)
        for name, created, config in rows
        if principal is None or may_call(principal, config or {})
    ]


def may_call(principal: Principal, config: dict[str, Any]) -> bool:
    """Whether `principal` may call the endpoint of this stored config (its `access:`, if any)."""
    access = config.get("access")
    if not access:
        return True
    return admits(principal, [Role(r) for r in access.get("roles", ())], access.get("users", ()))


def guardrail_entry_labels(session: Session, project_id: str, endpoint: str) -> list[str]:
    """The labels of an endpoint's `guardrails:` entries, in order (each runs as the guardrail policy
    `endpoint:<endpoint>/<label>`); none when it does not exist."""
    config = session.scalars(
        select(Endpoint.config).where(Endpoint.project_id == project_id, Endpoint.name == endpoint)
    ).first()
    if not config:
        return []
    return [guard.label for guard in EndpointConfig.model_validate(config).guardrails]


def _no_label_clash(session: Session, project_id: str, name: str, config: EndpointConfig) -> None:
    """A `guardrails:` entry runs as the policy `endpoint:<name>/<label>`: one label may not name both
    an entry and a stored policy of the endpoint (a trace, an error and the "blocked by" filter
    could not tell them apart). A 409 naming both."""
    if not config.guardrails:
        return
    stored = set(
        session.scalars(
            select(GuardrailPolicy.name).where(
                GuardrailPolicy.project_id == project_id,
                GuardrailPolicy.scope == "endpoint",
                GuardrailPolicy.target == name,
            )
        )
    )
    for i, guard in enumerate(config.guardrails):
        if guard.label in stored:
            raise Conflict(
                f"guardrails.{i}: entry {guard.label!r} would run as 'endpoint:{name}/{guard.label}', the "
                f"label of a stored guardrail policy of endpoint {name!r}; give the entry another `name:`, "
                f"or remove that policy first (`fmops guardrails rm {guard.label} --endpoint {name}`)",
                param=f"guardrails.{i}.name",
            )


def endpoints_using_prompt(session: Session, project_id: str, prompt: str) -> list[str]:
    """Names of the endpoints that render `prompt` (a prompt in use cannot be deleted)."""
    rows = session.execute(
        select(Endpoint.name, Endpoint.config).where(Endpoint.project_id == project_id)
    ).all()
    return sorted(name for name, config in rows if (config or {}).get("prompt") == prompt)


class EndpointService:
    def __init__(self, store: Store, catalog: Catalog, prompts: PromptService) -> None:
        self.store = store
        self.catalog = catalog
        self.prompts = prompts

    # --- reading --------------------------------------------------------------------------------

    def list(self, project_id: str, *, enabled_only: bool = False) -> Views:
        query = select(Endpoint).where(Endpoint.project_id == project_id).order_by(Endpoint.name)
        if enabled_only:
            query = query.where(Endpoint.enabled.is_(True))
        with self.store.session() as session:
            return [EndpointView.of(row) for row in session.scalars(query)]

    def get(self, project_id: str, name: str, *, enabled_only: bool = False) -> EndpointView:
        with self.store.session() as session:
            row = self._row(session, project_id, name)
            if enabled_only and not row.enabled:
                raise NotFound(f"no endpoint named {name!r} in this project", param="name")
            return EndpointView.of(row)

    def events(self, project_id: str, name: str, *, limit: int = 100) -> Events:
        with self.store.session() as session:
            row = self._row(session, project_id, name)
            events = session.scalars(
                select(EndpointEvent)
                .where(EndpointEvent.endpoint_id == row.id)
                .order_by(EndpointEvent.created_at.desc(), EndpointEvent.id)
                .limit(limit)
            )
            return [EventView(e.kind, dict(e.detail or {}), e.actor, e.created_at) for e in events]

    # --- changing -------------------------------------------------------------------------------

    def create(
        self, project_id: str, spec: EndpointSpec, *, actor: str | None, key_id: str | None = None
    ) -> EndpointView:
        config = self.checked(project_id, spec.name, spec.config())
        now = utcnow()
        with self.store.write() as session:
            if self._find(session, project_id, spec.name) is not None:
                raise Conflict(
                    f"an endpoint named {spec.name!r} already exists; change it with "
                    f"`fmops endpoints update {spec.name}` or PATCH /api/endpoints/{spec.name}",
                    param="name",
                )
            _no_label_clash(session, project_id, spec.name, config)
            row = Endpoint(
                project_id=project_id,
                name=spec.name,
                description=spec.description,
                config=config.stored(),
                enabled=spec.enabled,
                experiment_started_at=now if config.variants else None,
                created_by_key_id=key_id,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            self._event(session, row, "created", {"config": row.config}, actor, now)
            generation.bump(session, project_id)
            return EndpointView.of(row)

    def update(
        self,
        project_id: str,
        name: str,
        changes: EndpointUpdate,
        *,
        actor: str | None,
        kind: str = "updated",
        detail: dict[str, Any] | None = None,
    ) -> EndpointView:
        """Apply `changes` (PATCH semantics). `kind` and `detail` name the event (e.g. "promoted")."""
        with self.store.session() as session:
            current = EndpointConfig.model_validate(self._row(session, project_id, name).config)
        config = self.checked(project_id, name, changes.applied_to(current))
        with self.store.write() as session:
            row = self._row(session, project_id, name)
            before = EndpointConfig.model_validate(row.config)
            if config.guardrails != before.guardrails:
                _no_label_clash(session, project_id, name, config)
            changed = sorted(
                field
                for field in EndpointConfig.model_fields
                if getattr(before, field) != getattr(config, field)
            )
            now = utcnow()
            row.config = config.stored()
            if "description" in changes.model_fields_set:
                row.description = changes.description
                changed.append("description")
            if changes.enabled is not None and changes.enabled != row.enabled:
                row.enabled = changes.enabled
                changed.append("enabled")
            if "variants" in changed:
                # New arms, or new weights: results count from now, in a fresh experiment.
                row.experiment_started_at = now if config.variants else None
            row.updated_at = now
            recorded = {"changed": changed, "config": row.config, **(detail or {})}
            self._event(session, row, kind, recorded, actor, now)
            if "variants" in changed and config.variants:
                started = {"variants": row.config["variants"]}
                # A microsecond after the change that started it, so the history reads in order.
                self._event(
                    session, row, "experiment_started", started, actor, now + timedelta(microseconds=1)
                )
            generation.bump(session, project_id)
            return EndpointView.of(row)

    def set_weights(
        self, project_id: str, name: str, weights: dict[str, float], *, actor: str | None
    ) -> EndpointView:
        """New weights for some or all variants by name; the others keep theirs."""
        current = self.get(project_id, name).config
        known = {v.name for v in current.variants}
        if not known:
            raise UserError(
                f"endpoint {name!r} has no variants to weigh; add `variants` first", param="weights"
            )
        unknown = sorted(set(weights) - known)
        if unknown:
            raise UserError(
                f"endpoint {name!r} has no variant {unknown[0]!r}; its variants: {', '.join(sorted(known))}",
                param="weights",
            )
        variants = [
            v.model_copy(update={"weight": weights[v.name]}) if v.name in weights else v
            for v in current.variants
        ]
        try:
            update = validated(EndpointUpdate, {"variants": [v.model_dump() for v in variants]})
        except UserError as exc:
            raise UserError(exc.message, param="weights") from None
        return self.update(project_id, name, update, actor=actor, kind="weights", detail={"weights": weights})

    def delete(self, project_id: str, name: str, *, actor: str | None) -> EndpointView:
        with self.store.write() as session:
            row = self._row(session, project_id, name)
            view = EndpointView.of(row)
            # The history outlives the endpoint: its events stay, with one saying it went.
            self._event(session, row, "deleted", {"config": row.config}, actor, utcnow())
            session.delete(row)
            generation.bump(session, project_id)
            return view

    # --- checks ---------------------------------------------------------------------------------

    def checked(self, project_id: str, name: str, config: EndpointConfig) -> EndpointConfig:
        """The config if everything it names exists and every guardrail builds; a 400 naming what not."""
        models = self.catalog.models(project_id)
        if name in models:
            raise UserError(
                f"{name!r} is a model of this project; an endpoint needs a name of its own "
                "(callers could not tell them apart)",
                param="name",
            )
        base = self._version(project_id, config.prompt, config.version, config.label, "")
        self._model(
            models, config.model or (base.model if base else None), "model", required=not config.variants
        )
        for i, variant in enumerate(config.variants):
            where = f"variants.{i}."
            pinned = variant.version is not None or variant.label is not None
            version = (
                self._version(project_id, config.prompt, variant.version, variant.label, where)
                if pinned
                else base
            )
            model = variant.model or config.model or (version.model if version else None)
            self._model(models, model, f"{where}model", required=True)
        for i, alias in enumerate(config.fallbacks):
            if alias not in models:
                raise UserError(
                    f"fallbacks.{i}: model {alias!r} does not exist in this project", param=f"fallbacks.{i}"
                )
        for i, guard in enumerate(config.guardrails):
            try:
                cls = get_scorer(guard.scorer)
            except UserError as exc:
                raise UserError(
                    f"guardrails.{i}.scorer: {exc.message}", param=f"guardrails.{i}.scorer"
                ) from None
            if cls.needs_model:
                raise UserError(
                    f"guardrails.{i}.scorer: {guard.scorer!r} calls a model and cannot run on the "
                    "request path; use an online evaluator for it instead",
                    param=f"guardrails.{i}.scorer",
                )
            # A guardrail decides on the request alone: with no expected answer, no finished call's
            # latency or cost, and no time for a local encoder, such a scorer would block every call.
            cannot = (
                "compares with an expected answer, which a live call has none of"
                if cls.needs_expected
                else "reads the finished call's latency or cost, unknown while it runs"
                if cls.needs_record
                else "is too slow for the request path"
                if cls.slow
                else None
            )
            if cannot is not None:
                raise UserError(
                    f"guardrails.{i}.scorer: {guard.scorer!r} {cannot}; use it in an evaluation suite "
                    "or an online evaluator instead",
                    param=f"guardrails.{i}.scorer",
                )
            try:
                parsed = cls.parse_config(guard.config)
            except UserError as exc:
                raise UserError(
                    f"guardrails.{i}: {exc.message}", param=f"guardrails.{i}.{exc.param}"
                ) from None
            guard.config = parsed.model_dump(mode="json", by_alias=True)
        if config.fewshot is not None:  # the dataset version exists and demonstrates: index it now
            prepared(datasets_of(self.store, self.catalog.settings), project_id, config.fewshot)
        return config

    def _version(
        self, project_id: str, prompt: str | None, version: int | None, label: str | None, where: str
    ) -> PromptVersionView | None:
        if prompt is None:
            return None
        try:
            return self.prompts.get(project_id, prompt, version=version, label=label)
        except NotFound as exc:
            # The endpoint names it, so the endpoint's field is what to fix: a 400, not a 404.
            field = exc.param if exc.param in ("version", "label") else "prompt"
            raise UserError(f"{where}{field}: {exc.message}", param=f"{where}{field}") from None

    @staticmethod
    def _model(models: dict[str, Any], alias: str | None, where: str, *, required: bool) -> None:
        if alias is None:
            if required:
                raise UserError(
                    f"{where}: no model to call; the prompt version names none, so set `model`", param=where
                )
            return
        if alias not in models:
            listing = ", ".join(sorted(models)) or "none"
            raise UserError(f"{where}: model {alias!r} does not exist; known models: {listing}", param=where)

    # --- rows -----------------------------------------------------------------------------------

    @staticmethod
    def _find(session: Session, project_id: str, name: str) -> Endpoint | None:
        return session.scalars(
            select(Endpoint).where(Endpoint.project_id == project_id, Endpoint.name == name)
        ).first()

    def _row(self, session: Session, project_id: str, name: str) -> Endpoint:
        row = self._find(session, project_id, name)
        if row is None:
            raise NotFound(
                f"no endpoint named {name!r} in this project; see `fmops endpoints list`", param="name"
            )
        return row

    @staticmethod
    def _event(
        session: Session, row: Endpoint, kind: str, detail: dict[str, Any], actor: str | None, at: datetime
    ) -> None:
        session.add(EndpointEvent(endpoint_id=row.id, kind=kind, detail=detail, actor=actor, created_at=at))
