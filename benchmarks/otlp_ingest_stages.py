"""Where the CPU of one ingested OTLP span goes, stage by stage, in-process (no HTTP, no event loop).

The same batches as benchmarks/otlp_ingest.py (100 spans of ~1.3 KB, 10 attributes, protobuf) go
through the same code the `POST /v1/traces` route runs, and each stage's CPU time (`process_time`,
so time spent waiting for a shared core is not counted) is divided by the spans it handled:

  parse      ExportTraceServiceRequest.FromString (protobuf, upb)
  decode     the walk over the parsed request into OtlpSpans (ids, attributes)
  map        OtlpSpan -> span row (columns, input/output, bounds)
  write      the trace writer's batch transaction: row values, INSERT, span_tags, roll-up marks, spend
             (of which `hooks`: the roll-up marks and spend accounting)
  index      SQLite only: the free-text search's background indexer (fmops.tracing.search_index),
             its rounds run until every span written is indexed. Off the request path, and mostly
             after otlp_ingest.py's load ends (so not in its cpu µs/span), but a sustained load
             pays it too: not in `total`, see `total with index`

What it leaves out (HTTP, auth, the writer's queue and thread hop, response bodies) is the
server's total (otlp_ingest.py's cpu µs/span) minus `total`.

    .venv/bin/python benchmarks/otlp_ingest_stages.py [--batches 200] [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import load, save_result
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_ingest import SPANS_PER_BATCH, postgres_database, protobuf_batch

from fmops.gateway.stack import build_tracer
from fmops.settings import Settings
from fmops.store import Store, upgrade
from fmops.tracing.otlp.decode import PROTOBUF, decode
from fmops.tracing.otlp.ingest import ingest
from fmops.tracing.search_index import SearchIndexer, index_pending
from fmops.tracing.spool import INGESTED


class Clock:
    """CPU seconds per named stage."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.process_time()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.process_time() - started

    def timed(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return func(*args, **kwargs)

        return wrapper


def measure(backend: str, url: str, home: Path, batches: int) -> dict[str, float]:
    rng = random.Random(7)
    bodies = [protobuf_batch(rng).body for _ in range(batches)]
    settings = Settings(home=home, database_url=url)
    store = Store(settings.database_url)
    upgrade(store)
    tracer = build_tracer(settings, store)
    clock = Clock()
    for name in ("on_batch", "on_stored"):
        if (hook := getattr(tracer, name)) is not None:
            setattr(tracer, name, clock.timed("hooks", hook))
    spans = 0
    for body in bodies:
        with clock.stage("parse"):
            ExportTraceServiceRequest.FromString(body)
        with clock.stage("parse+decode"):
            decode(body, PROTOBUF)
        with clock.stage("parse+decode+map"):
            rows = ingest(body, PROTOBUF, "p-bench", None).rows
        for row in rows:
            row[INGESTED] = True  # as record_many(..., ingested=True) marks them
        with clock.stage("write"):
            tracer._write(rows)  # the writer thread's whole transaction, as under load
        spans += len(rows)
    indexer = SearchIndexer(store)
    with clock.stage("index"):  # as the server runs it: rounds, each sized by the indexer
        while store.dialect == "sqlite" and index_pending(store, batch=1):
            asyncio.run(indexer.run_round())
    store.engine.dispose()
    us = {name: spent / spans * 1e6 for name, spent in clock.spent.items()}
    stages = {
        "parse": us["parse"],
        "decode": us["parse+decode"] - us["parse"],
        "map": us["parse+decode+map"] - us["parse+decode"],
        "write": us["write"],
        "write.hooks (of write)": us.get("hooks", 0.0),
    }
    stages["total"] = stages["parse"] + stages["decode"] + stages["map"] + stages["write"]
    stages["index"] = us.get("index", 0.0)
    stages["total with index"] = stages["total"] + stages["index"]
    print(f"\n{backend}: CPU µs per span ({spans} spans, {SPANS_PER_BATCH} a batch)")
    for name, value in stages.items():
        print(f"  {name:<26}{value:>8.1f}")
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    before = load()
    # PYTHONPATH: the source tree measured when it is not this checkout's (an A/B of two commits).
    results: dict[str, Any] = {"batches": args.batches, "pythonpath": os.environ.get("PYTHONPATH")}
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
            home = Path(folder)
            if backend == "postgres":
                url = stack.enter_context(postgres_database(args.postgres))
            else:
                url = f"sqlite:///{home / 'fmops.db'}"
            results[backend] = measure(backend, url, home, args.batches)
    print(f"load average: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    if not args.no_save:
        save_result("otlp_ingest_stages", results, load_before=before)


if __name__ == "__main__":
    sys.exit(main())
