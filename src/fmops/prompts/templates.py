"""Prompt templates: Jinja2 in an immutable sandbox, parsed once, rendered many times.

What a template can do is what Jinja's `ImmutableSandboxedEnvironment` allows: no attribute that
starts with `_`, no mutation of lists or dicts, no Python callables but the safe built-ins. On top
of that a render is bounded (`range` is capped, `*` and `**` cannot build huge values, the output
is cut off at MAX_OUTPUT characters) so a template cannot exhaust the server; `bounds` measures
the rest of what a render builds or spends (text, containers, loops, calls). Variable values are
data: they are inserted as text and never rendered as templates themselves.

Errors are `TemplateError`s (400s): a syntax error names its line and column, and so does a
template that reaches for Python's internals (`internals`: refused when it is pushed, before any
version is stored); a render names the variables that are missing.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from fmops.errors import UserError
from fmops.prompts import bounds
from fmops.prompts.internals import first_refusal

MAX_OUTPUT = 1_000_000  # characters one message may render to
MAX_RANGE = 10_000
MAX_POWER = 64
MAX_REPEAT = 100_000  # characters `'ab' * n` may build
MAX_INT_BITS = 4096  # an integer a template computes: `((9 ** 64) ** 64) ** 64` would take minutes

_OPENING = re.compile(r"\{\{|\{%|\{#")


class TemplateError(UserError):
    """A template that does not parse, renders badly, or lacks variables (a 400)."""

    code = "invalid_template"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        line: int | None = None,
        column: int | None = None,
        missing: list[str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.line = line
        self.column = column
        self.missing = missing or []


def _safe_range(*args: int) -> range:
    found = range(*args)
    if len(found) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items in a prompt template")
    return found


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_mul(left: Any, right: Any) -> Any:
    if isinstance(left, str | list | tuple) and isinstance(right, int):
        size = len(left) * right
    elif isinstance(right, str | list | tuple) and isinstance(left, int):
        size = len(right) * left
    else:
        size = 0
    if size > MAX_REPEAT:
        raise SecurityError(f"a template may not repeat a value to more than {MAX_REPEAT} items")
    if _int(left) and _int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"a template may not compute integers above {MAX_INT_BITS} bits")
    return operator.mul(left, right)


def _checked_pow(left: Any, right: Any) -> Any:
    if isinstance(right, int | float) and abs(right) > MAX_POWER:
        raise SecurityError(f"a template may not raise to a power above {MAX_POWER}")
    if _int(left) and _int(right) and left.bit_length() * right > MAX_INT_BITS:
        raise SecurityError(f"a template may not compute integers above {MAX_INT_BITS} bits")
    return operator.pow(left, right)


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {"*": _checked_mul, "**": _checked_pow}


class _Sandbox(ImmutableSandboxedEnvironment):
    # `+` and `%` too: `bounds` measures what they would build (see bounds.py for the others).
    intercepted_binops = frozenset({*_BINOPS, "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        bounds.binop(operator, left, right)
        check = _BINOPS.get(operator)
        if check is not None:
            return check(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        bounds.call(__obj, args)
        return bounds.called(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            bounds.check_format(value.__self__)
        return wrapped


def _environment() -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=bounds.finalize
    )
    env.globals["range"] = _safe_range
    env.globals.update(bounds.BOUNDED_GLOBALS)
    env.filters.update(bounds.BOUNDED_FILTERS)
    return env


ENV = _environment()


def _column(source: str, line: int) -> int:
    """Best guess at the column (1-based) of a syntax error on `line`: Jinja reports the line only.

    The first template construct on the line that fails to parse on its own is the culprit; if
    each parses alone (an unclosed block), the last opening on the line is.
    """
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return 1
    text = lines[line - 1]
    openings = [m.start() for m in _OPENING.finditer(text)]
    for start in openings:
        piece = text[start:]
        if piece.startswith("{{"):
            end = piece.find("}}")
            candidate = piece if end < 0 else piece[: end + 2]
            try:
                ENV.parse(candidate)
            except TemplateSyntaxError:
                return start + 1
    return (openings[-1] + 1) if openings else 1


@dataclass(frozen=True)
class Compiled:
    source: str
    variables: frozenset[str]
    template: Any  # jinja2.Template
    # A template of text and `{{ name }}` only, as (text, is a variable name) pieces: rendered
    # with text values by joining them, no Jinja context to build (`substitute`).
    pieces: tuple[tuple[str, bool], ...] | None = None


@lru_cache(maxsize=4096)
def compile_template(source: str, where: str = "template") -> Compiled:
    """Parse and compile once (cached by content); a syntax error or a reach for Python's internals
    is a 400 with line and column."""
    try:
        ast = ENV.parse(source)
        # Parsed twice: `bounded` rewrites the tree it is given, and the variables come from the
        # template as written.
        template = ENV.from_string(bounds.bounded(ENV.parse(source)))
    except TemplateSyntaxError as exc:
        line = exc.lineno or 1
        column = _column(source, line)
        raise TemplateError(
            f"{where} does not parse at line {line}, column {column}: {exc.message}",
            param=where,
            line=line,
            column=column,
        ) from None
    refused = first_refusal(ast, source)
    if refused is not None:
        raise TemplateError(
            f"{where} at line {refused.line}, column {refused.column}: {refused.reason}; "
            "a prompt template may not do that",
            param=where,
            line=refused.line,
            column=refused.column,
        )
    # Each render copies the template's globals into its context, twice; Jinja keeps them as a
    # ChainMap over ENV's, whose copies cost ~6 us a message. ENV's are set once, at import, so a
    # plain dict of the same names serves the same, for a fraction.
    template.globals = dict(template.globals)
    variables = frozenset(meta.find_undeclared_variables(ast)) - set(ENV.globals)
    return Compiled(source, variables, template, _pieces(ast, variables))


def _pieces(ast: nodes.Template, variables: frozenset[str]) -> tuple[tuple[str, bool], ...] | None:
    """The template as text and variable names, when that is all it is (the parser has already
    normalised its newlines as Jinja prints them); None when it does anything else."""
    pieces: list[tuple[str, bool]] = []
    for output in ast.body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                pieces.append((node.data, False))
            elif isinstance(node, nodes.Name) and node.ctx == "load" and node.name in variables:
                pieces.append((node.name, True))
            else:
                return None
    return tuple(pieces)


def substitute(compiled: Compiled, values: Mapping[str, Any]) -> str | None:
    """What Jinja renders for a template of text and `{{ name }}` when each value is text: the
    values joined with the text (printing a string is all Jinja does with it: nothing to escape,
    nothing for `bounds` to measure). None when the template or a value is anything else."""
    if compiled.pieces is None:
        return None
    out = []
    for text, variable in compiled.pieces:
        if variable:
            text = values[text]
            if type(text) is not str:
                return None
        out.append(text)
    return "".join(out)


def variables_of(sources: list[str]) -> list[str]:
    """Every variable the templates use, sorted."""
    found: set[str] = set()
    for i, source in enumerate(sources):
        found |= compile_template(source, f"messages[{i}].content").variables
    return sorted(found)


def render(source: str, values: Mapping[str, Any], where: str = "template") -> str:
    """Render one template; missing variables are named, unsafe access is refused (400s)."""
    compiled = compile_template(source, where)
    missing = sorted(compiled.variables - values.keys())
    if missing:
        raise TemplateError(
            f"missing variables: {', '.join(missing)}",
            param="variables",
            missing=missing,
            code="missing_variables",
        )
    return _render(compiled, values, where)


def _too_large(where: str) -> TemplateError:
    return TemplateError(
        f"{where} renders to more than {MAX_OUTPUT} characters", param=where, code="template_too_large"
    )


def _render(compiled: Compiled, values: Mapping[str, Any], where: str) -> str:
    """Render a template whose variables are all in `values`."""
    text = substitute(compiled, values)
    if text is not None:
        if len(text) > MAX_OUTPUT:
            raise _too_large(where)
        return text
    out: list[str] = []
    size = 0
    try:
        with bounds.budget():  # the render's budget of work (loops, calls, text built)
            for chunk in compiled.template.generate(**values):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise _too_large(where)
                out.append(chunk)
    except SecurityError as exc:
        raise TemplateError(
            f"{where} tried something a prompt template may not do: {exc}", param=where
        ) from None
    except UndefinedError as exc:  # an attribute or key of a variable that is not there
        raise TemplateError(f"{where}: {exc.message}", param="variables", code="missing_variables") from None
    except TemplateError:
        raise
    except Exception as exc:  # a filter on the wrong type, a division by zero: the template's fault
        raise TemplateError(f"{where} failed to render: {type(exc).__name__}: {exc}", param=where) from None
    return "".join(out)


@dataclass(frozen=True)
class CompiledMessages:
    """A version's message templates, compiled, and every variable they use."""

    templates: tuple[Compiled, ...]
    variables: frozenset[str]


def compile_messages(messages: list[dict[str, Any]]) -> CompiledMessages:
    templates = tuple(
        compile_template(str(message.get("content") or ""), f"messages[{i}].content")
        for i, message in enumerate(messages)
    )
    return CompiledMessages(templates, frozenset().union(*(t.variables for t in templates)))


def render_messages(
    messages: list[dict[str, Any]], values: Mapping[str, Any], compiled: CompiledMessages | None = None
) -> list[dict[str, Any]]:
    """Render each message's content; every missing variable of every message is named at once.
    `compiled`: `compile_messages(messages)`, when the caller keeps it (a prompt version does)."""
    if compiled is None:
        compiled = compile_messages(messages)
    missing = sorted(compiled.variables - values.keys())
    if missing:
        raise TemplateError(
            f"missing variables: {', '.join(missing)}",
            param="variables",
            missing=missing,
            code="missing_variables",
        )
    return [
        {**message, "content": _render(template, values, f"messages[{i}].content")}
        for i, (message, template) in enumerate(zip(messages, compiled.templates, strict=True))
    ]
