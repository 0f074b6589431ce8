"""Helpers shared by the console's Build pages (models, prompts, playground): form values and errors."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from fmops.errors import UserError
from fmops.platform import Platform
from fmops.prompts.playground import Playground
from fmops.prompts.service import PromptService

MAX_FIELD = 200_000  # characters in one form field; the services bound what they store themselves


def texts(form: FormData) -> dict[str, str]:
    """The form's non-empty text fields, trimmed (an empty field means "the default")."""
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, str) and value.strip() and name != "csrf_token":
            if len(value) > MAX_FIELD:
                raise UserError(f"{name} is too long (at most {MAX_FIELD} characters)", param=name)
            values[name] = value.strip()
    return values


def invalid(exc: ValidationError, what: str) -> UserError:
    """A pydantic error as the 400 a person reads: the field and what is wrong with it."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return UserError(f"{what}: {where + ': ' if where else ''}{message}", param=where or None)


def number(values: dict[str, str], name: str, *, low: float, high: float) -> float | None:
    """An optional number field, checked against its bounds with a message naming it."""
    raw = values.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{name} must be a number, not {raw[:50]!r}", param=name) from None
    if not low <= value <= high:
        raise UserError(f"{name} must be between {low:g} and {high:g}", param=name)
    return value


def prompts(platform: Platform) -> PromptService:
    return PromptService(platform.store, platform.catalog)


def playground(platform: Platform) -> Playground:
    return Playground(prompts(platform), platform.catalog, platform.gateway)


def is_chat_model(capabilities: dict[str, Any]) -> bool:
    return bool(capabilities.get("chat", True)) and not capabilities.get("embeddings", False)
