"""What the traces pages show, built from the query layer: filters read from the URL, feedback per
trace, a trace's spans laid out as a waterfall, and a span's input and output as chat messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import select

from fmops.errors import UserError
from fmops.store import Store
from fmops.store.models import Score, Span
from fmops.tracing.query import FEEDBACK_FILTERS, SpanNode, TraceFilters
from fmops.tracing.tags import MAX_FILTER_TAGS, parse_tags

RANGES = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
# Free-text filters and their longest accepted value (the columns' widths).
TEXT_FILTERS = {
    "model": 100,
    "endpoint": 200,
    "user": 200,
    "session_id": 200,
    "prompt_name": 200,
    "variant": 100,
    "q": 500,
    "tags": 700,  # comma-separated, all must match
    "blocked_by": 300,  # a guardrail policy's label, or * for any
    "flagged_by": 300,
}
CHOICES = {"status": ("ok", "error"), "feedback": FEEDBACK_FILTERS, "range": tuple(RANGES), "spans": ("all",)}
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_SHOWN_CHARS = 50_000  # a span's input or output beyond this is cut on the page (the API has it all)


@dataclass
class ListQuery:
    """The list page's state: the filters as typed (to refill the form and build links) and parsed."""

    values: dict[str, str]
    filters: TraceFilters
    limit: int
    cursor: str | None

    def url(self, **extra: str | None) -> str:
        """This page's URL with only the filters that are set (what the address bar shows and shares)."""
        params = {k: v for k, v in {**self.values, **extra}.items() if v}
        return "/console/traces" + (f"?{urlencode(params)}" if params else "")


def read_query(params: Mapping[str, str], now: datetime | None = None) -> ListQuery:
    """Filters from the query string; empty fields (a submitted form sends them all) mean no filter."""
    values: dict[str, str] = {}
    for name, longest in TEXT_FILTERS.items():
        text = params.get(name, "").strip()
        if len(text) > longest:
            raise UserError(f"{name} is longer than {longest} characters", param=name)
        if text:
            values[name] = text
    for name, allowed in CHOICES.items():
        choice = params.get(name, "").strip()
        if choice and choice not in allowed:
            raise UserError(f"{name} must be one of {', '.join(allowed)}, not {choice!r}", param=name)
        if choice:
            values[name] = choice
    version = _integer(params, "prompt_version", 1, 2**31 - 1)
    if version is not None:
        values["prompt_version"] = str(version)
    limit = _integer(params, "limit", 1, MAX_PAGE_SIZE)
    if limit is not None:
        values["limit"] = str(limit)
    cursor = params.get("cursor", "").strip() or None
    if cursor is not None and (len(cursor) > 200 or not cursor.replace("-", "").replace("_", "").isalnum()):
        raise UserError("cursor is not valid: follow the page's Older link", param="cursor")
    now = now or datetime.now(UTC)
    since = RANGES.get(values.get("range", ""))
    filters = TraceFilters(
        start=now - since if since else None,
        model=values.get("model"),
        endpoint=values.get("endpoint"),
        user=values.get("user"),
        session_id=values.get("session_id"),
        prompt_name=values.get("prompt_name"),
        prompt_version=version,
        variant=values.get("variant"),
        q=values.get("q"),
        status=values.get("status"),
        feedback=values.get("feedback"),
        root_only=values.get("spans") != "all",
        tags=parse_tags(values.get("tags", ""), limit=MAX_FILTER_TAGS),
        blocked_by=values.get("blocked_by"),
        flagged_by=values.get("flagged_by"),
    )
    return ListQuery(values=values, filters=filters, limit=limit or PAGE_SIZE, cursor=cursor)


def _integer(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {text[:40]!r}", param=name) from None
    if not low <= value <= high:
        raise UserError(f"{name} must be between {low} and {high}", param=name)
    return value


@dataclass
class FeedbackSummary:
    up: int = 0
    down: int = 0
    other: int = 0  # comments, labels, corrections, numbers, evaluator scores


def feedback_by_trace(store: Store, project_id: str, trace_ids: list[str]) -> dict[str, FeedbackSummary]:
    """Scores of one page's traces (the (project, trace) index; a page is at most 200 traces)."""
    found: dict[str, FeedbackSummary] = {}
    if not trace_ids:
        return found
    query = select(Score.trace_id, Score.kind, Score.value).where(
        Score.project_id == project_id, Score.trace_id.in_(set(trace_ids))
    )
    with store.session() as session:
        for trace_id, kind, value in session.execute(query):
            summary = found.setdefault(trace_id, FeedbackSummary())
            if kind == "thumbs" and value is not None:
                if value > 0:
                    summary.up += 1
                else:
                    summary.down += 1
            else:
                summary.other += 1
    return found


@dataclass
class SpanRow:
    """One span of the waterfall: its depth in the tree and its bar, in percent of the trace."""

    span: Span
    depth: int
    offset: float
    width: float
    duration_ms: float | None
    children: int = 0


@dataclass
class Waterfall:
    rows: list[SpanRow] = field(default_factory=list)
    started: datetime | None = None
    duration_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


def waterfall(roots: list[SpanNode]) -> Waterfall:
    spans: list[tuple[SpanNode, int]] = []
    pending = [(r, 0) for r in reversed(roots)]
    while pending:  # depth first, children in start order
        node, depth = pending.pop()
        spans.append((node, depth))
        pending.extend((c, depth + 1) for c in reversed(node.children))
    if not spans:
        return Waterfall()
    start = min(n.span.start_time for n, _ in spans)
    end = max((n.span.end_time or n.span.start_time) for n, _ in spans)
    total = max((end - start).total_seconds() * 1000, 0.001)
    rows = []
    for node, depth in spans:
        span = node.span
        duration = (span.end_time - span.start_time).total_seconds() * 1000 if span.end_time else None
        offset = (span.start_time - start).total_seconds() * 1000 / total * 100
        width = max((duration or 0) / total * 100, 0.5)  # a zero-length span still shows a sliver
        rows.append(
            SpanRow(span, depth, offset, min(width, 100 - offset) or 0.5, duration, len(node.children))
        )
    return Waterfall(
        rows=rows,
        started=start,
        duration_ms=total,
        input_tokens=sum(r.span.input_tokens or 0 for r in rows),
        output_tokens=sum(r.span.output_tokens or 0 for r in rows),
        cost=sum(r.span.cost or 0.0 for r in rows),
    )


def money(value: float | None) -> str:
    """A cost as people read it: $0.000063, not 6.3e-05 (prices per token are tiny)."""
    if value is None:
        return ""
    if value >= 1:
        return f"${value:,.2f}"
    return "$" + (f"{value:.6f}".rstrip("0").rstrip(".") or "0")


def pretty(value: Any) -> str:
    """JSON for a <pre>, cut at MAX_SHOWN_CHARS; escaped by the template like any text."""
    if isinstance(value, str):
        text = value
    else:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
    if len(text) > MAX_SHOWN_CHARS:
        return text[:MAX_SHOWN_CHARS] + f"\n… cut at {MAX_SHOWN_CHARS:,} characters"
    return text


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones as text, others as JSON
        parts = [
            p["text"] if isinstance(p, dict) and isinstance(p.get("text"), str) else pretty(p)
            for p in content
        ]
        return "\n".join(parts)
    return pretty(content)


def messages(value: Any) -> list[dict[str, str]] | None:
    """Chat messages in a span's input or output ({messages: [...]}, a list, or one message)."""
    found: Any = None
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        found = value["messages"]
    elif isinstance(value, dict) and "role" in value:
        found = [value]
    elif isinstance(value, list) and value:
        found = value
    if not found or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in found):
        return None
    shown = []
    for m in found:
        text = _text(m.get("content"))
        if m.get("tool_calls"):
            text = (text + "\n" if text else "") + pretty(m["tool_calls"])
        shown.append({"role": str(m["role"])[:40], "text": text[:MAX_SHOWN_CHARS]})
    return shown


def extra_input(value: Any) -> Any:
    """What a gateway input holds beside its messages (the parameters), or None."""
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        rest = {k: v for k, v in value.items() if k != "messages" and v not in (None, {}, [])}
        return rest or None
    return None
