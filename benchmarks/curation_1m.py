"""Curation in bounded memory: 1,000,000 chat records through exact dedup, MinHash dedup, PII redaction,
quality filters and a split, each step a new Parquet version; peak RSS and time per step.

The dataset is written first, in a process of its own (streamed, 10,000 records at a time); then a
fresh process runs the recipe with fmops.curation's runner (what the `datasets.curate` job runs) and
reports its peak resident set size (ru_maxrss) and each step's seconds and counts.

    .venv/bin/python benchmarks/curation_1m.py [--records 1000000] [--work /tmp/fmops-curation-1m]

Raw figures: benchmarks/results/curation_1m.json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import load, save_result

RECIPE = """
steps:
  - dedup: {method: exact}
  - dedup: {method: minhash, threshold: 0.8}
  - pii: {action: redact}
  - filter:
      {min_chars: 40, max_chars: 20000, max_repetition: 0.5, drop_refusals: true, drop_empty_answers: true}
  - split: {validation: 0.05, test: 0.05, seed: 0}
"""
PROJECT = "0" * 32


def services(work: Path) -> Any:
    from fmops.artifacts import ArtifactStore
    from fmops.datasets import DatasetService
    from fmops.store import Store, upgrade

    store = Store(f"sqlite:///{work / 'fmops.db'}")
    upgrade(store)
    return DatasetService(store, ArtifactStore((work / "artifacts").as_uri()))


def records(n: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    rng = random.Random(seed)
    vocab = [f"{a}{b}{c}" for a in "bcdfgklmnprst" for b in "aeiou" for c in "nrstlm"][:2000]
    recent: list[str] = []
    batch: list[dict[str, Any]] = []
    for i in range(n):
        draw = rng.random()
        if draw < 0.03 and recent:
            question = rng.choice(recent)  # exact duplicate
        elif draw < 0.06 and recent:
            words = rng.choice(recent).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)  # near duplicate
            question = " ".join(words)
        else:
            question = " ".join(rng.choices(vocab, k=rng.randint(30, 90)))
        if draw > 0.97:
            question += f" mail me at user{i}@example.com"
        answer = (
            "I'm sorry, but I can't help with that." if 0.95 < draw <= 0.96 else "ok " * rng.randint(1, 30)
        )
        if 0.94 < draw <= 0.95:
            question = "hi"
        recent.append(question)
        if len(recent) > 1000:
            recent.pop(0)
        batch.append(
            {
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                "tools": None,
                "metadata": {"i": i},
            }
        )
        if len(batch) == 10_000:
            yield batch
            batch = []
    if batch:
        yield batch


def write(work: Path, n: int) -> None:
    from fmops.datasets.records import RecordKind

    began = time.perf_counter()
    version = services(work).create_version(
        project_id=PROJECT, name="chats", kind=RecordKind.chat, batches=records(n, 0), validate=False
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "rows": version.rows,
                "seconds": round(time.perf_counter() - began, 1),
                "peak_rss_mb": round(usage.ru_maxrss / 1024),
            }
        )
    )


def curate(work: Path) -> None:
    from fmops.curation.recipe import load_recipe
    from fmops.curation.runner import CurationRun

    datasets = services(work)
    start = datasets.resolve(PROJECT, "chats")
    run = CurationRun(datasets, PROJECT, load_recipe(RECIPE))
    steps = []
    current = start
    for index, planned in enumerate(run.recipe.steps):
        began = time.perf_counter()
        current = run.step(index, planned, current)
        steps.append(
            {
                "step": planned.as_dict(),
                "seconds": round(time.perf_counter() - began, 1),
                "counts": current.counts,
                "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
        print(json.dumps(steps[-1]), file=sys.stderr)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "steps": steps,
                "peak_rss_mb": round(usage.ru_maxrss / 1024),
                "final": current.ref,
                "final_rows": current.rows,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fmops-curation-1m"))
    parser.add_argument("--phase", choices=["write", "curate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "write":
        write(args.work, args.records)
        return
    if args.phase == "curate":
        curate(args.work)
        return
    before = load()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    results: dict[str, Any] = {"records": args.records}
    for phase in ("write", "curate"):
        began = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--phase",
                phase,
                "--records",
                str(args.records),
                "--work",
                str(args.work),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[phase] = json.loads(done.stdout.strip().splitlines()[-1])
        results[phase]["wall_s"] = round(time.perf_counter() - began, 1)
        print(f"{phase}: {json.dumps(results[phase])}")
    shutil.rmtree(args.work, ignore_errors=True)
    save_result("curation_1m", results, load_before=before)


if __name__ == "__main__":
    main()
