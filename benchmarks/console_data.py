"""The console's Data pages over a 1,000,000-row dataset: server response time and first paint, in ms,
next to the datasets service call each page makes (the "peer": the same read without HTTP, templates
and the browser), so the page's own cost shows as a ratio.

Builds (once, cached under /tmp) an fmops home with a chat dataset `bench` of 1,000,000 rows (v1, an
import) and v2 made from it by a near-duplicate step (1% of rows removed, a report of 50 pairs in the
curation steps' shape). Then starts a real `fmops up` on it, signs in with the admin key and takes the
median of a few loads of:
  - the datasets list, the dataset page, the version page (report, lineage, first rows);
  - the rows fragment (what the pager and the search swap in) at row 0, 500,000 and 999,980;
  - a search whose matches start at once, and one for a term in a single row near the end (a full
    scan of the file);
  - the diff page of v1 and v2, and the comparison it fetches after painting (every row's hash of both
    versions compared, 20 examples a side);
and, for each, `DatasetService.page` / `diff` called in this process on the same files.
Pages over 500 ms are named at the end.

    .venv/bin/python benchmarks/console_data.py [--rows 1000000] [--home /tmp/fmops-console-data-bench]
        [--loads 5] [--rebuild] [--build-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from _harness import BIN, free_port, load, process, save_result, wait_http
from console_pages import paint_times

from fmops.artifacts import ArtifactStore
from fmops.datasets import DatasetService, RecordKind
from fmops.settings import Settings
from fmops.store import Store

BUDGET_MS = 500.0
STAMP = "bench.json"
NAME = "bench"
RARE = "zebra crossing"  # in one row near the end: a search for it reads the whole file
TOPICS = ("parcel", "invoice", "password", "refund", "delivery", "account", "warranty", "discount")


def rare_row(rows: int) -> int:
    return max(rows - 500, 0)


def record(i: int, rare: int = -1) -> dict[str, Any]:
    topic = TOPICS[i % len(TOPICS)]
    question = f"Ticket {i}: a question about my {topic}, order number {i * 7919 % 1_000_003}?"
    if i == rare:
        question += f" Also, where is the nearest {RARE}?"
    return {
        "messages": [
            {"role": "system", "content": "You are a helpful support assistant."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"Thanks for asking about your {topic}. " * 3 + f"(reply {i})"},
        ],
        "tools": None,
        "metadata": {"split": "train" if i % 10 else "validation", "ticket": i},
    }


def batches(rows: int, keep: Callable[[int], bool], size: int = 5_000) -> Iterator[list[dict[str, Any]]]:
    batch = []
    rare = rare_row(rows)
    for i in range(rows):
        if keep(i):
            batch.append(record(i, rare))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def service_for(home: Path) -> tuple[DatasetService, Store]:
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'fmops.db'}")
    store = Store(settings.database_url)
    return DatasetService(store, ArtifactStore.from_settings(settings)), store


def build(home: Path, rows: int) -> None:
    """An fmops home with dataset `bench`: v1 of `rows` rows and v2 without every 100th row."""
    from fmops.server.runner import prepare
    from fmops.store.models import Project

    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    store, _ = prepare(Settings(home=home, database_url=f"sqlite:///{home / 'fmops.db'}"))
    with store.session() as session:
        project_id = str(session.query(Project).filter(Project.name == "default").one().id)
    store.dispose()
    service, store = service_for(home)
    began = time.perf_counter()
    v1 = service.create_version(
        project_id=project_id,
        name=NAME,
        kind=RecordKind.chat,
        batches=batches(rows, lambda i: True),
        source={"type": "import", "file": "bench.jsonl", "format": "jsonl", "shape": "openai"},
        validate=False,
    )
    print(f"  v1: {v1.rows:,} rows in {time.perf_counter() - began:.0f} s")
    removed = rows // 100
    pairs = [
        {
            "row": i,
            "kept_row": i - 1,
            "text": record(i)["messages"][1]["content"],
            "kept_text": record(i - 1)["messages"][1]["content"],
            "similarity": 0.85,
        }
        for i in range(100, 100 * 51, 100)
    ]
    counts = {"in": rows, "out": rows - removed, "removed": {"near_duplicate": removed}, "modified": {}}
    step = {"dedup": {"method": "minhash", "threshold": 0.8}}
    v2 = service.create_version(
        project_id=project_id,
        name=NAME,
        kind=RecordKind.chat,
        batches=batches(rows, lambda i: i % 100 != 0),
        parent_id=v1.id,
        source={"type": "curation", "job_id": None, "step_index": 0},
        recipe={"steps": [step]},
        step=step,
        counts=counts,
        report={"step": "dedup", **counts, "examples": {"near_duplicate": pairs}},
        validate=False,
    )
    print(f"  v2: {v2.rows:,} rows; built in {time.perf_counter() - began:.0f} s")
    store.dispose()
    (home / STAMP).write_text(json.dumps({"rows": rows, "project_id": project_id}))


def median_ms(call: Callable[[], Any], loads: int) -> float:
    call()  # warm: imports, the page cache, the file's metadata
    times = []
    for _ in range(loads):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def measure(home: Path, rows: int, loads: int) -> dict[str, Any]:
    stamp = json.loads((home / STAMP).read_text())
    project_id = stamp["project_id"]
    service, store = service_for(home)
    v1 = service.resolve(project_id, f"{NAME}@1")
    last = max(rows - 20, 0)
    base = f"/console/data/{NAME}/versions/1"
    # (label, path, HTMX fragment?, the service call the page makes)
    cases: list[tuple[str, str, bool, Callable[[], Any] | None]] = [
        ("datasets list", "/console/data", False, lambda: service.list_datasets(project_id)),
        ("dataset page", f"/console/data/{NAME}", False, lambda: service.list_versions(project_id, NAME)),
        ("version page (v2: report, lineage, rows 1-20)", f"/console/data/{NAME}/versions/2", False, None),
        ("rows 1-20", base, True, lambda: service.page(v1, 0, 20)),
        ("rows 500,001-500,020", f"{base}?offset=500000", True, lambda: service.page(v1, 500_000, 20)),
        (f"rows {last + 1:,}-{rows:,}", f"{base}?offset={last}", True, lambda: service.page(v1, last, 20)),
        ("search 'parcel' (first page)", f"{base}?q=parcel", True, lambda: service.page(v1, 0, 20, "parcel")),
        (
            f"search '{RARE}' (one row: a full scan)",
            f"{base}?q={RARE.replace(' ', '+')}",
            True,
            lambda: service.page(v1, 0, 20, RARE),
        ),
        (
            "diff page v1 -> v2 (paints, then asks for the rows)",
            f"/console/data/{NAME}/diff?a=1&b=2",
            False,
            None,
        ),
        (
            "diff v1 -> v2: counts and examples",
            f"/console/data/{NAME}/diff/rows?a=1&b=2",
            True,
            lambda: service.diff(project_id, f"{NAME}@1", f"{NAME}@2", examples=20),
        ),
    ]
    found = service.page(v1, 0, 20, RARE)
    assert [n for n, _ in found.rows] == [rare_row(rows)], found.rows[:1]
    peers = {label: median_ms(call, loads) if call else None for label, _, _, call in cases}
    store.dispose()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
    env |= {"FMOPS_HOME": str(home), "FMOPS_PORT": str(port), "FMOPS_WORKERS": "0"}
    key = (home / "admin.key").read_text().strip()
    pages: dict[str, tuple[int, float]] = {}
    with process([str(BIN / "fmops"), "up"], env=env, log=home / "server.log"):
        wait_http(url + "/readyz")
        with httpx.Client(base_url=url, timeout=300) as client:
            signed = client.post("/login", data={"api_key": key}, follow_redirects=False)
            assert signed.status_code == 303, signed.text
            for label, path, fragment, _ in cases:
                headers = {"HX-Request": "true"} if fragment else {}
                status = client.get(path, headers=headers).status_code
                pages[label] = (status, median_ms(partial(client.get, path, headers=headers), loads))
        full_pages = [path for _, path, fragment, _ in cases if not fragment] + [
            base,
            f"{base}?offset={last}",
        ]
        paints = paint_times(url, key, full_pages, max(1, loads // 2))

    print(f"\n{rows:,} rows, median of {loads} loads, SQLite + Parquet on local disk:")
    print(f"  {'page':<48} {'status':>6} {'server ms':>10} {'service ms':>11} {'page/service':>13}")
    slow = []
    results: dict[str, Any] = {}
    for label, path, _, _ in cases:
        status, ms = pages[label]
        peer = peers[label]
        ratio = f"{ms / peer:13.1f}" if peer else f"{'-':>13}"
        shown_peer = f"{peer:11.1f}" if peer is not None else f"{'-':>11}"
        print(f"  {label:<48} {status:>6} {ms:10.1f} {shown_peer} {ratio}")
        if ms > BUDGET_MS or status != 200:
            slow.append(label)
        results[label] = {"path": path, "status": status, "server_ms": ms, "service_ms": peer}
    print("\nfirst contentful paint in Chromium (ms):")
    for path in full_pages:
        fcp = paints.get(path)
        print(f"  {path:<60} {fcp:8.0f}" if fcp is not None else f"  {path:<60} {'-':>8}")
    print()
    print(
        f"over {BUDGET_MS:.0f} ms (or not 200): {', '.join(slow)}"
        if slow
        else f"every page within {BUDGET_MS:.0f} ms"
    )
    return {"pages": results, "first_paint_ms": paints, "over_budget": slow}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=Path("/tmp/fmops-console-data-bench"))
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true", help="build the dataset even if cached")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    load_before = load()
    try:
        cached = json.loads((args.home / STAMP).read_text())["rows"] == args.rows
    except (OSError, ValueError, KeyError):
        cached = False
    if args.rebuild or not cached:
        print(f"building {args.home} with {args.rows:,} rows")
        build(args.home, args.rows)
    else:
        print(f"reusing {args.home} ({args.rows:,} rows)")
    if not args.build_only:
        results = measure(args.home, args.rows, args.loads)
        save_result(
            "console_data", {"rows": args.rows, "loads": args.loads, **results}, load_before=load_before
        )


if __name__ == "__main__":
    main()
