"""Guardrail registry: built-ins and third-party guardrails arrive through the `fmops.guardrails` entry
points (see pyproject.toml); in-house modules named in FMOPS_PLUGINS may call `register` instead.

    >>> from fmops.guardrails.registry import build
    >>> from fmops.guardrails.base import Context, Stage
    >>> build("pii", {"types": ["email"]}).check("mail ada@example.com", Context(Stage.input)).verdict
    <Verdict.redact: 'redact'>
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from fmops.errors import UserError, invalid_config
from fmops.guardrails.base import Guardrail, GuardrailConfig
from fmops.plugins import load_objects

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "fmops.guardrails"
AnyGuardrail = type[Guardrail[Any]]
_registered: dict[str, AnyGuardrail] = {}


def register(cls: AnyGuardrail) -> AnyGuardrail:
    _registered[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _registered.pop(name, None)


def guardrails() -> dict[str, AnyGuardrail]:
    found: dict[str, AnyGuardrail] = {}
    for name, obj in load_objects(ENTRY_POINT_GROUP).items():
        if isinstance(obj, type) and issubclass(obj, Guardrail):
            found[name] = obj
        else:
            log.error("guardrail plugin is not a Guardrail class; ignored", extra={"guardrail": name})
    found.update(_registered)
    return found


def get_guardrail(name: str) -> AnyGuardrail:
    known = guardrails()
    if name not in known:
        listing = ", ".join(sorted(known)) or "none are installed"
        raise UserError(f"unknown guardrail {name!r}; known guardrails: {listing}", param="guardrail")
    return known[name]


def parse_config(name: str, cls: AnyGuardrail, raw: Mapping[str, Any] | None) -> GuardrailConfig:
    """The validated config; one UserError naming every bad field (`config.<field>: why; ...`)."""
    try:
        return cls.Config.model_validate(dict(raw or {}))
    except ValidationError as exc:
        raise invalid_config(exc, f"guardrail {name!r}") from None


def build(name: str, config: Mapping[str, Any] | None = None) -> Guardrail[Any]:
    """A ready guardrail; UserError for an unknown name or a bad config (naming each bad field)."""
    cls = get_guardrail(name)
    parsed = parse_config(name, cls, config)
    try:
        return cls(parsed)
    except ValueError as exc:
        # What only the built guardrail can tell (a pattern that backtracks, a schema it cannot use).
        raise UserError(f"invalid config for guardrail {name!r}: {exc}", param="config") from None


def describe(name: str, cls: AnyGuardrail) -> dict[str, Any]:
    """What a guardrail declares, for listings (API, CLI, console): its facts and its config's schema."""
    return {
        "name": name,  # as registered (a plugin's entry-point name)
        "description": cls.description,
        "stages": sorted(s.value for s in cls.stages),
        "spans": cls.spans,
        "slow": cls.slow,
        "needs_model": cls.needs_model,
        "config_schema": cls.Config.model_json_schema(by_alias=True),
    }
