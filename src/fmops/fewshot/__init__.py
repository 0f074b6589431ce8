"""Few-shot examples from a dataset version, found by embedding similarity (dynamic in-context learning).

An endpoint option (`fewshot: {dataset: NAME@VERSION, k: 3, min_similarity: 0.0}`) inserts, for each
call, the k examples of the version whose inputs are most similar to the call's last user message,
as user/assistant pairs just before it, and records a `retrieval` span. The prompt optimizer
(fmops.optimizers) uses the same index.

The API, for services:

    from fmops.fewshot import ExampleIndex

    index = ExampleIndex.for_version(datasets, version, project_id=pid)  # blocking; built once
    examples = await index.nearest("my printer is on fire", k=3)        # list[Example], best first
    examples = index.nearest_now(text, k=3)                             # from synchronous code
    examples = index.nearest_vector(unit_vector, k=3, min_similarity=0.3)
    messages = with_examples(messages, examples)  # pairs before the last user message

`datasets` is a `fmops.datasets.DatasetService`, `version` a `VersionInfo` (`datasets.resolve(pid,
"tickets@3")`). An `Example` has `row` (in the version, from 0), `id` (the record's hash, hex),
`input`, `output`, `similarity` (cosine, -1..1) and `messages()` (its user/assistant pair). What a
record of each kind demonstrates: fmops.fewshot.examples. Encodings of many texts at once:
`default_encoder().embed_now(texts)` (unit float32 rows). The index is stored as an artifact keyed
by the version's content hash and kept in memory per process: fmops.fewshot.index.

Modules: `schemas` (the endpoint option), `examples` (records to demonstrations, insertion),
`index` (build, store, load, search), `retrieval` (the gateway's per-call retrieval and its span).
Importing this package loads neither numpy nor the encoder until one of the names below is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmops.fewshot.examples import Example, demonstration, with_examples
from fmops.fewshot.schemas import FewshotSpec

if TYPE_CHECKING:
    from fmops.fewshot.index import Encoder, ExampleIndex, default_encoder

__all__ = [
    "Encoder",
    "Example",
    "ExampleIndex",
    "FewshotSpec",
    "default_encoder",
    "demonstration",
    "with_examples",
]


def __getattr__(name: str) -> Any:
    if name in ("Encoder", "ExampleIndex", "default_encoder"):
        from fmops.fewshot import index

        return getattr(index, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
