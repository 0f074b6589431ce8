"""Near-duplicate removal: fmops's MinHash LSH step against HF datatrove's MinHash pipeline (local
executor), with datasketch and rensa scripts for reference, on one corpus with planted truth.

Corpus (default 100,000 documents, 80-220 words of a Zipf-distributed pseudo-word vocabulary, lower
case letters and single spaces, so every tool splits words the same way): base documents, planted
near-duplicates of some of them (1-3 words replaced: 5-gram Jaccard about 0.8-0.95) and near-misses
(9-16 words replaced: Jaccard about 0.3-0.6, where 16 x 8 LSH bands still collide now and then, so
precision means something). Clusters are a base and its near-duplicates; a tool's removals score
TP = sum over clusters of min(removed in it, size - 1), FP = the other removals, FN = what each
cluster should have lost and did not.

Every tool: 5-word shingles, 128 permutations as 16 bands x 8 rows; fmops and rensa also check
each candidate pair against a 0.7 Jaccard estimate (datatrove and datasketch's LSH keep every
band collision). Documents/s counts the whole run: shingling, signatures, LSH, clustering, filtering.
fmops asks for 2 threads (the step starts the second only on an idle core) and datatrove for 2
worker processes (this machine's 2 cores); the datasketch and rensa scripts are single-process, as
the issue's reference figures were.

    .venv/bin/python benchmarks/dedup_vs_datatrove.py [--docs 100000] [--skip datatrove,datasketch]

Raw figures: benchmarks/results/dedup_vs_datatrove.json. datatrove and datasketch are benchmark-only
installs (pip install datatrove datasketch), not fmops dependencies.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import load, save_result

from fmops.curation import StepContext, StepReport, steps
from fmops.curation.shingles import jaccard
from fmops.datasets.records import RecordKind

SHINGLE, BANDS, ROWS, THRESHOLD = 5, 16, 8, 0.7
NUM_PERM = BANDS * ROWS


# --- corpus -----------------------------------------------------------------------------------------


def vocabulary(rng: random.Random, size: int) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def corpus(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Texts and each one's cluster id (its base document's index)."""
    rng = random.Random(seed)
    vocab = vocabulary(rng, 30_000)
    weights = [1 / (rank + 10) for rank in range(len(vocab))]
    cum = list(__import__("itertools").accumulate(weights))
    n_dups, n_miss = int(n * 0.15), int(n * 0.15)
    n_base = n - n_dups - n_miss
    bases = [rng.choices(vocab, cum_weights=cum, k=rng.randint(80, 220)) for _ in range(n_base)]
    texts = [" ".join(b) for b in bases]
    clusters = list(range(n_base))

    def edited(words: list[str], changes: int) -> str:
        out = list(words)
        for i in rng.sample(range(len(out)), changes):
            out[i] = rng.choice(vocab)
        return " ".join(out)

    for _ in range(n_dups):
        base = rng.randrange(n_base)
        texts.append(edited(bases[base], rng.randint(1, 3)))
        clusters.append(base)
    for k in range(n_miss):
        texts.append(edited(bases[rng.randrange(n_base)], rng.randint(9, 16)))
        clusters.append(n_base + k)  # a cluster of its own: it must be kept
    order = list(range(n))
    rng.shuffle(order)
    return [texts[i] for i in order], [clusters[i] for i in order]


def score(removed: set[int], clusters: list[int]) -> dict[str, float | int]:
    members: dict[int, list[int]] = defaultdict(list)
    for doc, c in enumerate(clusters):
        members[c].append(doc)
    tp = fn = 0
    for docs in members.values():
        should = len(docs) - 1
        got = sum(1 for d in docs if d in removed)
        tp += min(got, should)
        fn += should - min(got, should)
    fp = len(removed) - tp
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "removed": len(removed),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def words(text: str) -> list[str]:
    return text.split()  # the corpus is lower-case words and single spaces: every splitter agrees


def shingles(text: str) -> list[str]:
    w = words(text)
    return [" ".join(w[i : i + SHINGLE]) for i in range(max(len(w) - SHINGLE + 1, 1))]


# --- the tools ------------------------------------------------------------------------------------


def run_fmops(records: list[dict[str, Any]], threads: int = 2) -> set[int]:
    cls = steps()["dedup"]
    step = cls(
        cls.Options.model_validate(
            {
                "method": "minhash",
                "threshold": THRESHOLD,
                "num_perm": NUM_PERM,
                "bands": BANDS,
                "rows": ROWS,
                "shingle": SHINGLE,
            }
        )
    )
    step.threads = threads

    def source() -> Iterator[list[dict[str, Any]]]:
        for i in range(0, len(records), 2_000):
            yield records[i : i + 2_000]

    ctx = StepContext(RecordKind.eval, "bench", len(records))
    kept = {r["metadata"]["i"] for b in step.run(source, ctx, StepReport("dedup")) for r in b}
    return set(range(len(records))) - kept


def run_rensa(texts: list[str]) -> set[int]:
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=BANDS)
    kept: dict[int, Any] = {}
    removed = set()
    for i, text in enumerate(texts):
        m = RMinHash(num_perm=NUM_PERM, seed=42)
        m.update(shingles(text))
        if any(m.jaccard(kept[j]) >= THRESHOLD for j in lsh.query(m)):
            removed.add(i)
            continue
        lsh.insert(i, m)
        kept[i] = m
    return removed


def run_datasketch(texts: list[str]) -> set[int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
    removed = set()
    for i, text in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM, seed=42)
        m.update_batch([s.encode() for s in shingles(text)])
        if lsh.query(m):
            removed.add(i)
            continue
        lsh.insert(str(i), m)
    return removed


def run_datatrove(texts: list[str], work: Path) -> tuple[set[int], dict[str, float]]:
    import datatrove.utils.hashes.xxhash as dt_xxhash
    import xxhash
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    # datatrove passes str to xxhash, which xxhash 4 refuses ("Strings must be encoded"); older
    # xxhash hashed the UTF-8 bytes, which is what this restores (workers fork, and inherit it).
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)

    data = work / "input"
    data.mkdir(parents=True)
    half = (len(texts) + 1) // 2
    for part, lo in enumerate((0, half)):  # two files: one per task of the two workers
        with (data / f"part{part}.jsonl").open("w") as f:
            for i in range(lo, min(lo + half, len(texts))):
                f.write(json.dumps({"id": str(i), "text": texts[i]}) + "\n")
    config = MinhashConfig(
        n_grams=SHINGLE, num_buckets=BANDS, hashes_per_bucket=ROWS, hash_config=HashConfig(precision=64)
    )
    tokenizer = SpaceTokenizer()
    logs = work / "logs"
    stages: list[tuple[str, Callable[[], LocalPipelineExecutor]]] = [
        (
            "signatures",
            lambda: LocalPipelineExecutor(
                [
                    JsonlReader(str(data)),
                    MinhashDedupSignature(str(work / "sigs"), config=config, language=tokenizer),
                ],
                tasks=2,
                workers=2,
                logging_dir=str(logs / "sigs"),
                start_method="fork",
            ),
        ),
        (
            "buckets",
            lambda: LocalPipelineExecutor(
                [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
                tasks=BANDS,
                workers=2,
                logging_dir=str(logs / "buckets"),
                start_method="fork",
            ),
        ),
        (
            "cluster",
            lambda: LocalPipelineExecutor(
                [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)],
                tasks=1,
                workers=1,
                logging_dir=str(logs / "cluster"),
                start_method="fork",
            ),
        ),
        (
            "filter",
            lambda: LocalPipelineExecutor(
                [
                    JsonlReader(str(data)),
                    MinhashDedupFilter(str(work / "remove")),
                    JsonlWriter(str(work / "kept")),
                ],
                tasks=2,
                workers=2,
                logging_dir=str(logs / "filter"),
                start_method="fork",
            ),
        ),
    ]
    times = {}
    for name, make in stages:
        began = time.perf_counter()
        make().run()
        times[name] = round(time.perf_counter() - began, 2)
    kept: set[int] = set()
    for path in (work / "kept").glob("*.jsonl*"):
        opener = __import__("gzip").open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            kept.update(int(json.loads(line)["id"]) for line in f)
    return set(range(len(texts))) - kept, times


try:
    from datatrove.utils.word_tokenizers import WordTokenizer
except ImportError:  # datatrove not installed: its run reports why
    WordTokenizer = object  # type: ignore[assignment,misc]


class SpaceTokenizer(WordTokenizer):  # type: ignore[misc]
    """datatrove's tokenizer interface, splitting words as every other tool here does."""

    def __init__(self) -> None:
        self.language = "en"

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--skip", default="", help="comma-separated tools to leave out")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    before = load()
    texts, clusters = corpus(args.docs, args.seed)
    sizes = Counter(Counter(clusters).values())
    rng = random.Random(1)
    members: dict[int, list[int]] = defaultdict(list)
    for doc, c in enumerate(clusters):
        members[c].append(doc)
    pairs = [docs for docs in members.values() if len(docs) > 1]
    sample = [
        round(jaccard(texts[d[0]], texts[d[1]], SHINGLE), 3) for d in rng.sample(pairs, min(500, len(pairs)))
    ]
    sample.sort()
    truth = {
        "docs": len(texts),
        "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "should_remove": sum(len(d) - 1 for d in pairs),
        "planted_pair_jaccard_percentiles": {
            p: sample[int(p / 100 * (len(sample) - 1))] for p in (1, 10, 50, 90, 99)
        },
    }
    print(f"corpus: {json.dumps(truth)}")
    results: dict[str, Any] = {
        "truth": truth,
        "config": {"shingle": SHINGLE, "bands": BANDS, "rows": ROWS, "threshold": THRESHOLD},
    }
    # fmops reads dataset records (eval records here: their text is the input); made before the clock starts.
    records = [{"input": t, "expected": None, "metadata": {"i": i}} for i, t in enumerate(texts)]
    tools: list[tuple[str, Callable[[], Any]]] = [
        ("fmops", lambda: run_fmops(records)),
        ("fmops_1_thread", lambda: run_fmops(records, threads=1)),
        ("rensa", lambda: run_rensa(texts)),
        ("datasketch", lambda: run_datasketch(texts)),
    ]
    for name, run in tools:
        if name in skip:
            continue
        began = time.perf_counter()
        removed = run()
        elapsed = time.perf_counter() - began
        results[name] = {
            "seconds": round(elapsed, 2),
            "docs_per_s": round(len(texts) / elapsed),
            **score(removed, clusters),
        }
        print(f"{name:<15} {results[name]}")
    if "datatrove" not in skip:
        work = Path(tempfile.mkdtemp(prefix="fmops-dedup-bench-"))
        try:
            began = time.perf_counter()
            removed, stage_times = run_datatrove(texts, work)
            elapsed = time.perf_counter() - began
            results["datatrove"] = {
                "seconds": round(elapsed, 2),
                "docs_per_s": round(len(texts) / elapsed),
                "stages_s": stage_times,
                **score(removed, clusters),
            }
            print(f"{'datatrove':<15} {results['datatrove']}")
        except Exception as exc:
            results["datatrove"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"datatrove could not run: {exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    peers = [results[t] for t in ("datatrove", "datasketch", "rensa") if t in results and "f1" in results[t]]
    if peers and "fmops" in results:
        best = max(peers, key=lambda r: r["f1"])
        results["fmops_vs_best_peer_f1"] = round(results["fmops"]["f1"] - best["f1"], 4)
        for t in ("datatrove", "datasketch", "rensa"):
            if t in results and "docs_per_s" in results[t]:
                ratio = results["fmops"]["docs_per_s"] / results[t]["docs_per_s"]
                results[f"fmops_speed_vs_{t}"] = round(ratio, 2)
                print(f"fmops is {ratio:.1f}x {t}'s documents/s")
    save_result("dedup_vs_datatrove", results, load_before=before)


if __name__ == "__main__":
    main()
