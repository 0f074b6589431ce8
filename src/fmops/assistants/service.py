"""Assistants of a project: publish (create or replace), list, read and unpublish them, and which
assistant a chat conversation talks to.

An assistant is the chat's face of an endpoint: its conversations call that endpoint, so their
traces, feedback and scores are the endpoint's (`fmops.assistants.usage` reads them back per
assistant). Who may use it is a list of roles (each covering the roles above it) and of users by
name; engineers and admins, who publish assistants, may use every one. An assistant a person may
not use is invisible to them: reading or choosing it answers 404, as if it did not exist. So is one
whose endpoint no longer answers them (disabled, or its `access:` narrowed after publishing).

Publishing checks that everyone named can call the endpoint: it exists and serves (a disabled
endpoint answers no one), its `access:` (if any) lets each role and user named call it, and each
user named is an enabled member of the project. A refusal is a 400 saying who cannot call it and
why.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fmops.assistants.schemas import AssistantSpec, AssistantView, Change
from fmops.auth import Principal, Role, admits
from fmops.auth.audience import admitted
from fmops.endpoints.schemas import AccessSpec
from fmops.endpoints.service import served_endpoints
from fmops.errors import NotFound, UserError
from fmops.store import Store, utcnow
from fmops.store.models import Assistant, AssistantConversation, Endpoint, Membership, User

# The chat's picker sends an assistant as this prefix and its name (models and endpoints by name).
PREFIX = "assistant:"


@dataclass(frozen=True, slots=True)
class Choice:
    """What a chat conversation calls: the endpoint (or model) and the assistant, if one was chosen."""

    endpoint: str
    assistant: str | None = None


def _view(row: Assistant) -> AssistantView:
    return AssistantView(
        name=row.name,
        endpoint=row.endpoint,
        description=row.description or "",
        starters=tuple(row.starters or ()),
        roles=tuple(Role(r) for r in row.roles or ()),
        users=tuple(row.users or ()),
        created_by=row.created_by,
        updated_by=row.updated_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def may_use(principal: Principal, view: AssistantView) -> bool:
    """Whether the caller may see and use the assistant (engineers and admins, who publish
    assistants, may try every one): the rule of an endpoint's `access:` too (fmops.auth.audience)."""
    return admits(principal, view.roles, view.users)


def usable_among(principal: Principal, views: Sequence[AssistantView], reachable: Collection[str]) -> Views:
    """Those of `views` the caller may use: its audience names them, and its endpoint answers them
    (`reachable`: the endpoints they may call, `served_endpoints`). An endpoint disabled, or whose
    `access:` was narrowed after the assistant was published, hides the assistant from those it no
    longer answers: offered, it could only answer them with a 404."""
    return [v for v in views if v.endpoint in reachable and may_use(principal, v)]


def _allowed(access: AccessSpec) -> str:
    """Who an endpoint's `access:` lets call it, in words."""
    who = [f"role {r.value}" for r in access.roles] + [f"user {u}" for u in access.users]
    return "its access allows " + ", ".join(who) + ", engineers and admins"


def _command(endpoint: str, access: AccessSpec, more: str) -> str:
    """The command that lets `more` call the endpoint too (`--access` replaces the whole list)."""
    now = [f"role:{r.value}" for r in access.roles] + [f"user:{u}" for u in access.users]
    return f"`fmops endpoints update {endpoint} " + " ".join(f"--access {a}" for a in [*now, more]) + "`"


# An alias: inside AssistantService, `list` is the method's name.
Views = list[AssistantView]


class AssistantService:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- reading --------------------------------------------------------------------------------

    def list(self, project_id: str, *, endpoint: str | None = None) -> Views:
        query = select(Assistant).where(Assistant.project_id == project_id).order_by(Assistant.name)
        if endpoint is not None:
            query = query.where(Assistant.endpoint == endpoint)
        with self.store.session() as session:
            return [_view(row) for row in session.scalars(query)]

    def get(self, project_id: str, name: str) -> AssistantView:
        with self.store.session() as session:
            return _view(self._row(session, project_id, name))

    def usable(self, principal: Principal) -> Views:
        """The assistants the caller may use, by name."""
        return usable_among(principal, self.list(principal.project_id), self._reachable(principal))

    def get_usable(self, principal: Principal, name: str) -> AssistantView:
        """One assistant the caller may use; a 404 for one they may not (it is invisible to them)."""
        try:
            view = self.get(principal.project_id, name)
        except NotFound:
            view = None
        if view is None or not usable_among(principal, [view], self._reachable(principal)):
            raise NotFound(f"no assistant named {name!r} is available to you", param="name")
        return view

    def _reachable(self, principal: Principal) -> set[str]:
        return {name for name, _ in served_endpoints(self.store, principal.project_id, principal)}

    # --- publishing -----------------------------------------------------------------------------

    def publish(
        self, project_id: str, spec: AssistantSpec, *, actor: str | None
    ) -> tuple[Change, AssistantView]:
        """Create the assistant, or replace the one of that name: ("created" | "updated" |
        "unchanged", the assistant). Refused (400) when someone it is published to cannot call
        the endpoint."""
        now = utcnow()
        with self.store.write() as session:
            self._check(session, project_id, spec)
            row = self._find(session, project_id, spec.name)
            values = {
                "endpoint": spec.endpoint,
                "description": spec.description,
                "starters": list(spec.starters),
                "roles": [r.value for r in spec.roles],
                "users": list(spec.users),
            }
            if row is None:
                row = Assistant(
                    project_id=project_id,
                    name=spec.name,
                    created_by=actor,
                    updated_by=actor,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                session.add(row)
                session.flush()
                return "created", _view(row)
            if all(getattr(row, field) == value for field, value in values.items()):
                return "unchanged", _view(row)
            for field, value in values.items():
                setattr(row, field, value)
            row.updated_by, row.updated_at = actor, now
            return "updated", _view(row)

    def unpublish(self, project_id: str, name: str) -> AssistantView:
        """Take the assistant out of the chat; its conversations (and their traces) stay."""
        with self.store.write() as session:
            row = self._row(session, project_id, name)
            view = _view(row)
            session.delete(row)
            return view

    def _check(self, session: Session, project_id: str, spec: AssistantSpec) -> None:
        endpoint = session.scalars(
            select(Endpoint).where(Endpoint.project_id == project_id, Endpoint.name == spec.endpoint)
        ).first()
        if endpoint is None:  # a 404, as for any missing resource a request names
            raise NotFound(
                f"endpoint {spec.endpoint!r} does not exist in this project; an assistant publishes an "
                "endpoint (see `fmops endpoints list`)",
                param="endpoint",
            )
        if not endpoint.enabled:
            who = ", ".join([f"role {r.value}" for r in spec.roles] + [f"user {u}" for u in spec.users])
            raise UserError(
                f"endpoint {spec.endpoint!r} is disabled, so no one can call it ({who} included); "
                f"enable it first with `fmops endpoints update {spec.endpoint} --enable`",
                param="endpoint",
            )
        stored = (endpoint.config or {}).get("access")
        access = AccessSpec.model_validate(stored) if stored else None
        if access is not None:
            for i, named in enumerate(spec.roles):
                if not admitted(named, "", access.roles, ()):
                    fix = _command(spec.endpoint, access, f"role:{named.value}")
                    raise UserError(
                        f"roles.{i}: role {named.value} cannot call endpoint {spec.endpoint!r} "
                        f"({_allowed(access)}); let it with {fix}"
                        ", or publish to roles it allows",
                        param=f"roles.{i}",
                    )
        if not spec.users:
            return
        found = {
            name: (disabled, role)
            for name, disabled, role in session.execute(
                select(User.name, User.disabled, Membership.role)
                .outerjoin(
                    Membership, (Membership.user_id == User.id) & (Membership.project_id == project_id)
                )
                .where(User.name.in_(spec.users))
            ).all()
        }
        for i, name in enumerate(spec.users):
            disabled, role = found.get(name, (False, None))
            if role is None:
                raise UserError(
                    f"users.{i}: {name!r} is not a member of this project, so they cannot call endpoint "
                    f"{spec.endpoint!r}; add them to the project first (`fmops users create {name}`)",
                    param=f"users.{i}",
                )
            if disabled:
                raise UserError(
                    f"users.{i}: {name!r} is disabled, so they cannot call endpoint {spec.endpoint!r}",
                    param=f"users.{i}",
                )
            if access is not None and not admitted(Role(role), name, access.roles, access.users):
                fix = _command(spec.endpoint, access, f"user:{name}")
                raise UserError(
                    f"users.{i}: {name!r} ({role}) cannot call endpoint {spec.endpoint!r} "
                    f"({_allowed(access)}); let them with {fix}"
                    ", or publish to users it allows",
                    param=f"users.{i}",
                )

    # --- the chat ---------------------------------------------------------------------------------

    def choose(self, principal: Principal, choice: str) -> Choice:
        """What a choice of the chat's picker calls: `assistant:<name>` is the assistant's endpoint
        (a 404 when the caller may not use it); anything else is a model or endpoint by name."""
        if not choice.startswith(PREFIX):
            return Choice(choice)
        view = self.get_usable(principal, choice.removeprefix(PREFIX))
        return Choice(view.endpoint, view.name)

    def remember(self, principal: Principal, conversation_id: str, choice: Choice) -> None:
        """Record which assistant the (caller's own) conversation talks to, or that it talks to none."""
        with self.store.write() as session:
            row = session.get(AssistantConversation, conversation_id)
            if choice.assistant is None:
                if row is not None:
                    session.delete(row)
            elif row is None:
                session.add(
                    AssistantConversation(
                        conversation_id=conversation_id,
                        project_id=principal.project_id,
                        assistant=choice.assistant,
                        created_at=utcnow(),
                    )
                )
            elif row.assistant != choice.assistant:
                row.assistant = choice.assistant

    def of_conversations(self, project_id: str, conversation_ids: Sequence[str]) -> dict[str, str]:
        """The assistant each of these conversations talks to (those with none are left out)."""
        if not conversation_ids:
            return {}
        with self.store.session() as session:
            rows = session.execute(
                select(AssistantConversation.conversation_id, AssistantConversation.assistant).where(
                    AssistantConversation.project_id == project_id,
                    AssistantConversation.conversation_id.in_(conversation_ids),
                )
            ).all()
        return {conversation: name for conversation, name in rows}

    # --- rows -----------------------------------------------------------------------------------

    @staticmethod
    def _find(session: Session, project_id: str, name: str) -> Assistant | None:
        return session.scalars(
            select(Assistant).where(Assistant.project_id == project_id, Assistant.name == name)
        ).first()

    def _row(self, session: Session, project_id: str, name: str) -> Assistant:
        row = self._find(session, project_id, name)
        if row is None:
            raise NotFound(
                f"no assistant named {name!r} in this project; see `fmops assistants list`", param="name"
            )
        return row
