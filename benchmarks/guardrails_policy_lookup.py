"""What finding a call's guardrail policies costs the gateway, per call, on SQLite and PostgreSQL.

`GuardrailService.policies` runs once per gateway call. For each backend (a throw-away database,
migrated; PostgreSQL when reachable) with one project-wide policy stored, it times, in one process:

- a plain model call: `policies(project, model=..., endpoint=None)`, as the gateway asks it (the
  registry generation read at most once every RECHECK_SECONDS);
- the same call made to check the generation every time, as every call did before RECHECK_SECONDS
  (the peer: the project's last check forgotten before each call);
- an endpoint call: `policies` with the `generation=` the endpoint resolver has just read;
- the registry generation read alone.

Prints microseconds per call (mean, p50, p99).

    .venv/bin/python benchmarks/guardrails_policy_lookup.py [--calls 5000]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Raw figures: benchmarks/results/guardrails_policy_lookup.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from _harness import load, save_result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fmops.endpoints.generation import current
from fmops.guardrails.schemas import checked
from fmops.guardrails.service import GuardrailService
from fmops.platform import Platform
from fmops.settings import load_settings
from fmops.store import Store, upgrade

POLICY = {"name": "deny", "guardrail": "regex", "config": {"patterns": ["bomb"]}}


@contextmanager
def postgres(admin_url: str) -> Iterator[str | None]:
    """A fresh database on the server at `admin_url`, dropped after; None when it is unreachable."""
    name = f"fmops_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # a benchmark without the server measures SQLite alone
        print(f"PostgreSQL skipped: {exc.__class__.__name__}: {exc}")
        admin.dispose()
        yield None
        return
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


async def timed(calls: int, call: Callable[[], Awaitable[object]]) -> dict[str, float]:
    for _ in range(min(200, calls)):  # warm: caches built, connections open
        await call()
    took = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        await call()
        took.append((time.perf_counter_ns() - start) / 1000)
    took.sort()
    return {
        "mean_us": round(statistics.fmean(took), 2),
        "p50_us": round(took[len(took) // 2], 2),
        "p99_us": round(took[int(len(took) * 0.99)], 2),
    }


async def checking(service: GuardrailService, project: str) -> object:
    service._fresh_until.clear()  # as if the last check were a window ago: this call reads
    return await service.policies(project, model="small", endpoint=None)


async def measure(url: str, home: Path, calls: int) -> dict[str, dict[str, float]]:
    store = Store(url)
    upgrade(store)
    settings = load_settings({"home": home, "database_url": url})
    platform = Platform.build(settings, store)
    platform.auth.bootstrap(home / "admin.key")
    with store.session() as session:
        project = platform.auth.project_by_name(session, "default").id
    service = GuardrailService(store, platform.catalog)
    try:
        service.create(project, checked(POLICY), actor="bench")
        with store.session() as session:
            generation = current(session, project)
        assert len(await service.policies(project, model="small", endpoint=None)) == 1
        return {
            "model_call": await timed(calls, lambda: service.policies(project, model="small", endpoint=None)),
            "model_call_checking_every_call": await timed(calls, lambda: checking(service, project)),
            "endpoint_call_generation_passed": await timed(
                calls,
                lambda: service.policies(project, model="small", endpoint="triage", generation=generation),
            ),
            "generation_read_alone": await timed(calls, lambda: service.generations.read(project)),
        }
    finally:
        service.close()
        store.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    load_before = load()
    results: dict[str, object] = {"calls": args.calls}
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        results["sqlite"] = await measure(f"sqlite:///{home / 'bench.db'}", home / "sqlite-home", args.calls)
        with postgres(args.postgres) as url:
            if url is not None:
                results["postgresql"] = await measure(url, home / "pg-home", args.calls)
    for backend in ("sqlite", "postgresql"):
        found = results.get(backend)
        if not isinstance(found, dict):
            continue
        for what, figures in found.items():
            line = "  ".join(f"{k.removesuffix('_us')} {v:8.1f} µs" for k, v in figures.items())
            print(f"{backend:<10} {what:<34} {line}")
    save_result("guardrails_policy_lookup", results, load_before=load_before)


if __name__ == "__main__":
    asyncio.run(main())
