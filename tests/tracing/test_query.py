"""Searching spans and reading traces back, on both backends: every filter, ordering, paging, trees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from fmops.errors import NotFound, UserError
from fmops.store import Store
from fmops.store.models import Span
from fmops.tracing.query import SpanNode, TraceFilters, TraceQuery, encode_cursor

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PROJECT = "p" * 32
OTHER = "o" * 32


def span(n: int, **overrides: Any) -> dict[str, Any]:
    """The n-th span: one second after the (n-1)-th, with a few columns that vary by n."""
    row: dict[str, Any] = {
        "span_id": f"{n:016x}",
        "trace_id": f"{n:032x}",
        "parent_span_id": None,
        "project_id": PROJECT,
        "name": "chat gpt",
        "kind": "llm",
        "start_time": T0 + timedelta(seconds=n),
        "end_time": T0 + timedelta(seconds=n, milliseconds=100),
        "status": "ok",
        "status_message": None,
        "model": "gpt",
        "provider": "openai",
        "response_model": "gpt-4o",
        "key_id": "k1",
        "user": "alice",
        "session_id": None,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost": 0.001,
        "latency_ms": 100.0,
        "ttft_ms": None,
        "cache_hit": False,
        "input": {"messages": [{"role": "user", "content": f"question {n}"}]},
        "output": {"choices": [{"message": {"content": f"answer {n}"}}]},
        "attributes": {"gen_ai.system": "openai"},
    }
    row.update(overrides)
    return row


def insert_spans(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.session() as session:
        session.execute(insert(Span), rows)


@pytest.fixture
def query(store: Store) -> TraceQuery:
    return TraceQuery(store)


def ids(query: TraceQuery, project: str | None = PROJECT, **filters: Any) -> list[str]:
    return [s.span_id for s in query.search(project, TraceFilters(**filters), limit=500).spans]


def test_newest_first_and_scoped_to_the_project(store: Store, query: TraceQuery) -> None:
    insert_spans(store, [span(1), span(2), span(3), span(4, project_id=OTHER)])
    assert ids(query) == [f"{n:016x}" for n in (3, 2, 1)]
    assert ids(query, OTHER) == [f"{4:016x}"]
    assert len(ids(query, None)) == 4  # the operator's view: every project


def test_ties_on_start_time_are_ordered_by_span_id(store: Store, query: TraceQuery) -> None:
    same = T0 + timedelta(seconds=5)
    insert_spans(store, [span(n, start_time=same) for n in (7, 9, 8)])
    assert ids(query) == [f"{n:016x}" for n in (9, 8, 7)]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"model": "claude"}, [2]),
        ({"provider": "anthropic"}, [2]),
        ({"status": "error"}, [3]),
        ({"user": "bob"}, [4]),
        ({"session_id": "s-1"}, [5]),
        ({"key_id": "k2"}, [6]),
        ({"min_latency_ms": 900}, [7]),
        ({"max_latency_ms": 50}, [8]),
        ({"min_latency_ms": 50, "max_latency_ms": 150, "model": "gpt", "status": "ok"}, [9, 6, 5, 4, 1]),
        ({"min_cost": 0.5}, [9]),
        ({"max_cost": 0.0005}, [8]),
        ({"cache_hit": True}, [6]),
        ({"start": T0 + timedelta(seconds=4), "end": T0 + timedelta(seconds=6)}, [5, 4]),
        ({"start": T0 + timedelta(seconds=8)}, [9, 8]),
        ({"end": T0 + timedelta(seconds=2)}, [1]),
        ({"q": "answer 7"}, [7]),
        ({"q": "QUESTION 9"}, [9]),  # case-insensitive
        ({"q": "secret sauce"}, [4]),  # in the output only
        ({"q": "100%"}, [5]),  # % and _ are literal text, not wildcards
        ({"q": "a_b"}, []),
        ({"q": "no such text"}, []),
        ({"model": "gpt", "user": "bob", "status": "ok"}, [4]),
    ],
)
def test_each_filter_keeps_only_its_spans(
    store: Store, query: TraceQuery, filters: dict[str, Any], expected: list[int]
) -> None:
    insert_spans(
        store,
        [
            span(1),
            span(2, model="claude", provider="anthropic"),
            span(3, status="error", status_message="upstream 500"),
            span(4, user="bob", output={"text": "The Secret Sauce"}),
            span(5, session_id="s-1", input={"text": "100% sure"}),
            span(6, key_id="k2", cache_hit=True),
            span(7, latency_ms=1000.0),
            span(8, latency_ms=10.0, cost=0.0001),
            span(9, cost=1.0, input={"text": "axb question 9"}),
            span(10, project_id=OTHER, model="claude", status="error", user="bob", cost=5.0),
        ],
    )
    assert ids(query, **filters) == [f"{n:016x}" for n in expected]


def test_naive_times_are_read_as_utc(store: Store, query: TraceQuery) -> None:
    insert_spans(store, [span(1), span(2), span(3)])
    naive = (T0 + timedelta(seconds=2)).replace(tzinfo=None)
    assert ids(query, start=naive) == [f"{n:016x}" for n in (3, 2)]


@pytest.mark.parametrize(
    ("filters", "param", "words"),
    [
        ({"start": T0, "end": T0 - timedelta(hours=1)}, "start", "must be before end"),
        ({"start": T0, "end": T0}, "start", "must be before end"),
        ({"min_latency_ms": 10, "max_latency_ms": 5}, "min_latency_ms", "greater than max_latency_ms"),
        ({"min_cost": 1, "max_cost": 0.5}, "min_cost", "greater than max_cost"),
        ({"status": "failed"}, "status", "'ok' or 'error'"),
        ({"q": "   "}, "q", "blank"),
    ],
)
def test_contradictory_filters_are_named(filters: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(UserError) as caught:
        TraceFilters(**filters)
    assert caught.value.param == param
    assert words in caught.value.message


def test_cursor_pages_cover_every_span_once(store: Store, query: TraceQuery) -> None:
    # 53 spans, with runs of equal start times that straddle page boundaries.
    rows = [span(n, start_time=T0 + timedelta(seconds=n // 4)) for n in range(53)]
    insert_spans(store, rows)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = query.search(PROJECT, TraceFilters(), limit=5, cursor=cursor)
        seen += [s.span_id for s in page.spans]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [
        r["span_id"] for r in sorted(rows, key=lambda r: (r["start_time"], r["span_id"]), reverse=True)
    ]
    assert seen == expected
    assert pages == 11  # ten full pages, then three spans


def test_cursor_keeps_the_filters_and_ignores_newer_spans(store: Store, query: TraceQuery) -> None:
    insert_spans(store, [span(n, status="error" if n % 2 else "ok") for n in range(1, 11)])
    first = query.search(PROJECT, TraceFilters(status="error"), limit=3)
    assert [s.span_id for s in first.spans] == [f"{n:016x}" for n in (9, 7, 5)]
    insert_spans(store, [span(11, status="error")])  # arrives between pages
    second = query.search(PROJECT, TraceFilters(status="error"), limit=3, cursor=first.next_cursor)
    assert [s.span_id for s in second.spans] == [f"{n:016x}" for n in (3, 1)]
    assert second.next_cursor is None


def test_a_full_last_page_still_ends_with_an_empty_one(store: Store, query: TraceQuery) -> None:
    insert_spans(store, [span(n) for n in range(4)])
    first = query.search(PROJECT, TraceFilters(), limit=4)
    assert first.next_cursor is not None
    assert query.search(PROJECT, TraceFilters(), limit=4, cursor=first.next_cursor).spans == []


@pytest.mark.parametrize("cursor", ["not base64 at all!", "", "bm9wZQ", "WyJ4IiwgMV0", "WzEsMiwzXQ"])
def test_malformed_cursor_is_a_user_error_naming_cursor(query: TraceQuery, cursor: str) -> None:
    with pytest.raises(UserError) as caught:
        query.search(PROJECT, TraceFilters(), cursor=cursor)
    assert caught.value.param == "cursor"


def test_limit_is_bounded(query: TraceQuery) -> None:
    for limit in (0, 501):
        with pytest.raises(UserError) as caught:
            query.search(PROJECT, limit=limit)
        assert caught.value.param == "limit"


def test_input_and_output_are_loaded_only_when_asked(store: Store, query: TraceQuery) -> None:
    insert_spans(store, [span(1)])
    (full,) = query.search(PROJECT, include_io=True).spans
    assert full.input == {"messages": [{"role": "user", "content": "question 1"}]}
    assert full.output == {"choices": [{"message": {"content": "answer 1"}}]}
    (light,) = query.search(PROJECT).spans
    assert "input" not in light.__dict__
    assert "output" not in light.__dict__
    assert light.model == "gpt"


def shape(nodes: list[SpanNode]) -> list[Any]:
    return [(n.span.name, shape(n.children)) if n.children else n.span.name for n in nodes]


def test_trace_comes_back_as_a_tree_in_start_order(store: Store, query: TraceQuery) -> None:
    trace = "t" * 32

    def node(name: str, second: int, parent: str | None) -> dict[str, Any]:
        return span(
            0,
            span_id=name.ljust(16, "_"),
            trace_id=trace,
            name=name,
            parent_span_id=parent.ljust(16, "_") if parent else None,
            start_time=T0 + timedelta(seconds=second),
        )

    insert_spans(
        store,
        [
            node("tool", 5, "agent"),
            node("agent", 0, None),
            node("retrieve", 1, "agent"),
            node("llm-2", 7, "agent"),
            node("llm-1", 2, "agent"),
            node("embed", 1, "retrieve"),
            node("orphan", 3, "never-seen"),  # its parent was never recorded: shown at the top
            span(99, trace_id=trace, project_id=OTHER),  # same trace id in another project: not shown
        ],
    )
    roots = query.get_trace(PROJECT, trace)
    assert shape(roots) == [("agent", [("retrieve", ["embed"]), "llm-1", "tool", "llm-2"]), "orphan"]
    (agent, _) = roots
    assert agent.span.input == {"messages": [{"role": "user", "content": "question 0"}]}  # full span


def test_parent_loops_do_not_lose_spans(store: Store, query: TraceQuery) -> None:
    trace = "c" * 32
    insert_spans(
        store,
        [
            span(1, trace_id=trace, name="a", parent_span_id=f"{2:016x}"),
            span(2, trace_id=trace, name="b", parent_span_id=f"{1:016x}"),
        ],
    )
    assert shape(query.get_trace(PROJECT, trace)) == [("a", ["b"])]


def test_another_projects_trace_is_not_found(store: Store, query: TraceQuery) -> None:
    insert_spans(store, [span(1, project_id=OTHER)])
    with pytest.raises(NotFound, match="no trace"):
        query.get_trace(PROJECT, f"{1:032x}")
    assert [n.span.span_id for n in query.get_trace(OTHER, f"{1:032x}")] == [f"{1:016x}"]
    with pytest.raises(NotFound):
        query.get_trace(PROJECT, "f" * 32)


def test_cursor_is_opaque_text(store: Store, query: TraceQuery) -> None:
    insert_spans(store, [span(1), span(2)])
    page = query.search(PROJECT, limit=1)
    assert page.next_cursor == encode_cursor(page.spans[0])
    assert page.next_cursor.isascii()
    assert "=" not in page.next_cursor


def test_free_text_pages_over_days_are_the_newest_first_matches(store: Store, query: TraceQuery) -> None:
    """On PostgreSQL the search walks the newest days first, then the rest (`_text_walk`): the pages
    and cursors must be exactly the matches newest first, on either side of every window's edge,
    with spans long ago (a catch-all partition), ahead of now, and on the same second."""
    now = datetime.now(UTC).replace(microsecond=0)
    offsets = [timedelta(days=d, hours=h) for d in (-400, -40, -3, -1, 0, 2) for h in (-5, 0, 3)]
    rows = [
        span(n, start_time=now + offset, input={"messages": [{"role": "user", "content": f"needle {n}"}]})
        for n, offset in enumerate(offsets)
    ]
    rows += [span(100 + n, start_time=now - timedelta(days=n)) for n in range(5)]  # no needle
    rows.append(span(200, start_time=rows[7]["start_time"], input={"messages": [{"content": "needle"}]}))
    insert_spans(store, rows)
    matching = sorted(
        (r for r in rows if "needle" in str(r["input"])), key=lambda r: (r["start_time"], r["span_id"])
    )
    for filters in (
        TraceFilters(q="needle"),
        TraceFilters(q="NEEDLE", start=now - timedelta(days=41)),
        TraceFilters(q="needle", end=now - timedelta(hours=20)),
        TraceFilters(q="needle", start=now - timedelta(days=3, hours=2), end=now + timedelta(hours=1)),
    ):
        want = [
            r["span_id"]
            for r in reversed(matching)
            if (filters.start is None or r["start_time"] >= filters.start)
            and (filters.end is None or r["start_time"] < filters.end)
        ]
        got: list[str] = []
        cursor = None
        while True:
            page = query.search(PROJECT, filters, limit=2, cursor=cursor)
            got += [s.span_id for s in page.spans]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert got == want, filters
        assert ids(query, **{k: getattr(filters, k) for k in ("q", "start", "end")}) == want
    assert query.search(PROJECT, TraceFilters(q="no such needle zq")).spans == []
