"""JSON Schema validation of model output, with users' `pattern`s run under a time limit.

jsonschema matches `pattern`, `patternProperties` and `additionalProperties` (which consults the
pattern properties) with Python's `re`, which has no timeout; those three keywords are replaced here
by the same logic on `safe_regex`. `unevaluatedProperties` also consults `patternProperties` deep
inside jsonschema, so schemas combining the two are refused when the rule is made. Remote `$ref`s are
never fetched (jsonschema's default registry does not retrieve), so a schema cannot make the
server call out.

jsonschema loads when a schema is first checked or used, not with the scorers: an eval or a
gateway without a JSON Schema anywhere never imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fmops.scorers.safe_regex import search

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator
    from referencing.exceptions import Unresolvable

MAX_ERRORS = 5

__all__ = ["Unresolvable", "check", "errors", "validator"]


def __getattr__(name: str) -> Any:
    if name == "Unresolvable":  # what a schema's unresolvable `$ref` raises
        from referencing.exceptions import Unresolvable

        return Unresolvable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [
        key
        for key in instance
        if key not in properties and not any(search(pattern, key) for pattern in patterns)
    ]


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        names = ", ".join(repr(e) for e in sorted(extras))
        yield ValidationError(f"additional properties are not allowed ({names} unexpected)")


_SAFE_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


def _walk(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _walk(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _walk(value)


def check(schema: dict[str, Any]) -> None:
    """A ValueError saying what is wrong with a schema (for config validators)."""
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import SchemaError

    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise ValueError(f"not a valid JSON Schema{' at ' + where if where else ''}: {exc.message}") from None
    # Patterns themselves were checked above: the meta-schema declares them `format: regex`.
    nodes = list(_walk(schema))
    if any("unevaluatedProperties" in n for n in nodes) and any(n.get("patternProperties") for n in nodes):
        raise ValueError("patternProperties cannot be combined with unevaluatedProperties here")


def validator(schema: dict[str, Any], *, check_formats: bool = False) -> Validator:
    from jsonschema import Draft202012Validator, validators

    base = validators.validator_for(schema, default=Draft202012Validator)
    safe = validators.extend(base, _SAFE_KEYWORDS)  # type: ignore[no-untyped-call]
    return safe(schema, format_checker=base.FORMAT_CHECKER if check_formats else None)  # type: ignore[no-any-return]


def errors(checker: Validator, instance: Any) -> list[str]:
    """Up to MAX_ERRORS problems, each prefixed with where in the output it is."""
    found = []
    for error in checker.iter_errors(instance):
        where = "/".join(str(p) for p in error.absolute_path)
        found.append(f"{'at ' + where + ': ' if where else ''}{error.message}")
        if len(found) >= MAX_ERRORS:
            break
    return found
