"""Trace search over 1,000,000 spans on SQLite: a filtered first page and a cursor page, in ms.

Fills a fresh SQLite database (migrated to head, so with the real indexes) with spans spread over
30 days, 20 models, 1000 users and 2 projects (~3% errors), then times `TraceQuery.search` as the
API runs it. Target from issue 4: under 300 ms per page.

With --message-bytes N (e.g. 2048, a realistic prompt) each span's input carries N bytes of text,
and the free-text search is timed at its worst case too: a term that matches nothing, so without an
index every span of the project is read. It is timed through the index (migration 0012) and, in
the same run, as the scan it replaced (LIKE over every span's input and output).

    .venv/bin/python benchmarks/trace_query.py [--spans 1000000] [--db /tmp/traces.db]
        [--message-bytes 2048]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _harness import load, save_result
from sqlalchemy import String, cast, insert, or_, select

from fmops.stats.rollup import mark_dirty
from fmops.store import Store, upgrade
from fmops.store.models import Span
from fmops.tracing.query import TraceFilters, TraceQuery, _like_pattern
from fmops.tracing.search_index import index_all

NOW = datetime(2026, 11, 26, tzinfo=UTC)
DAYS = 30
MODELS = [f"model-{i:02d}" for i in range(20)]
PROJECTS = ["a" * 32, "b" * 32]
BATCH = 20_000


def paragraphs(size: int, seed: int = 3, count: int = 512) -> list[str]:
    """`count` texts of `size` bytes of made-up words: what the prompts add to each span."""
    if not size:
        return [""]
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(5000)]
    out = []
    for _ in range(count):
        text = " ".join(rng.choices(words, k=size // 4))
        out.append(" " + text[: size - 1])
    return out


def fill(store: Store, count: int, seed: int = 7, message_bytes: int = 0) -> float:
    rng = random.Random(seed)
    texts = paragraphs(message_bytes)
    started = time.perf_counter()
    table: Any = Span.__table__
    for first in range(0, count, BATCH):
        rows = []
        for n in range(first, min(first + BATCH, count)):
            start = NOW - timedelta(seconds=rng.random() * DAYS * 86400)
            latency = rng.lognormvariate(6, 0.8)
            model = MODELS[min(int(rng.paretovariate(1.2)) - 1, 19)]  # a few models take most calls
            error = rng.random() < 0.03
            rows.append(
                {
                    "span_id": f"{n:016x}",
                    "trace_id": f"{rng.getrandbits(128):032x}",
                    "parent_span_id": None,
                    "project_id": PROJECTS[0] if rng.random() < 0.8 else PROJECTS[1],
                    "name": f"chat {model}",
                    "kind": "llm",
                    "start_time": start,
                    "end_time": start + timedelta(milliseconds=latency),
                    "status": "error" if error else "ok",
                    "status_message": "upstream returned 500" if error else None,
                    "model": model,
                    "provider": "openai",
                    "response_model": model,
                    "key_id": f"{rng.randrange(50):032x}",
                    "user": f"user-{rng.randrange(1000)}",
                    "session_id": None,
                    "input_tokens": rng.randrange(10, 2000),
                    "output_tokens": rng.randrange(1, 800),
                    "cost": rng.random() / 100,
                    "latency_ms": latency,
                    "ttft_ms": None,
                    "cache_hit": rng.random() < 0.1,
                    "input": {
                        "messages": [
                            {
                                "role": "user",
                                "content": f"question {n} about topic {n % 997}." + rng.choice(texts),
                            }
                        ]
                    },
                    "output": {"role": "assistant", "content": f"answer {n}"},
                    "attributes": {"gen_ai.system": "openai", "gen_ai.request.model": model},
                }
            )
        with store.session() as session:
            session.execute(insert(table), rows)
            # A bulk load marks its hours for the stats roll-ups in its own transaction, as the
            # trace writer does (on_stored=mark_dirty): the server's roll-up loop does the rest.
            mark_dirty(session, rows)
        print(f"\r  inserted {first + len(rows):,}/{count:,}", end="", flush=True)
    print()
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


TIMES: dict[str, dict[str, float]] = {}  # label -> figures, written to the result file


def timed(label: str, run: Callable[[], Any], repeat: int = 7) -> Any:
    result = run()  # warm the page cache once; then the median of the rest
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - began) * 1000)
    print(f"  {label:<58} median {statistics.median(times):7.1f} ms   max {max(times):7.1f} ms")
    TIMES[label] = {"median_ms": statistics.median(times), "max_ms": max(times), "runs": len(times)}
    return result


def scan(store: Store, project: str, term: str) -> list[str]:
    """The free-text search as it ran before migration 0012: LIKE over every span's input and output."""
    pattern = _like_pattern(term)
    match = or_(*(cast(c, String).like(pattern, escape="\\") for c in (Span.input, Span.output)))
    query = (
        select(Span.span_id)
        .where(Span.project_id == project, match)
        .order_by(Span.start_time.desc(), Span.span_id.desc())
        .limit(50)
    )
    with store.session() as session:
        return list(session.scalars(query))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="reuse this database if it is already filled")
    parser.add_argument("--message-bytes", type=int, default=0, help="text added to each span's input")
    args = parser.parse_args()
    load_before = load()
    path = args.db or Path(tempfile.mkdtemp()) / "traces.db"
    store = Store(f"sqlite:///{path}")
    upgrade(store)
    with store.session() as session:
        existing = session.query(Span).count()
    if existing < args.spans:
        print(f"filling {path} with {args.spans - existing:,} spans")
        print(f"  {fill(store, args.spans - existing, message_bytes=args.message_bytes):.0f} s")
    began = time.perf_counter()
    indexed = index_all(store)  # what SearchIndexer does in the background as spans arrive
    if indexed:
        seconds = time.perf_counter() - began
        rate = indexed / seconds
        print(f"  indexed {indexed:,} spans for free-text search in {seconds:.0f} s ({rate:,.0f}/s)")
        TIMES["search index build"] = {"spans": indexed, "seconds": seconds}
    query = TraceQuery(store)
    week = TraceFilters(model="model-03", status="error", start=NOW - timedelta(days=7), end=NOW)
    project = PROJECTS[0]
    print(f"{args.spans:,} spans, SQLite, page of 50:")
    first = timed("model + status + 7-day range, first page", lambda: query.search(project, week, limit=50))
    timed(
        "same filters, next page (cursor)",
        lambda: query.search(project, week, limit=50, cursor=first.next_cursor),
    )
    deep = query.search(project, week, limit=500)
    timed(
        "same filters, cursor page after 500 spans",
        lambda: query.search(project, week, limit=50, cursor=deep.next_cursor),
    )
    timed("no filter, first page", lambda: query.search(project, TraceFilters(), limit=50))
    timed("user, first page", lambda: query.search(project, TraceFilters(user="user-17"), limit=50))
    timed(
        "status=error + cache_hit + latency > 2 s",
        lambda: query.search(
            project, TraceFilters(status="error", cache_hit=True, min_latency_ms=2000), limit=50
        ),
    )
    timed(
        "free text q, 'topic 996' (indexed)",
        lambda: query.search(project, TraceFilters(q="topic 996"), limit=50),
        repeat=3,
    )
    timed("free text q, 'topic 996', the scan", lambda: scan(store, project, "topic 996"), repeat=3)
    nothing = "no such words zq"  # matches no span: the worst case
    timed(
        "free text q matching nothing (indexed)",
        lambda: query.search(project, TraceFilters(q=nothing), limit=50),
        repeat=3,
    )
    timed("free text q matching nothing, the scan", lambda: scan(store, project, nothing), repeat=1)
    with store.engine.connect() as conn:
        size = conn.exec_driver_sql("PRAGMA page_count").scalar_one() * 4096
    print(f"  database file {size / 2**30:.2f} GiB")
    store.dispose()
    save_result(
        "trace_query", {"spans": args.spans, "database": "sqlite", "ms": TIMES}, load_before=load_before
    )


if __name__ == "__main__":
    main()
