"""Bounds on what one template render may build or spend, beyond what Jinja's sandbox checks.

The sandbox keeps a template away from Python's internals; it does not stop a template from making
something huge or slow: `{% set a = a ~ a %}` twenty times, `'x'|center(10**9)`, two nested
`range(10000)` loops, a macro that calls itself twice, or `[a, a]` nested sixty deep (cheap to
build, endless to print). So every render has a budget of work, charged for each loop iteration
and call and for each character a template builds, and each value is measured before it is built:
text up to MAX_TEXT characters, and containers up to MAX_WEIGHT (their items and characters,
counted through shared nesting, as printing them would). Exceeding a bound raises Jinja's
`SecurityError`, which `templates.render` turns into a 400.

`bounded(ast)` rewrites a parsed template so its loops, concatenations and container literals go
through the checks here; the other checks are filters, globals and sandbox hooks that replace
Jinja's own (installed by `templates._environment`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import filters, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Undefined
from jinja2.utils import Namespace, generate_lorem_ipsum, pass_environment, pass_eval_context
from jinja2.visitor import NodeTransformer

MAX_TEXT = 1_000_000  # characters in one string a template builds
MAX_WEIGHT = 1_000_000  # items + characters of one container a template builds
# Per render: 40 per loop iteration or call (25,000 of them: the output's own cap of a million
# characters allows about as many lines), 1 per 100 characters built or per part of a value measured.
MAX_WORK = 1_000_000
MAX_WIDTH = 10_000  # a field width or precision in `%` and `format` specs
MAX_COUNT = 10_000  # batch/slice sizes, lorem ipsum paragraphs, tab sizes
STEP = 40

COUNT, CONCAT, PACK = "fmops_count", "fmops_concat", "fmops_pack"
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


class _Budget:
    def __init__(self) -> None:
        self.spent = 0
        # Weights of the containers measured so far in this render, by id (the object is kept so
        # its id is not reused). The sandbox lets no template change a list, tuple or dict, so a
        # measured one keeps its weight: `[ns.a]` in a loop walks only the new list.
        self.sizes: dict[int, tuple[Any, int]] = {}


_budget: ContextVar[_Budget | None] = ContextVar("fmops_template_budget", default=None)


@contextmanager
def budget() -> Iterator[None]:
    """One render's budget of work (renders do not share theirs)."""
    token = _budget.set(_Budget())
    try:
        yield
    finally:
        _budget.reset(token)


def charge(units: int) -> None:
    state = _budget.get()
    if state is None:  # not rendering: Jinja folding constants while it compiles
        return
    state.spent += units
    if state.spent > MAX_WORK:
        raise SecurityError("a render may not do that much work (loops, calls or text built)")


def text(size: int) -> None:
    """Charge for building `size` characters, refused above MAX_TEXT."""
    if size > MAX_TEXT:
        raise SecurityError(f"a template may not build text of more than {MAX_TEXT} characters")
    charge(size // 100)


def _parts(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, Namespace):
        return list(value._Namespace__attrs.values())  # its attributes: Jinja has no public view
    return []


def _known(known: dict[int, tuple[Any, int]], part: Any) -> int:
    found = known.get(id(part))
    return found[1] if found is not None else 1


def weight(value: Any) -> int:
    """Items and characters of `value` as printing it would count them: a part shared N times
    counts N times (`[a, a]` nested sixty deep is 2**60), though each is walked once."""
    state = _budget.get()
    known = state.sizes if state is not None else {}
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(value, False)]
    walked_now = 0
    while stack:
        item, walked = stack.pop()
        key = id(item)
        if key not in sizes and key in known:
            sizes[key] = known[key][1]
        if walked:
            # Parts still in progress are an object inside itself (a namespace): printed as `...`.
            sizes[key] = 1 + sum(sizes[id(p)] if id(p) in sizes else _known(known, p) for p in _parts(item))
            if not isinstance(item, Namespace):  # a namespace can change; the rest cannot
                known[key] = (item, sizes[key])
        elif key not in sizes:
            walked_now += 1
            if isinstance(item, str):
                sizes[key] = len(item) + 1
                continue
            sizes[key] = 1  # in progress
            stack.append((item, True))
            stack.extend((p, False) for p in _parts(item))
            continue
        if sizes[key] > MAX_WEIGHT:
            raise SecurityError(
                f"a template may not build values of more than {MAX_WEIGHT} items and characters"
            )
    charge(walked_now)
    return sizes[id(value)]


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """A loop's items, each charged to the render's budget."""
    for item in iterable:
        charge(STEP)
        yield item


def concat(parts: list[Any]) -> str:
    """`a ~ b ~ c`, measured before it is built."""
    texts = []
    for part in parts:
        if not isinstance(part, str):
            weight(part)
        texts.append(str(part))
    text(sum(len(t) for t in texts))
    return "".join(texts)


def pack(value: Any) -> Any:
    """A list, tuple or dict literal with variables in it, measured once built (it shares its items)."""
    weight(value)
    return value


def finalize(value: Any) -> Any:
    """What `{{ value }}` prints, measured before it is turned into text."""
    if not isinstance(value, str | int | float | bool | Undefined) and value is not None:
        weight(value)
    return value


def check_printf(template: str) -> None:
    for match in _PRINTF.finditer(template):
        for size in match.groups():
            if size == "*" or (size is not None and int(size) > MAX_WIDTH):
                raise SecurityError(f"a format width or precision may not exceed {MAX_WIDTH}")


def check_format(template: str) -> None:
    """`str.format` specs: widths bounded, none taken from an argument (`{:{width}}`)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in fields:
        if spec and ("{" in spec or any(int(d) > MAX_WIDTH for d in _DIGITS.findall(spec))):
            raise SecurityError(f"a format width or precision may not exceed {MAX_WIDTH}")


def binop(operator: str, left: Any, right: Any) -> None:
    """Measure `left <operator> right` before Python computes it (`*` and `**` are checked in
    `templates`)."""
    if operator == "+" and isinstance(left, str) and isinstance(right, str):
        text(len(left) + len(right))
    elif operator == "+" and isinstance(left, list | tuple) and isinstance(right, list | tuple):
        if weight(left) + weight(right) > MAX_WEIGHT:
            raise SecurityError(f"a template may not build values of more than {MAX_WEIGHT} items")
    elif operator == "*" and isinstance(left, list | tuple) and isinstance(right, int):
        if weight(left) * right > MAX_WEIGHT:
            raise SecurityError(f"a template may not build values of more than {MAX_WEIGHT} items")
    elif operator == "%" and isinstance(left, str):
        check_printf(left)


_STR_METHODS: dict[str, Callable[[str, tuple[Any, ...]], int]] = {
    # name -> the size of what the call builds, from its arguments
    "center": lambda s, a: max(len(s), int(a[0]) if a else 0),
    "ljust": lambda s, a: max(len(s), int(a[0]) if a else 0),
    "rjust": lambda s, a: max(len(s), int(a[0]) if a else 0),
    "zfill": lambda s, a: max(len(s), int(a[0]) if a else 0),
    "expandtabs": lambda s, a: len(s) + s.count("\t") * (int(a[0]) if a else 8),
    "replace": lambda s, a: (
        len(s)
        + (s.count(str(a[0])) if a and a[0] else len(s) + 1)
        * (max(0, len(str(a[1])) - len(str(a[0]))) if len(a) > 1 else 0)
    ),
}


def call(obj: Any, args: tuple[Any, ...]) -> None:
    """Charge a call; measure what a `str` method would build before it builds it."""
    charge(STEP)
    owner = getattr(obj, "__self__", None)
    size = _STR_METHODS.get(getattr(obj, "__name__", ""))
    if isinstance(owner, str) and size is not None:
        try:
            text(size(owner, args))
        except (TypeError, ValueError, IndexError):
            return  # a bad argument: the method raises its own error


def called(result: Any) -> Any:
    """A container a call returned (`dict.fromkeys(range(9999), a)`), measured."""
    if isinstance(result, list | tuple | dict | set | frozenset):
        weight(result)
    return result


# Filters and globals that build in proportion to an argument: measured first, then Jinja's own.


def _center(value: Any, width: int = 80) -> str:
    text(max(len(str(value)), width if isinstance(width, int) else 0))
    return filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    source = str(s)
    pad = width if isinstance(width, int) else len(str(width))
    text(len(source) + (source.count("\n") + 1) * pad)
    return filters.do_indent(s, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    check_printf(str(value))
    return filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    text(len(str(d)) * max(0, len(items) - 1))
    result = filters.sync_do_join(eval_ctx, items, d, attribute)
    text(len(result))
    return result


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    source, old_text, new_text = str(s), str(old), str(new)
    hits = source.count(old_text) if old_text else len(source) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    text(len(source) + hits * max(0, len(new_text) - len(old_text)))
    return str(filters.do_replace(eval_ctx, s, old, new, count))


def _filled(size: Any, fill_with: Any) -> None:
    if isinstance(size, int) and size > MAX_COUNT:
        raise SecurityError(f"batch and slice may make at most {MAX_COUNT} items")
    if fill_with is not None and isinstance(size, int):
        weight([fill_with] * max(0, size))


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    _filled(linecount, fill_with)
    return filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    _filled(slices, fill_with)
    return filters.sync_do_slice(value, slices, fill_with)


@pass_environment
def _wordwrap(
    environment: Any,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    source = str(s)
    joint = len(wrapstring if wrapstring is not None else environment.newline_sequence)
    lines = len(source) // max(1, int(width)) + source.count("\n") + 1
    text(len(source) + lines * joint)
    return filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> Any:
    if indent is not None and not 0 <= int(indent) <= 16:
        raise SecurityError("tojson's indent may be 0 to 16")
    weight(value)
    return filters.do_tojson(eval_ctx, value, indent)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > 100 or max > 1000:
        raise SecurityError("lipsum may make at most 100 paragraphs of 1000 words")
    return str(generate_lorem_ipsum(n, html, min, max))


def _dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    return pack(dict(*args, **kwargs))  # type: ignore[no-any-return]


def _namespace(*args: Any, **kwargs: Any) -> Namespace:
    weight([args, kwargs])
    return Namespace(*args, **kwargs)


BOUNDED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "join": _join,
    "replace": _replace,
    "batch": _batch,
    "slice": _slice,
    "wordwrap": _wordwrap,
    "tojson": _tojson,
}
BOUNDED_GLOBALS: dict[str, Any] = {
    "lipsum": _lipsum,
    "dict": _dict,
    "namespace": _namespace,
    COUNT: counted,
    CONCAT: concat,
    PACK: pack,
}


class _Bounded(NodeTransformer):
    """Routes loops, `~` and container literals with variables in them through the checks."""

    @staticmethod
    def _call(name: str, arg: Any, like: Any) -> Any:
        node = nodes.Call(nodes.Name(name, "load"), [arg], [], None, None)
        return node.set_lineno(like.lineno).set_environment(like.environment)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._call(COUNT, node.iter, node)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes).set_lineno(node.lineno).set_environment(node.environment)  # type: ignore[arg-type]
        return self._call(CONCAT, items, node)  # type: ignore[no-any-return]

    def _container(self, node: Any) -> Any:
        self.generic_visit(node)
        parts = [p.value for p in node.items] if isinstance(node, nodes.Dict) else node.items
        if all(isinstance(p, nodes.Const) for p in parts):
            return node  # constants only: as big as the template's own text
        return self._call(PACK, node, node)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._container(node)  # type: ignore[no-any-return]

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._container(node)  # type: ignore[no-any-return]

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":  # `{% for a, b in ... %}`: a target, not a value
            return node
        return self._container(node)  # type: ignore[no-any-return]


def bounded(ast: nodes.Template) -> nodes.Template:
    """The parsed template with its loops, `~` and container literals measured."""
    return _Bounded().visit(ast)  # type: ignore[no-any-return]
