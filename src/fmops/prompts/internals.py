"""What a prompt template may not name, found when it is pushed rather than when it is rendered.

The sandbox refuses these at render time as well; checking the parsed template means a version
that reaches for Python's internals is never stored. Refused: dunder names (`''.__class__`,
`x|attr('__class__')`, `x['__globals__']`), private attributes of Jinja's own objects
(`self._TemplateReference__context`), methods that change a list or dict (`items.append(1)`), and
format strings that reach into their arguments' attributes (`'{0.__class__}'.format(x)`).

Data stays data: a variable's `_id` key (`doc._id`, `doc['_id']`) is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from jinja2 import nodes

# Names a template sees that are Jinja's objects, not the caller's data.
_JINJA_NAMES = frozenset(
    ("self", "loop", "caller", "varargs", "kwargs", "cycler", "joiner", "namespace", "lipsum", "range")
)
# What the immutable sandbox refuses on lists, dicts and sets (jinja2.sandbox._mutable_spec).
_MUTATORS = frozenset(
    {
        "add",
        "append",
        "appendleft",
        "clear",
        "difference_update",
        "discard",
        "extend",
        "extendleft",
        "insert",
        "pop",
        "popitem",
        "popleft",
        "remove",
        "reverse",
        "rotate",
        "setdefault",
        "sort",
        "symmetric_difference_update",
        "update",
    }
)
_FORMAT_FIELD_ATTRIBUTE = re.compile(r"\{[^{}]*[.\[]_")


@dataclass(frozen=True)
class Refusal:
    line: int
    column: int
    reason: str


def _dunder(name: object) -> bool:
    return isinstance(name, str) and name.startswith("__")


def _jinja_object(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name in _JINJA_NAMES


def _findings(ast: nodes.Template) -> Iterator[tuple[nodes.Node, str, str]]:
    """(node, text to point at, why) for each refused construct."""
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Call)):
        if isinstance(node, nodes.Getattr):
            if _dunder(node.attr):
                yield node, "." + node.attr, f"`{node.attr}` is part of Python's internals"
            elif node.attr.startswith("_") and _jinja_object(node.node):
                yield node, "." + node.attr, f"`{node.attr}` is private to Jinja"
        elif isinstance(node, nodes.Getitem):
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if _dunder(key):
                yield node, str(key), f"`{key}` is part of Python's internals"
        elif isinstance(node, nodes.Filter):
            if node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const):
                name = node.args[0].value
                if isinstance(name, str) and name.startswith("_"):
                    yield node, name, f"`attr('{name}')` reaches Python's internals"
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            method, owner = node.node.attr, node.node.node
            if method in _MUTATORS:
                yield node, "." + method, f"`{method}()` would change a value, and templates only read"
            elif (
                method in ("format", "format_map")
                and isinstance(owner, nodes.Const)
                and isinstance(owner.value, str)
                and _FORMAT_FIELD_ATTRIBUTE.search(owner.value)
            ):
                yield node, owner.value, "a format field may not reach into an attribute starting with `_`"


def _position(source: str, line: int, needle: str) -> tuple[int, int]:
    """The 1-based line and column of `needle` at or after the start of `line` (Jinja gives lines only)."""
    lines = source.splitlines(keepends=True)
    start = sum(len(text) for text in lines[: max(line - 1, 0)])
    index = source.find(needle, start)
    if index < 0:
        return line, 1
    before = source[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def first_refusal(ast: nodes.Template, source: str) -> Refusal | None:
    """The first construct, in reading order, that a prompt template may not use."""
    found = [Refusal(*_position(source, node.lineno, needle), why) for node, needle, why in _findings(ast)]
    return min(found, key=lambda r: (r.line, r.column)) if found else None
