"""`fmops traces`: search spans, follow new ones live, show one trace as a tree."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import typer
from rich.text import Text
from rich.tree import Tree

from fmops.cli import trace_filters as opts
from fmops.cli.common import console, err_console, fmt, local_platform
from fmops.cli.trace_filters import parse_since as parse_since  # `fmops stats` reads durations alike
from fmops.store import utcnow
from fmops.store.models import Span
from fmops.tracing.query import MAX_LIMIT, SpanNode, TraceFilters, TraceQuery

app = typer.Typer(help="Traces: search spans, tail new ones, show a trace.", no_args_is_help=True)

_COLUMNS = ["start", "trace_id", "model", "status", "latency_ms", "tokens", "cost", "user", "project"]
# How far back `tail` looks for spans written late (a long call's span starts when the call did).
TAIL_LOOKBACK = timedelta(minutes=10)


def _project_option() -> Any:
    return typer.Option(None, "--project", help="Only this project (default: every project)")


def _project_ids(project: str | None) -> tuple[str | None, dict[str, str]]:
    """The project to search (None: all) and every project's name by id, for display."""
    platform = local_platform()
    names = {p.id: p.name for p, _ in platform.auth.list_projects()}
    if project is None:
        return None, names
    with platform.store.session() as session:
        return platform.auth.project_by_name(session, project).id, names


def _row(span: Span, names: dict[str, str], tags: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
    tokens = None if span.input_tokens is None else (span.input_tokens or 0) + (span.output_tokens or 0)
    return {
        "start": span.start_time,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "name": span.name,
        "model": span.model,
        "status": span.status,
        "latency_ms": None if span.latency_ms is None else round(span.latency_ms, 1),
        "tokens": tokens,
        "cost": span.cost,
        "user": span.user,
        "project": names.get(span.project_id, span.project_id),
        "error": span.status_message,
        "tags": tags.get((span.project_id, span.span_id), []),
    }


def _line(row: dict[str, Any]) -> Text:
    """One span per line, fixed columns first, so `tail` output lines up and greps well."""
    line = Text(row["start"].strftime("%m-%d %H:%M:%S") + "  ")
    line.append(row["trace_id"] + "  ")
    line.append(f"{row['status']:<6}", style="red" if row["status"] == "error" else "green")
    line.append(f"  {fmt(row['model']):<20} {_text(row['latency_ms']):>8} ms {fmt(row['tokens']):>6} tok")
    line.append(f"  {_text(row['cost'])}  {fmt(row['user'])}  {row['project']}")
    if row["tags"]:
        line.append("  #" + " #".join(row["tags"]), style="cyan")
    if row["error"]:
        line.append("  " + row["error"][:200], style="red")
    return line


_HEADER = (
    f"{'start':<14}  {'trace_id':<32}  {'status':<6}  {'model':<20} {'latency':>11} {'tokens':>10}"
    "  cost  user  project"
)


def _print(rows: Sequence[dict[str, Any]], *, as_json: bool, header: bool = True) -> None:
    if as_json:
        for row in rows:  # one object per line, so `tail --json` can be piped
            console.print(
                orjson.dumps(row, default=str).decode(), markup=False, highlight=False, soft_wrap=True
            )
        return
    if header:
        console.print(_HEADER, style="bold", markup=False, highlight=False, soft_wrap=True)
    for row in rows:
        console.print(_line(row), highlight=False, soft_wrap=True)


@app.command("search")
@opts.with_trace_filters
def search(
    filters: TraceFilters = opts.NO_FILTER,
    limit: int = typer.Option(50, "--limit", min=1, max=MAX_LIMIT),
    project: str | None = _project_option(),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per span"),
) -> None:
    """Spans, newest first."""
    project_id, names = _project_ids(project)
    query = TraceQuery(local_platform().store)
    page = query.search(project_id, filters, limit=limit)
    tags = _tags(query, page.spans)
    rows = [_row(s, names, tags) for s in page.spans]
    if as_json:
        console.print(orjson.dumps(rows, default=str).decode(), markup=False, highlight=False, soft_wrap=True)
    else:
        _print(rows, as_json=False)


def _tags(query: TraceQuery, spans: Sequence[Span]) -> dict[tuple[str, str], list[str]]:
    """The tags of a page's spans, by (project, span id): a search may cover every project."""
    by_project: dict[str, list[str]] = {}
    for span in spans:
        by_project.setdefault(span.project_id, []).append(span.span_id)
    return {
        (project, span_id): tags
        for project, ids in by_project.items()
        for span_id, tags in query.tags_of(project, ids).items()
    }


@app.command("tail")
def tail(
    model: str | None = typer.Option(None, "--model"),
    status: str | None = typer.Option(None, "--status", help="ok or error"),
    user: str | None = typer.Option(None, "--user"),
    project: str | None = _project_option(),
    last: int = typer.Option(10, "--last", min=0, max=MAX_LIMIT, help="Spans shown before following"),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between polls"),
    max_seconds: float | None = typer.Option(None, "--max-seconds", min=0, help="Stop after this long"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per span"),
) -> None:
    """Print new spans as they are recorded, oldest first, until Ctrl-C."""
    project_id, names = _project_ids(project)
    query = TraceQuery(local_platform().store)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    # (project, span id) -> start time, forgotten once out of the lookback
    seen: dict[tuple[str, str], datetime] = {}
    first = True
    while True:
        since = utcnow() - TAIL_LOOKBACK
        filters = TraceFilters(start=since, model=model, status=status, user=user)
        fresh: list[Span] = []
        cursor: str | None = None
        while True:  # every span of the lookback window, page by page
            page = query.search(project_id, filters, limit=MAX_LIMIT, cursor=cursor)
            fresh += [s for s in page.spans if (s.project_id, s.span_id) not in seen]
            cursor = page.next_cursor
            if cursor is None:
                break
        seen = {k: v for k, v in seen.items() if v >= since} | {
            (s.project_id, s.span_id): s.start_time for s in fresh
        }
        shown = fresh[:last] if first else fresh
        if shown:
            tags = _tags(query, shown)
            _print([_row(s, names, tags) for s in reversed(shown)], as_json=as_json, header=first)
        if first:
            err_console.print("following new spans (Ctrl-C to stop)")
        first = False
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 1 else f"{value:g}"  # fmt() shows fractions as percentages
    return fmt(value)


def _messages(parent: Tree, value: Any) -> None:
    """Chat messages as `role: content` lines; anything else as JSON."""
    messages = value.get("messages") if isinstance(value, dict) else None
    if isinstance(value, dict) and "content" in value and "role" in value:
        messages = [value]
    if not isinstance(messages, list):
        parent.add(Text(_text(value)))
        return
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            parent.add(
                Text(f"{message.get('role', '?')}: {content if isinstance(content, str) else _text(content)}")
            )
        else:
            parent.add(Text(_text(message)))


def _tree(node: SpanNode, parent: Tree, tags: dict[tuple[str, str], list[str]]) -> None:
    span = node.span
    label = Text(f"{span.name} ", style="bold")
    label.append(f"[{span.kind}] ", style="dim")
    label.append(span.status, style="red" if span.status == "error" else "green")
    label.append(f"  {_text(span.latency_ms)} ms  span {span.span_id}")
    branch = parent.add(label)
    details: dict[str, Any] = {
        "start": span.start_time,
        "model": span.model,
        "provider": span.provider,
        "response model": span.response_model,
        "user": span.user,
        "session": span.session_id,
        "tokens": f"{fmt(span.input_tokens)} in, {fmt(span.output_tokens)} out",
        "cost": span.cost,
        "error": span.status_message,
        "tags": ", ".join(tags.get((span.project_id, span.span_id), [])) or None,
        "input": span.input,
        "output": span.output,
    }
    for key, value in details.items():
        if value is not None and key not in ("input", "output"):
            branch.add(Text(f"{key}: {_text(value)}"))
    for key, value in (("input", span.input), ("output", span.output)):
        if value is not None:
            _messages(branch.add(Text(key, style="bold")), value)
    for child in node.children:
        _tree(child, branch, tags)


@app.command("show")
def show(
    trace_id: str = typer.Argument(...),
    project: str | None = _project_option(),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A trace's spans as a tree, with their inputs and outputs."""
    project_id, _ = _project_ids(project)
    query = TraceQuery(local_platform().store)
    roots = query.get_trace(project_id, trace_id)
    tags = _tags(query, _spans(roots))
    if as_json:

        def node(n: SpanNode) -> dict[str, Any]:
            columns = {c.key: getattr(n.span, c.key) for c in Span.__table__.columns}
            mine = tags.get((n.span.project_id, n.span.span_id), [])
            return {**columns, "tags": mine, "children": [node(c) for c in n.children]}

        body = {"trace_id": trace_id, "spans": [node(r) for r in roots]}
        console.print(orjson.dumps(body, default=str).decode(), markup=False, highlight=False, soft_wrap=True)
        return
    tree = Tree(Text(f"trace {trace_id}", style="bold"))
    for root in roots:
        _tree(root, tree, tags)
    console.print(tree)


def _spans(nodes: list[SpanNode]) -> list[Span]:
    return [s for n in nodes for s in (n.span, *_spans(n.children))]
