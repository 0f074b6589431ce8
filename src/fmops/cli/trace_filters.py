"""The trace filters of the command line, declared once: `fmops traces search`, `fmops data
from-traces` and `fmops queues create` take the same options, parsed by one builder.

The options are the parameters of `trace_filters(...)`, which parses `--prompt NAME:VERSION`,
`--score NAME>=X`, `--since 1h` and `--tag T` (repeatable) into `TraceFilters` (`--blocked-by` and
`--flagged-by` take a guardrail policy's label, or `*`). A command takes them all by declaring a
`filters: TraceFilters` parameter and wearing `@with_trace_filters`: the options appear in its
`--help` where that parameter stands, and it receives them parsed. A new filter is one more
parameter of `trace_filters`.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer

from fmops.errors import UserError
from fmops.store import utcnow
from fmops.tracing.query import TraceFilters
from fmops.tracing.tags import MAX_FILTER_TAGS, parse_tags

R = TypeVar("R")
NO_FILTER = TraceFilters()  # a command's `filters` default (Python wants one); the options replace it

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Model = Annotated[str | None, typer.Option("--model", help="Model alias the caller asked for")]
Provider = Annotated[str | None, typer.Option("--provider")]
Status = Annotated[str | None, typer.Option("--status", help="ok or error")]
User = Annotated[str | None, typer.Option("--user", help="End user")]
Session = Annotated[str | None, typer.Option("--session", help="Session id")]
Endpoint = Annotated[str | None, typer.Option("--endpoint")]
Prompt = Annotated[str | None, typer.Option("--prompt", help="Prompt name, or NAME:VERSION")]
Variant = Annotated[str | None, typer.Option("--variant", help="An endpoint's A/B variant")]
Feedback = Annotated[str | None, typer.Option("--feedback", help="any, none, positive or negative")]
Score = Annotated[
    str | None,
    typer.Option("--score", help="NAME, NAME>=X, NAME<=X or NAME=X..Y: traces with that evaluator score"),
]
BlockedBy = Annotated[
    str | None,
    typer.Option("--blocked-by", help="Calls blocked by this guardrail policy (its label; * for any)"),
]
FlaggedBy = Annotated[
    str | None,
    typer.Option("--flagged-by", help="Calls flagged by this guardrail policy (its label; * for any)"),
]
Q = Annotated[str | None, typer.Option("--q", help="Text in the input or output (case-insensitive)")]
Tag = Annotated[
    list[str] | None,
    typer.Option("--tag", help="Spans with this tag (repeat for several: all must match)"),
]
Since = Annotated[str | None, typer.Option("--since", help="Only spans newer than this, e.g. 1h, 30m, 7d")]
Start = Annotated[datetime | None, typer.Option("--start", help="Only spans from this time (UTC)")]
End = Annotated[datetime | None, typer.Option("--end", help="Only spans before this time (UTC)")]


def parse_since(value: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", value)
    if match is None:
        raise typer.BadParameter(
            f"{value!r} is not a duration: use e.g. 30s, 15m, 1h, 7d", param_hint="--since"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _int(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{option}: {text!r} is not a whole number") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--score: {text!r} is not a number") from None


def score_range(spec: str | None) -> tuple[str | None, float | None, float | None]:
    """`judge`, `judge>=3`, `judge<=2`, `judge=3..5` -> (name, low, high)."""
    if not spec:
        return None, None, None
    for op in (">=", "<=", "="):
        name, found, bound = spec.partition(op)
        if found:
            if op == ">=":
                return name, _float(bound), None
            if op == "<=":
                return name, None, _float(bound)
            low, dots, high = bound.partition("..")
            return (name, _float(low), _float(high)) if dots else (name, _float(bound), _float(bound))
    return spec, None, None


def trace_filters(
    *,
    model: Model = None,
    provider: Provider = None,
    status: Status = None,
    user: User = None,
    session: Session = None,
    endpoint: Endpoint = None,
    prompt: Prompt = None,
    variant: Variant = None,
    feedback: Feedback = None,
    score: Score = None,
    blocked_by: BlockedBy = None,
    flagged_by: FlaggedBy = None,
    q: Q = None,
    tag: Tag = None,
    since: Since = None,
    start: Start = None,
    end: End = None,
) -> TraceFilters:
    """The options, as the trace search's filters (each parameter is a command-line option)."""
    if since and start:
        raise UserError("give --since or --start, not both")
    prompt_name, _, version = (prompt or "").partition(":")
    score_name, low, high = score_range(score)
    return TraceFilters(
        start=utcnow() - parse_since(since) if since else start,
        end=end,
        model=model,
        provider=provider,
        status=status,
        user=user,
        session_id=session,
        endpoint=endpoint,
        prompt_name=prompt_name or None,
        prompt_version=_int(version, "--prompt") if version else None,
        variant=variant,
        feedback=feedback,
        score_name=score_name,
        min_score=low,
        max_score=high,
        blocked_by=blocked_by,
        flagged_by=flagged_by,
        q=q,
        tags=parse_tags(",".join(tag or ()), param="--tag", limit=MAX_FILTER_TAGS),
    )


def with_trace_filters(command: Callable[..., R]) -> Callable[..., R]:
    """`command` with the options of `trace_filters` in place of its `filters: TraceFilters`
    parameter (same place in `--help`); it is called with them parsed into `filters`."""
    own = inspect.signature(command, eval_str=True)
    options = inspect.signature(trace_filters, eval_str=True).parameters
    if "filters" not in own.parameters or own.parameters.keys() & options.keys():
        raise TypeError(f"{command.__name__} needs a `filters` parameter and no option named as a filter")
    params: list[inspect.Parameter] = []
    for param in own.parameters.values():
        if param.name == "filters":
            params += [option.replace(kind=param.kind) for option in options.values()]
        else:
            params.append(param)

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:  # Typer passes every option by name
        given = {name: kwargs.pop(name) for name in options}
        return command(filters=trace_filters(**given), **kwargs)

    # What Typer reads: this signature (and its annotations), not the wrapped function's.
    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": own.return_annotation}
    return wrapper
