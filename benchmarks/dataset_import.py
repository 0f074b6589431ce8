"""Importing a 1 GB JSONL file of chat records: fmops (`fmops data import`'s code path: stream,
detect, normalise, validate, hash, write Parquet in row groups, commit a version) against Hugging
Face `datasets.load_dataset("json")` (Arrow's C++ JSON reader into its Arrow cache) on the same
file. Records/s and peak RSS of each, each in a fresh subprocess, run one after the other.

Also imports a file of a tenth the size with fmops, so bounded memory shows as peak RSS that does
not grow with the file.

    .venv/bin/python benchmarks/dataset_import.py [--gb 1.0] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import orjson
from _harness import load, save_result

WORDS = [
    "the",
    "order",
    "shipped",
    "yesterday",
    "and",
    "should",
    "arrive",
    "within",
    "three",
    "business",
    "days",
    "please",
    "check",
    "your",
    "email",
    "for",
    "the",
    "tracking",
    "number",
    "refund",
    "account",
    "password",
    "reset",
    "invoice",
    "billing",
    "address",
    "delivery",
    "support",
]


def generate(path: Path, target_bytes: int, seed: int = 3) -> int:
    """OpenAI-chat JSONL records (system, user, assistant; ~700 bytes each) until `target_bytes`."""
    rng = random.Random(seed)
    written = records = 0
    with path.open("wb") as out:
        while written < target_bytes:
            chunk = []
            for _ in range(10_000):
                user = " ".join(rng.choices(WORDS, k=rng.randint(10, 40)))
                answer = " ".join(rng.choices(WORDS, k=rng.randint(30, 120)))
                chunk.append(
                    orjson.dumps(
                        {
                            "messages": [
                                {"role": "system", "content": "You are the support assistant of Acme."},
                                {"role": "user", "content": f"#{records} {user}?"},
                                {"role": "assistant", "content": answer},
                            ],
                            "source": "support-logs",
                        }
                    )
                    + b"\n"
                )
                records += 1
            data = b"".join(chunk)
            out.write(data)
            written += len(data)
    return records


FMOPS = """
import resource, sys, time, json
from pathlib import Path
from fmops.artifacts import ArtifactStore
from fmops.datasets.imports import import_file
from fmops.datasets.service import DatasetService
from fmops.store import Store, upgrade

work = Path(sys.argv[2])
store = Store(f"sqlite:///{work / 'fmops.db'}")
upgrade(store)
service = DatasetService(store, ArtifactStore((work / "artifacts").as_uri()))
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

started, cpu_started = time.perf_counter(), cpu()
result = import_file(service, project_id="b" * 32, path=Path(sys.argv[1]), name="bench")
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
version = result.version
pages = {}
for label, offset, search in [("first", 0, None), ("middle", version.rows // 2, None),
                              ("last", version.rows - 50, None), ("search_rare", 0, "#1249999?"),
                              ("search_common", 1000, "refund")]:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        page = service.page(version, offset, 50, search)
        times.append(time.perf_counter() - t)
    pages[label] = {"ms": sorted(times)[1] * 1000, "rows": len(page.rows)}
print(json.dumps({"rows": version.rows, "seconds": seconds, "cpu_seconds": cpu_seconds,
                  "parquet_bytes": version.size_bytes,
                  "peak_rss_mib": peak, "page_of_50": pages}))
"""

HF = """
import resource, sys, time, json
import datasets
datasets.disable_progress_bars()
def cpu():  # every thread of the process (Arrow's JSON reader uses several)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

started, cpu_started = time.perf_counter(), cpu()
loaded = datasets.load_dataset("json", data_files=sys.argv[1], cache_dir=sys.argv[2], split="train")
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
print(json.dumps({"rows": loaded.num_rows, "seconds": seconds, "cpu_seconds": cpu_seconds,
                  "datasets_version": datasets.__version__,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(script: str, data: Path, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(data), str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["records_per_s"] = result["rows"] / result["seconds"]
    result["records_per_cpu_s"] = result["rows"] / result["cpu_seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=1.0, help="Size of the JSONL file")
    parser.add_argument("--dir", type=Path, default=None, help="Work folder (default: a temporary one)")
    args = parser.parse_args()
    before = load()
    with tempfile.TemporaryDirectory(prefix="fmops-bench-import-", dir=args.dir) as folder:
        root = Path(folder)
        big, small = root / "big.jsonl", root / "small.jsonl"
        records = generate(big, int(args.gb * 1024**3))
        small_records = generate(small, int(args.gb * 1024**3 / 10))
        size = big.stat().st_size
        print(
            f"generated {records:,} records, {size / 1024**2:,.0f} MiB "
            f"(and {small_records:,} for the small run)"
        )
        results = {
            "file_bytes": size,
            "records": records,
            "fmops": run(FMOPS, big, root / "fmops"),
            "hf_datasets": run(HF, big, root / "hf"),
            "fmops_tenth": run(FMOPS, small, root / "fmops-small"),
        }
    fm, hf, tenth = results["fmops"], results["hf_datasets"], results["fmops_tenth"]
    print(f"{'':14}{'records/s':>12}{'seconds':>10}{'records/cpu-s':>15}{'peak RSS MiB':>14}")
    for name, r in (("fmops", fm), ("hf datasets", hf), ("fmops (1/10)", tenth)):
        print(
            f"{name:14}{r['records_per_s']:>12,.0f}{r['seconds']:>10.1f}"
            f"{r['records_per_cpu_s']:>15,.0f}{r['peak_rss_mib']:>14,.0f}"
        )
    print(
        f"fmops / datasets: {fm['records_per_s'] / hf['records_per_s']:.2f}x records/s, "
        f"{fm['records_per_cpu_s'] / hf['records_per_cpu_s']:.2f}x records per CPU second, "
        f"{fm['peak_rss_mib'] / hf['peak_rss_mib']:.2f}x peak RSS"
    )
    print(f"fmops peak RSS, full file / tenth: {fm['peak_rss_mib'] / tenth['peak_rss_mib']:.2f}x")
    pages = ", ".join(f"{k} {v['ms']:.0f} ms" for k, v in fm["page_of_50"].items())
    print(f"fmops pages of 50 over {fm['rows']:,.0f} rows: {pages}")
    save_result("dataset_import", results, load_before=before)


if __name__ == "__main__":
    main()
