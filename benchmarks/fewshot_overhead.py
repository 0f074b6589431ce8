"""What an endpoint's dynamic few-shot option adds to a gateway call, measured in one process, side by side.

Three endpoints on one model of the mock upstream (tests/support/mock_upstream.py in a process of
its own, pinned to core 1) called through `Gateway.chat`, the real OpenAI provider and HTTP,
taking turns call by call so that each sees the same machine:

    plain     the endpoint without `fewshot:`: the peer
    fs-1k     fewshot: {dataset: tickets-1k@1, k: 3}: a 1,000-example index
    fs-10k    fewshot: {dataset: tickets-10k@1, k: 3}: a 10,000-example index

Each call's last user message is one of 50 support tickets (no two calls in a row alike). It prints
each loop's p50 and p99 per call and what the option adds, and the retrieval's own parts from its
span: the query's MiniLM encoding (`embed`) and the exact search (`search`: one float32
matrix-vector product and a partial sort). A last table times the search alone on random unit
vectors at 1k, 10k and 100k examples: the case for (or against) an approximate index.

The indexes are built for real (MiniLM over every record's input) and the build time is reported.
`--threads` sets torch's intra-op threads (default 1): on a loaded 2-core machine torch's default
makes a one-sentence pass tens of times slower, its threads spinning for busy cores.

    .venv/bin/python benchmarks/fewshot_overhead.py [--calls 200] [--sizes 1000 10000]

Raw figures: benchmarks/results/fewshot_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _harness import free_port, load, pct, pinned, process, save_result, wait_http

from fmops.catalog import ModelSpec
from fmops.endpoints.schemas import EndpointSpec
from fmops.fewshot.index import ExampleIndex
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.platform import Platform
from fmops.settings import load_settings
from fmops.store import Store, upgrade

WHO = ["I", "My manager", "Our team", "A customer", "The intern", "My colleague", "We", "Our office"]
WHAT = [
    "cannot log in after the password reset",
    "was charged twice for the annual plan",
    "sees the printer jam on every second page",
    "gets a blank screen when opening the dashboard",
    "needs a refund for the last invoice",
    "lost access to the shared drive",
    "cannot connect the laptop to the office wifi",
    "received an invoice with the wrong VAT number",
    "has a two-factor code that never arrives",
    "wants to upgrade the subscription to the team plan",
    "finds the mobile app crashing at start",
    "reports that exported reports are empty",
]
WHEN = ["since Monday", "this morning", "after the update", "every day", "since last week", "today"]
EXTRA = ["", " Please help.", " It is urgent.", " Thanks in advance.", " We tried restarting."]
LABEL = {
    "log in": "account",
    "charged": "billing",
    "printer": "hardware",
    "blank screen": "bug",
    "refund": "billing",
    "shared drive": "access",
    "wifi": "network",
    "VAT": "billing",
    "two-factor": "account",
    "upgrade": "sales",
    "crashing": "bug",
    "exported": "bug",
}
QUERIES = [
    "Hello, the printer on floor 3 keeps jamming paper",
    "I think I paid twice this month, can you check?",
    "The two factor SMS never comes, I am locked out",
    "Our dashboard shows nothing but a white page",
    "How do we move to the bigger plan for our team?",
] * 10


def tickets(n: int) -> list[dict[str, str]]:
    combos = itertools.product(WHAT, WHO, WHEN, EXTRA, range(1 + n // 2880))
    records = []
    for what, who, when, extra, copy in itertools.islice(combos, n):
        label = next(v for k, v in LABEL.items() if k in what)
        suffix = f" (ticket {copy})" if copy else ""
        records.append({"prompt": f"{who} {what} {when}.{extra}{suffix}", "completion": label})
    return records


def build(home: Path, upstream: str, sizes: list[int]) -> tuple[Platform, Any, dict[str, Any]]:
    url = f"sqlite:///{home / 'fmops.db'}"
    store = Store(url)
    upgrade(store)
    platform = Platform.build(load_settings({"home": home, "database_url": url}), store)
    key = platform.auth.bootstrap(home / "admin.key")
    assert key is not None, "use an empty database"
    principal = platform.auth.authenticate(key)
    project = principal.project_id
    spec = ModelSpec(alias="m", provider="openai", model="m", base_url=upstream, max_retries=0)
    platform.catalog.add(project, spec, trusted=True)
    endpoints = platform_endpoints(platform)
    endpoints.create(project, EndpointSpec(name="plain", model="m"), actor="bench")
    built: dict[str, Any] = {}
    for size in sizes:
        name = f"tickets-{size // 1000}k"
        version = platform.datasets.create_version(
            project_id=project, name=name, kind="completion", batches=[tickets(size)]
        )
        started = time.perf_counter()
        index = ExampleIndex.for_version(platform.datasets, version, project_id=project)
        built[name] = {"examples": len(index), "build_s": time.perf_counter() - started}
        print(f"{name}: index of {len(index):,} examples built in {built[name]['build_s']:.1f} s")
        body = {"name": f"fs-{size // 1000}k", "model": "m", "fewshot": {"dataset": f"{name}@1", "k": 3}}
        endpoints.create(project, EndpointSpec.model_validate(body), actor="bench")
    return platform, principal, built


def platform_endpoints(platform: Platform) -> Any:
    from fmops.endpoints.service import EndpointService
    from fmops.prompts.service import PromptService

    return EndpointService(platform.store, platform.catalog, PromptService(platform.store, platform.catalog))


async def run(platform: Platform, principal: Any, names: list[str], calls: int) -> dict[str, Any]:
    gateway = platform.gateway
    platform.tracer.start()

    def request(i: int, name: str) -> ChatCompletionRequest:
        messages = [{"role": "system", "content": "Reply with one label."}]
        messages.append({"role": "user", "content": QUERIES[i % len(QUERIES)]})
        return ChatCompletionRequest.model_validate({"model": name, "messages": messages, "max_tokens": 8})

    for i in range(20):  # warm caches, connections, the encoder and the indexes
        for name in names:
            await gateway.chat(principal, request(i, name))
    walls: dict[str, list[float]] = {name: [] for name in names}
    parts: dict[str, dict[str, list[float]]] = {name: {"embed": [], "search": []} for name in names}
    for i in range(calls):  # call by call in turn: a busy moment costs each loop alike
        for name in names:
            started = time.perf_counter()
            done = await gateway.chat(principal, request(i, name))
            walls[name].append((time.perf_counter() - started) * 1000)
            for span in done.record.parts:
                parts[name]["embed"].append(span["attributes"]["fmops.fewshot.embed_ms"])
                parts[name]["search"].append(span["attributes"]["fmops.fewshot.search_ms"])
    result: dict[str, Any] = {"calls": calls}
    for name in names:
        row = {"p50_ms": pct(walls[name], 0.5), "p99_ms": pct(walls[name], 0.99)}
        row["mean_ms"] = statistics.fmean(walls[name])
        line = f"{name:7s} p50 {row['p50_ms']:8.2f} ms   p99 {row['p99_ms']:8.2f} ms"
        if name != "plain":
            for q in ("p50", "p99"):
                row[f"added_{q}_ms"] = row[f"{q}_ms"] - result["plain"][f"{q}_ms"]
            for part in ("embed", "search"):
                row[f"{part}_p50_ms"] = pct(parts[name][part], 0.5)
                row[f"{part}_p99_ms"] = pct(parts[name][part], 0.99)
            line += (
                f"   added p50 {row['added_p50_ms']:+8.2f} p99 {row['added_p99_ms']:+8.2f}"
                f"   embed p50 {row['embed_p50_ms']:6.2f} p99 {row['embed_p99_ms']:6.2f}"
                f"   search p50 {row['search_p50_ms']:6.3f} p99 {row['search_p99_ms']:6.3f}"
            )
        result[name] = row
        print(line)
    await gateway.close()
    await platform.tracer.close()
    return result


def search_alone(sizes: list[int], repeats: int = 300) -> dict[str, Any]:
    """`nearest_vector` on random unit vectors (384 dimensions), k=3: the search's own cost by size."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for size in sizes:
        vectors = rng.standard_normal((size, 384), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"{i:032x}" for i in range(size)]
        texts = [""] * size
        meta = None
        index = ExampleIndex(meta, vectors, np.arange(size, dtype=np.int64), ids, texts, texts)  # type: ignore[arg-type]
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            index.nearest_vector(vectors[i % size], 3)
            times.append((time.perf_counter() - started) * 1000)
        out[str(size)] = {"p50_ms": pct(times, 0.5), "p99_ms": pct(times, 0.99), "mb": vectors.nbytes / 2**20}
        print(
            f"search alone, {size:>7,} examples ({out[str(size)]['mb']:.0f} MB): p50 "
            f"{out[str(size)]['p50_ms']:.3f} ms   p99 {out[str(size)]['p99_ms']:.3f} ms"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see above)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    load_before = load()
    root = Path(__file__).resolve().parent.parent
    port = free_port()
    mock = pinned(
        1, [sys.executable, str(root / "tests" / "support" / "mock_upstream.py"), "--port", str(port)]
    )
    env = {**os.environ, "PYTHONPATH": str(root / "tests")}
    with tempfile.TemporaryDirectory(prefix="fmops-bench-") as folder, process(mock, env=env):
        wait_http(f"http://127.0.0.1:{port}/_control/stats")
        platform, principal, built = build(Path(folder), f"http://127.0.0.1:{port}/v1", args.sizes)
        names = ["plain", *(f"fs-{size // 1000}k" for size in args.sizes)]
        results = asyncio.run(run(platform, principal, names, args.calls))
        results["indexes"] = built
        results["threads"] = args.threads
        platform.store.dispose()
    results["search_alone"] = search_alone([1000, 10000, 100000])
    save_result("fewshot_overhead", results, load_before=load_before)


if __name__ == "__main__":
    main()
