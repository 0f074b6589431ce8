"""The prompt registry of a project: push versions, read them by number or label, move labels.

A version is immutable: a push whose content (messages, model, params, output schema) hashes to
the newest version's is a no-op, so pushing the same git file twice changes nothing. Labels are
movable names for versions; `latest` is a virtual label for the newest one. Every change to a label
bumps the project's registry generation in the same transaction, which is how each replica's
endpoint cache learns that what it serves has moved. A prompt of another project is a 404.
"""

from __future__ import annotations

import builtins
import hashlib
import re
from collections import defaultdict
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fmops.catalog import Catalog
from fmops.endpoints.generation import bump
from fmops.errors import Conflict, NotFound, UserError
from fmops.prompts.checks import check_spec
from fmops.prompts.files import dump_yaml, spec_document, unified_diff
from fmops.prompts.schemas import LATEST, PromptSpec, PromptSummary, PromptVersionView, label_problem
from fmops.store import Store, utcnow
from fmops.store.models import Endpoint, Prompt, PromptLabel, PromptVersion

_PUSH_ATTEMPTS = 3  # a push that loses a race on a version number reads the winner and tries again
_SHOWN = 20  # names listed in a 404's message
_VERSION_REF = re.compile(r"^[0-9]+$")

Summaries = list[PromptSummary]
Views = list[PromptVersionView]

__all__ = ["PromptService", "PromptSpec", "PromptSummary", "PromptVersionView", "content_hash"]


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _view(name: str, row: PromptVersion, labels: list[str]) -> PromptVersionView:
    return PromptVersionView(
        name=name,
        version=row.version,
        messages=list(row.messages),
        variables=list(row.variables or []),
        model=row.model,
        params=dict(row.params or {}),
        output_schema=row.output_schema,
        message=row.message,
        author=row.author,
        created_at=row.created_at,
        labels=sorted(labels),
    )


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


class PromptService:
    def __init__(self, store: Store, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog

    # -- writes --------------------------------------------------------------------------------

    def push(
        self, project_id: str, spec: PromptSpec, *, author: str | None, author_key_id: str | None
    ) -> tuple[PromptVersionView, bool]:
        """Save `spec` as version latest+1, or return the newest version (False) if it is the same."""
        content, variables = check_spec(spec)
        if spec.model is not None:
            try:
                self.catalog.get(project_id, spec.model)
            except NotFound as exc:
                raise UserError(exc.message, param="model", code="model_not_found") from None
        digest = content_hash(content)
        for attempt in range(_PUSH_ATTEMPTS):
            try:
                return self._push_once(project_id, spec, content, variables, digest, author, author_key_id)
            except IntegrityError:
                if attempt == _PUSH_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _push_once(
        self,
        project_id: str,
        spec: PromptSpec,
        content: dict[str, Any],
        variables: list[str],
        digest: str,
        author: str | None,
        author_key_id: str | None,
    ) -> tuple[PromptVersionView, bool]:
        with self.store.write() as session:
            prompt = session.scalars(
                select(Prompt)
                .where(Prompt.project_id == project_id, Prompt.name == spec.name)
                .with_for_update()  # PostgreSQL: concurrent pushes of one prompt number in turn
            ).first()
            if prompt is None:
                prompt = Prompt(project_id=project_id, name=spec.name, latest_version=0)
                session.add(prompt)
                session.flush()
            newest = (
                self._version_row(session, prompt, prompt.latest_version) if prompt.latest_version else None
            )
            if newest is not None and newest.content_hash == digest:
                row, created = newest, False
            else:
                row = PromptVersion(
                    prompt_id=prompt.id,
                    version=prompt.latest_version + 1,
                    messages=content["messages"],
                    variables=variables,
                    model=content["model"],
                    params=content["params"],
                    output_schema=content["output_schema"],
                    content_hash=digest,
                    message=spec.message,
                    author=author,
                    author_key_id=author_key_id,
                    created_at=utcnow(),
                )
                session.add(row)
                prompt.latest_version = row.version
                prompt.updated_at = utcnow()
                created = True
            if spec.description is not None and spec.description != prompt.description:
                prompt.description = spec.description
                prompt.updated_at = utcnow()
            moved = [self._point(session, prompt, label, row.version, author) for label in spec.labels]
            if any(moved):
                bump(session, project_id)
            session.flush()
            return _view(prompt.name, row, self._labels(session, prompt.id).get(row.version, [])), created

    def set_label(
        self, project_id: str, name: str, label: str, version: int, *, actor: str | None
    ) -> PromptVersionView:
        """Point `label` at `version` (creating the label or moving it); endpoints serve it at once."""
        problem = label_problem(label)
        if problem is not None:
            raise UserError(problem, param="label")
        with self.store.write() as session:
            prompt = self._prompt(session, project_id, name, lock=True)  # label changes in turn
            row = self._version_row(session, prompt, version)
            if row is None:
                raise self._no_version(prompt, version)
            if self._point(session, prompt, label, version, actor):
                bump(session, project_id)
            return _view(prompt.name, row, self._labels(session, prompt.id).get(version, []))

    def remove_label(self, project_id: str, name: str, label: str, *, actor: str | None) -> int:
        """Remove `label`; the version it pointed at is returned. An endpoint serving it is a 409."""
        with self.store.write() as session:
            prompt = self._prompt(session, project_id, name, lock=True)
            found = session.get(PromptLabel, (prompt.id, label))
            if found is None:
                raise self._no_label(session, prompt, label)
            users = [
                e for e, labels in self._endpoint_refs(session, project_id, name).items() if label in labels
            ]
            if users:
                raise Conflict(
                    f"endpoint {_listing(sorted(users))} serves label {label!r} of prompt {name!r}; "
                    "point it at another label or version first",
                    param="label",
                )
            version = found.version
            session.delete(found)
            bump(session, project_id)
            return version

    def delete(self, project_id: str, name: str) -> PromptSummary:
        """Delete a prompt with its versions and labels; a 409 while an endpoint uses it."""
        with self.store.write() as session:
            prompt = self._prompt(session, project_id, name, lock=True)
            users = sorted(self._endpoint_refs(session, project_id, name))
            if users:
                raise Conflict(
                    f"prompt {name!r} is used by endpoint {_listing(users)}; change or delete it first",
                    param="name",
                )
            summary = self._summary(prompt, self._labels(session, prompt.id))
            session.delete(prompt)  # versions and labels go with it (ON DELETE CASCADE)
            bump(session, project_id)
            return summary

    # -- reads ---------------------------------------------------------------------------------

    def get(
        self, project_id: str, name: str, *, version: int | None = None, label: str | None = None
    ) -> PromptVersionView:
        """A version by number or label; neither given (or label `latest`): the newest version."""
        if version is not None and label is not None:
            raise UserError("give a version or a label, not both", param="label")
        with self.store.session() as session:
            prompt = self._prompt(session, project_id, name)
            number = self._number(session, prompt, version, label)
            row = self._version_row(session, prompt, number)
            if row is None:
                raise self._no_version(prompt, number)
            return _view(prompt.name, row, self._labels(session, prompt.id).get(number, []))

    def resolve(self, project_id: str, name: str, ref: str) -> PromptVersionView:
        """A version by a reference as people type it: a number, a label, or `latest`."""
        if _VERSION_REF.match(ref):
            return self.get(project_id, name, version=int(ref))
        return self.get(project_id, name, label=ref)

    def list(self, project_id: str) -> Summaries:
        """Every prompt of the project, by name."""
        with self.store.session() as session:
            prompts = session.scalars(
                select(Prompt).where(Prompt.project_id == project_id).order_by(Prompt.name)
            ).all()
            labels: dict[str, dict[str, int]] = defaultdict(dict)
            if prompts:
                rows = session.scalars(
                    select(PromptLabel).where(PromptLabel.prompt_id.in_([p.id for p in prompts]))
                )
                for row in rows:
                    labels[row.prompt_id][row.label] = row.version
            return [self._summary_of(p, labels[p.id]) for p in prompts]

    def versions(self, project_id: str, name: str) -> Views:
        """Every version of a prompt, newest first."""
        with self.store.session() as session:
            prompt = self._prompt(session, project_id, name)
            labels = self._labels(session, prompt.id)
            rows = session.scalars(
                select(PromptVersion)
                .where(PromptVersion.prompt_id == prompt.id)
                .order_by(PromptVersion.version.desc())
            ).all()
            return [_view(prompt.name, row, labels.get(row.version, [])) for row in rows]

    def diff(self, project_id: str, name: str, a: str | int, b: str | int) -> str:
        """A unified diff of two versions' YAML (a, b: version numbers or labels); empty if equal."""
        return self.compare(project_id, name, a, b)[2]

    def compare(
        self, project_id: str, name: str, a: str | int, b: str | int
    ) -> tuple[PromptVersionView, PromptVersionView, str]:
        """The two versions `diff` compares, and the diff."""
        old = self.resolve(project_id, name, str(a))
        new = self.resolve(project_id, name, str(b))
        return old, new, unified_diff(old, new, str(a), str(b))

    def export(self, project_id: str, name: str | None = None) -> str:
        """YAML of the newest version of one prompt (a mapping) or of each (a list of them) that
        `push` reads back to the same content, with the labels that point at that version."""
        with self.store.session() as session:
            if name is not None:
                prompts = [self._prompt(session, project_id, name)]
            else:
                query = select(Prompt).where(Prompt.project_id == project_id).order_by(Prompt.name)
                prompts = builtins.list(session.scalars(query))
            documents = []
            for prompt in prompts:
                row = self._version_row(session, prompt, prompt.latest_version)
                if row is not None:
                    labels = self._labels(session, prompt.id).get(row.version, [])
                    documents.append(spec_document(_view(prompt.name, row, labels), prompt.description))
        return dump_yaml(documents[0] if name is not None and documents else documents)

    # -- helpers -------------------------------------------------------------------------------

    def _prompt(self, session: Session, project_id: str, name: str, *, lock: bool = False) -> Prompt:
        """The prompt (locked for this transaction on PostgreSQL when `lock`; SQLite's write
        sessions hold the database's lock already); a 404 naming the project's prompts."""
        query = select(Prompt).where(Prompt.project_id == project_id, Prompt.name == name)
        prompt = session.scalars(query.with_for_update() if lock else query).first()
        if prompt is None:
            names = list(
                session.scalars(
                    select(Prompt.name)
                    .where(Prompt.project_id == project_id)
                    .order_by(Prompt.name)
                    .limit(_SHOWN + 1)
                )
            )
            known = _listing(names) if names else "none yet; push one with `fmops prompts push FILE.yaml`"
            raise NotFound(f"no prompt {name!r} in this project; prompts: {known}", param="name")
        return prompt

    @staticmethod
    def _version_row(session: Session, prompt: Prompt, version: int) -> PromptVersion | None:
        return session.scalars(
            select(PromptVersion).where(
                PromptVersion.prompt_id == prompt.id, PromptVersion.version == version
            )
        ).first()

    def _number(self, session: Session, prompt: Prompt, version: int | None, label: str | None) -> int:
        if version is not None:
            if not 1 <= version <= prompt.latest_version:
                raise self._no_version(prompt, version)
            return version
        if label is None or label == LATEST:
            return prompt.latest_version
        found = session.get(PromptLabel, (prompt.id, label))
        if found is None:
            raise self._no_label(session, prompt, label)
        return found.version

    @staticmethod
    def _no_version(prompt: Prompt, version: int) -> NotFound:
        return NotFound(
            f"no version {version} of prompt {prompt.name!r}; versions: 1 to {prompt.latest_version}",
            param="version",
        )

    def _no_label(self, session: Session, prompt: Prompt, label: str) -> NotFound:
        labels = sorted(name for names in self._labels(session, prompt.id).values() for name in names)
        known = _listing(labels) if labels else "none yet (set one with `fmops prompts label`)"
        return NotFound(f"no label {label!r} on prompt {prompt.name!r}; labels: {known}", param="label")

    @staticmethod
    def _labels(session: Session, prompt_id: str) -> dict[int, builtins.list[str]]:
        """Version -> the labels pointing at it."""
        found: dict[int, builtins.list[str]] = defaultdict(builtins.list)
        for row in session.scalars(select(PromptLabel).where(PromptLabel.prompt_id == prompt_id)):
            found[row.version].append(row.label)
        return found

    @staticmethod
    def _point(session: Session, prompt: Prompt, label: str, version: int, actor: str | None) -> bool:
        """Point a label at a version; False when it already pointed there (nothing changed)."""
        found = session.get(PromptLabel, (prompt.id, label))
        if found is not None and found.version == version:
            return False
        if found is None:
            session.add(
                PromptLabel(
                    prompt_id=prompt.id, label=label, version=version, updated_by=actor, updated_at=utcnow()
                )
            )
        else:
            found.version, found.updated_by, found.updated_at = version, actor, utcnow()
        return True

    @staticmethod
    def _endpoint_refs(session: Session, project_id: str, name: str) -> dict[str, set[str]]:
        """Endpoints of the project that serve prompt `name`, with the labels they serve it by.

        Reads the stored endpoint config (`fmops.endpoints.schemas.EndpointConfig` as JSON): the
        endpoint's `prompt` with its `label` (or pinned `version`), and each variant's own.
        """
        found: dict[str, set[str]] = {}
        rows = session.execute(
            select(Endpoint.name, Endpoint.config).where(Endpoint.project_id == project_id)
        )
        for endpoint, config in rows:
            if not isinstance(config, dict) or config.get("prompt") != name:
                continue
            labels: set[str] = set()
            base = config.get("label") if config.get("version") is None else None
            variants = [v for v in config.get("variants") or [] if isinstance(v, dict)]
            if not variants and isinstance(base, str):
                labels.add(base)
            for variant in variants:
                if variant.get("version") is not None:
                    continue
                label = variant.get("label") or base
                if isinstance(label, str):
                    labels.add(label)
            found[endpoint] = labels
        return found

    @staticmethod
    def _summary_of(prompt: Prompt, labels: dict[str, int]) -> PromptSummary:
        return PromptSummary(
            name=prompt.name,
            description=prompt.description,
            latest_version=prompt.latest_version,
            labels=dict(sorted(labels.items())),
            created_at=prompt.created_at,
            updated_at=prompt.updated_at,
        )

    def _summary(self, prompt: Prompt, by_version: dict[int, builtins.list[str]]) -> PromptSummary:
        labels = {label: version for version, names in by_version.items() for label in names}
        return self._summary_of(prompt, labels)
