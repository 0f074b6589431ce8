"""Custom instructions and saved prompts, each private to one user in one project.

Another user's instructions, unshared prompts and conversations answer 404, as if they did not exist.
A saved prompt is a template of the prompt registry's engine (`fmops.prompts.templates`): it is
compiled when saved, so a reach for Python's internals is refused then with its line and column,
and it renders in the same sandbox. Instructions are plain text, never rendered as a template.

The chat sends the instructions as the first message, a system message whose first line
(`INSTRUCTIONS_MARK`) says what it is, so it reads as what it is in the trace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fmops.auth import Principal
from fmops.auth.service import storable
from fmops.catalog import Catalog
from fmops.conversations import ConversationService
from fmops.conversations.service import storable_text
from fmops.errors import Conflict, NotFound, UserError
from fmops.gateway.schemas import ChatCompletionRequest, Message
from fmops.prompts.schemas import PromptSpec
from fmops.prompts.service import PromptService
from fmops.prompts.templates import compile_template, render
from fmops.store import Store, utcnow
from fmops.store.models import ConversationTailoring, CustomInstructions, SavedPrompt
from fmops.tailoring.schemas import (
    DESCRIPTION_MAX,
    INSTRUCTIONS_MAX,
    NAME_PATTERN,
    PROMPT_MAX,
    PROMPTS_MAX,
    REGISTRY_NAME_PATTERN,
    VALUE_MAX,
    InstructionsView,
    Promoted,
    SavedPromptView,
)

INSTRUCTIONS_MARK = "[Custom instructions: set by {user} in the fmops chat settings]"
ABOUT_HEADING = "What to know about me:"
STYLE_HEADING = "How to answer:"
_SHOWN = 20  # names listed in a 404's message


def _prompt_view(row: SavedPrompt, principal: Principal) -> SavedPromptView:
    return SavedPromptView(
        id=row.id,
        name=row.name,
        description=row.description,
        template=row.template,
        variables=list(row.variables or []),
        author=row.author,
        mine=row.user_id == principal.user_id,
        shared=row.shared,
        promoted_to=row.promoted_to,
        promoted_version=row.promoted_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _limited(text: str, limit: int, what: str, param: str) -> str:
    text = storable_text(text)
    if len(text) > limit:
        raise UserError(f"{what} has at most {limit:,} characters; this has {len(text):,}", param=param)
    return text


def _name(name: str) -> str:
    if not re.match(NAME_PATTERN, name):
        raise UserError(
            f"a saved prompt's name is what follows / in the chat: lower-case letters, digits, '_' and '-', "
            f"at most 64, starting with a letter or digit (not {name[:80]!r})",
            param="name",
        )
    return name


def _variables(template: str) -> list[str]:
    # A syntax error or a template escape is a 400 naming its line and column (the registry's sandbox).
    return sorted(compile_template(template, "template").variables)


def instructions_message(user: str, about: str, style: str) -> str:
    """The system message the chat sends: the mark, then each part that is set."""
    parts = [INSTRUCTIONS_MARK.format(user=user)]
    if about.strip():
        parts.append(f"{ABOUT_HEADING}\n{about.strip()}")
    if style.strip():
        parts.append(f"{STYLE_HEADING}\n{style.strip()}")
    return "\n\n".join(parts)


class TailoringService:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- custom instructions ----------------------------------------------------------------------

    def instructions(self, principal: Principal) -> InstructionsView:
        with self.store.session() as session:
            row = self._instructions_row(session, principal)
        if row is None:
            return InstructionsView("", "", None)
        return InstructionsView(row.about, row.style, row.updated_at)

    def set_instructions(self, principal: Principal, about: str, style: str) -> InstructionsView:
        about = _limited(about, INSTRUCTIONS_MAX, "what the model should know about you", "about")
        style = _limited(style, INSTRUCTIONS_MAX, "how the model should answer", "style")
        if not about.strip() and not style.strip():
            self.clear_instructions(principal)
            return InstructionsView("", "", None)
        now = utcnow()
        for attempt in range(2):  # two first saves at once: the loser updates the winner's row
            try:
                with self.store.write() as session:
                    row = self._instructions_row(session, principal)
                    if row is None:
                        row = CustomInstructions(project_id=principal.project_id, user_id=principal.user_id)
                        session.add(row)
                    row.about, row.style, row.updated_at = about, style, now
                return InstructionsView(about, style, now)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def clear_instructions(self, principal: Principal) -> None:
        with self.store.write() as session:
            session.execute(
                delete(CustomInstructions).where(
                    CustomInstructions.project_id == principal.project_id,
                    CustomInstructions.user_id == principal.user_id,
                )
            )

    # --- the chat's hook ------------------------------------------------------------------------

    def preamble(self, principal: Principal, conversation_id: str) -> dict[str, str] | None:
        """The marked system message of the caller's instructions for this conversation; None when
        there are none or the conversation switched them off."""
        with self.store.session() as session:
            row = self._instructions_row(session, principal)
            if row is None or not (row.about.strip() or row.style.strip()):
                return None
            switch = session.get(ConversationTailoring, conversation_id)
        if switch is not None and not switch.instructions:
            return None
        return {"role": "system", "content": instructions_message(principal.user_name, row.about, row.style)}

    def apply(
        self, principal: Principal, conversation_id: str, messages: list[dict[str, str]]
    ) -> list[dict[str, str]]:
        """`messages` as the model is sent them: the instructions' system message first, if any."""
        first = self.preamble(principal, conversation_id)
        return messages if first is None else [first, *messages]

    def tailor(
        self,
        principal: Principal,
        conversation_id: str,
        request: ChatCompletionRequest,
        max_chars: int | None = None,
    ) -> ChatCompletionRequest:
        """The chat's request to the gateway, tailored (the chat's one hook: routers/chat_stream.py).

        With `max_chars` (the chat's history budget) the instructions take their room from the
        oldest messages rather than push the whole over it: a small local model's context is short.
        The newest message is always kept.
        """
        first = self.preamble(principal, conversation_id)
        if first is None:
            return request
        history = list(request.messages)
        if max_chars is not None:
            used = len(first["content"]) + sum(len(str(m.content or "")) for m in history)
            while len(history) > 1 and used > max_chars:
                used -= len(str(history.pop(0).content or ""))
            # A model expects the conversation to start with the person, not a cut-off answer.
            while len(history) > 1 and history[0].role == "assistant":
                history.pop(0)
        return request.model_copy(update={"messages": [Message.model_validate(first), *history]})

    def conversation_instructions(self, principal: Principal, conversation_id: str) -> bool:
        """Whether this conversation of the caller's sends their instructions (404: not theirs)."""
        ConversationService(self.store).get(principal, conversation_id)
        with self.store.session() as session:
            switch = session.get(ConversationTailoring, conversation_id)
        return switch is None or switch.instructions

    def switch_instructions(self, principal: Principal, conversation_id: str, on: bool) -> bool:
        ConversationService(self.store).get(principal, conversation_id)
        with self.store.write() as session:
            switch = session.get(ConversationTailoring, conversation_id)
            if switch is None:
                session.add(ConversationTailoring(conversation_id=conversation_id, instructions=on))
            else:
                switch.instructions = on
        return on

    # --- saved prompts ---------------------------------------------------------------------------

    def prompts(self, principal: Principal) -> list[SavedPromptView]:
        """The caller's saved prompts, then those others shared with the project, each by name."""
        with self.store.session() as session:
            rows = session.scalars(
                select(SavedPrompt)
                .where(
                    SavedPrompt.project_id == principal.project_id,
                    (SavedPrompt.user_id == principal.user_id) | SavedPrompt.shared.is_(True),
                )
                .order_by(SavedPrompt.name, SavedPrompt.author)
            ).all()
        views = [_prompt_view(r, principal) for r in rows]
        return [v for v in views if v.mine] + [v for v in views if not v.mine]

    def prompt(self, principal: Principal, name: str) -> SavedPromptView:
        """One of the caller's own saved prompts."""
        with self.store.session() as session:
            return _prompt_view(self._own(session, principal, name), principal)

    def save_prompt(
        self,
        principal: Principal,
        name: str,
        template: str,
        *,
        description: str | None = None,
        shared: bool = False,
    ) -> tuple[SavedPromptView, bool]:
        """Create or replace the caller's prompt `name`; True when it is new."""
        name = _name(name)
        template = _limited(template, PROMPT_MAX, "a saved prompt", "template")
        if not template.strip():
            raise UserError("a saved prompt needs text: write what it asks", param="template")
        variables = _variables(template)
        if description is not None:
            description = (
                _limited(description, DESCRIPTION_MAX, "a description", "description").strip() or None
            )
        now = utcnow()
        try:
            with self.store.write() as session:
                row = session.scalar(self._own_query(principal, name))
                created = row is None
                if row is None:
                    count = session.scalar(
                        select(func.count())
                        .select_from(SavedPrompt)
                        .where(
                            SavedPrompt.project_id == principal.project_id,
                            SavedPrompt.user_id == principal.user_id,
                        )
                    )
                    if (count or 0) >= PROMPTS_MAX:
                        raise Conflict(f"you keep at most {PROMPTS_MAX} saved prompts: delete one first")
                    row = SavedPrompt(
                        project_id=principal.project_id,
                        user_id=principal.user_id,
                        author=principal.user_name,
                        name=name,
                        created_at=now,
                    )
                    session.add(row)
                row.template, row.variables, row.description = template, variables, description
                row.shared, row.updated_at = shared, now
                session.flush()
                return _prompt_view(row, principal), created
        except IntegrityError:
            raise Conflict(f"/{name} was saved at the same moment elsewhere: try again") from None

    def share(self, principal: Principal, name: str, shared: bool = True) -> SavedPromptView:
        with self.store.write() as session:
            row = self._own(session, principal, name)
            row.shared, row.updated_at = shared, utcnow()
            return _prompt_view(row, principal)

    def delete_prompt(self, principal: Principal, name: str) -> None:
        with self.store.write() as session:
            session.delete(self._own(session, principal, name))

    def resolve(self, principal: Principal, name: str) -> SavedPromptView:
        """What `/name` in the chat calls: the caller's own prompt, else one shared with the project."""
        if not storable(name) or not re.match(NAME_PATTERN, name):
            raise self._unknown(principal, name)
        with self.store.session() as session:
            row = session.scalar(self._own_query(principal, name))
            if row is None:
                row = session.scalars(
                    select(SavedPrompt)
                    .where(
                        SavedPrompt.project_id == principal.project_id,
                        SavedPrompt.name == name,
                        SavedPrompt.shared.is_(True),
                    )
                    .order_by(SavedPrompt.updated_at.desc())
                ).first()
        if row is None:
            raise self._unknown(principal, name)
        return _prompt_view(row, principal)

    def fill(self, principal: Principal, name: str, values: Mapping[str, Any]) -> str:
        """`/name` with its variables filled: the text the chat box then holds."""
        found = self.resolve(principal, name)
        return self.fill_view(found, values)

    @staticmethod
    def fill_view(found: SavedPromptView, values: Mapping[str, Any]) -> str:
        for key, value in values.items():
            if len(str(value)) > VALUE_MAX:
                raise UserError(
                    f"the value of {key} has at most {VALUE_MAX:,} characters", param=f"variables.{key}"
                )
        kept = {k: storable_text(str(v)) for k, v in values.items() if k in found.variables}
        return render(found.template, kept, f"/{found.name}")

    # --- shared with the project, promoted by engineers ----------------------------------------

    def shared_prompt(self, principal: Principal, prompt_id: str) -> SavedPromptView:
        """A prompt shared with the caller's project (another's unshared one is a 404)."""
        with self.store.session() as session:
            return _prompt_view(self._shared(session, principal.project_id, prompt_id), principal)

    def find_shared(self, project_id: str, name: str, author: str | None = None) -> list[str]:
        """Ids of the prompts shared in a project under `name` (by `author`, if given)."""
        query = select(SavedPrompt.id).where(
            SavedPrompt.project_id == project_id, SavedPrompt.name == name, SavedPrompt.shared.is_(True)
        )
        if author is not None:
            query = query.where(SavedPrompt.author == author)
        with self.store.session() as session:
            return list(session.scalars(query.order_by(SavedPrompt.author)).all())

    def promote(
        self,
        project_id: str,
        prompt_id: str,
        catalog: Catalog,
        *,
        registry_name: str | None = None,
        actor: str,
    ) -> Promoted:
        """Push a shared prompt into the prompt registry: a new prompt, or a new version of
        `registry_name`. The version's author is the prompt's author; `actor` is named in its message."""
        with self.store.session() as session:
            row = self._shared(session, project_id, prompt_id)
            name, author, template, description = row.name, row.author, row.template, row.description
        target = registry_name or name
        if not re.match(REGISTRY_NAME_PATTERN, target):
            raise UserError(f"{target!r} is not a prompt registry name", param="name")
        spec = PromptSpec.model_validate(
            {
                "name": target,
                "description": description,
                "messages": [{"role": "user", "content": template}],
                "message": f"promoted by {actor} from /{name}, shared by {author} in the chat"[:2_000],
            }
        )
        view, created = PromptService(self.store, catalog).push(
            project_id, spec, author=author, author_key_id=None
        )
        with self.store.write() as session:
            found = session.get(SavedPrompt, prompt_id)
            if found is not None:
                found.promoted_to, found.promoted_version = view.name, view.version
        return Promoted(view.name, view.version, created, author)

    # --- helpers ----------------------------------------------------------------------------------

    def _instructions_row(self, session: Session, principal: Principal) -> CustomInstructions | None:
        return session.scalar(
            select(CustomInstructions).where(
                CustomInstructions.project_id == principal.project_id,
                CustomInstructions.user_id == principal.user_id,
            )
        )

    @staticmethod
    def _own_query(principal: Principal, name: str) -> Select[SavedPrompt]:
        return select(SavedPrompt).where(
            SavedPrompt.project_id == principal.project_id,
            SavedPrompt.user_id == principal.user_id,
            SavedPrompt.name == name,
        )

    def _own(self, session: Session, principal: Principal, name: str) -> SavedPrompt:
        row = session.scalar(self._own_query(principal, name)) if storable(name) else None
        if row is None:
            raise NotFound(f"you have no saved prompt named /{name[:80]}")
        return row

    @staticmethod
    def _shared(session: Session, project_id: str, prompt_id: str) -> SavedPrompt:
        row = None
        if storable(prompt_id) and len(prompt_id) <= 32:
            row = session.scalar(
                select(SavedPrompt).where(
                    SavedPrompt.id == prompt_id,
                    SavedPrompt.project_id == project_id,
                    SavedPrompt.shared.is_(True),
                )
            )
        if row is None:
            raise NotFound("no such shared prompt in this project")
        return row

    def _unknown(self, principal: Principal, name: str) -> NotFound:
        names = sorted({f"/{p.name}" for p in self.prompts(principal)})
        known = f"yours and the project's: {', '.join(names[:_SHOWN])}" if names else "you have none yet"
        return NotFound(f"no saved prompt named /{name[:80]} ({known}); save one under Prompts", param="name")
