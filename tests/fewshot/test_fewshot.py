"""Dynamic few-shot (fmops.fewshot), with the real MiniLM encoder: what records demonstrate and where
examples go; a version's index built once, stored beside the dataset and searched; an endpoint's
`fewshot:` option checked (a clear 400 for each mistake), served to the `openai` SDK through a real
server against the mock upstream (the examples it received, in order, before the last user
message), traced as a retrieval span shown in the console; and the CLI (`fmops data index`,
`fmops endpoints update --fewshot`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from fmops.artifacts import ArtifactStore
from fmops.datasets import DatasetService
from fmops.errors import UserError
from fmops.fewshot import Example, ExampleIndex, FewshotSpec, demonstration, with_examples
from fmops.fewshot.index import IndexCache, index_key
from fmops.store import Store
from support.browser import web_session
from support.cli_runs import run_all
from support.databases import migrated_sqlite_url
from support.mock_upstream import MockUpstream
from support.reliability import add_models
from support.server import RunningServer, start_server

TICKETS = [
    {"prompt": "My printer is jammed and will not print anything", "completion": "hardware"},
    {"prompt": "I forgot my password and cannot log in", "completion": "account"},
    {"prompt": "I was charged twice for my subscription this month", "completion": "billing"},
    {"prompt": "The laptop screen keeps flickering", "completion": "hardware"},
    {"prompt": "How do I reset my two-factor authentication?", "completion": "account"},
    {"prompt": "Please refund my last invoice", "completion": "billing"},
]
PRINTER = "The office printer keeps jamming paper"  # nearest: TICKETS[0]
CASES_WITHOUT_ANSWERS = [{"input": "hello", "expected": None}]


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


# --- records, insertion, the option's shape (no model) ------------------------------------------


def test_what_each_kind_of_record_demonstrates_and_where_examples_go() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "Triage."},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
        ]
    }
    assert demonstration("chat", chat) == ("q1", "a1")  # the last answered question
    assert demonstration("completion", {"prompt": "p", "completion": "c"}) == ("p", "c")
    preference = {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    assert demonstration("preference", preference) == ("q", "good")
    assert demonstration("eval", {"input": "q", "expected": {"label": "x"}}) == ("q", '{"label":"x"}')
    assert demonstration("eval", {"input": "q", "expected": None}) is None
    assert demonstration("completion", {"prompt": " ", "completion": "c"}) is None

    near, far = Example(0, "a" * 32, "near q", "near a", 0.9), Example(1, "b" * 32, "far q", "far a", 0.5)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    assert [m["content"] for m in with_examples(messages, [near, far])] == [
        "S",
        "far q",
        "far a",
        "near q",  # the most similar nearest the question
        "near a",
        "Q",
    ]
    assert with_examples([{"role": "system", "content": "S"}], [near]) == [{"role": "system", "content": "S"}]

    assert FewshotSpec.model_validate({"dataset": "tickets@3"}).k == 3
    for bad, fragment in (
        ({"dataset": "tickets"}, "pin a version"),
        ({"dataset": "tickets@latest"}, "pin a version"),
        ({"dataset": "tickets@1", "k": 0}, "greater than or equal to 1"),
        ({"dataset": "tickets@1", "k": 21}, "less than or equal to 20"),
        ({"dataset": "tickets@1", "k": "3"}, "JSON number"),
        ({"dataset": "tickets@1", "min_similarity": 2}, "less than or equal to 1"),
        ({"dataset": "tickets@1", "top": 3}, "Extra inputs"),
    ):
        with pytest.raises(ValueError, match=fragment):
            FewshotSpec.model_validate(bad)


# --- the index (real MiniLM) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatasetService]:
    folder = tmp_path_factory.mktemp("fewshot-index")
    store = Store(migrated_sqlite_url(folder))
    yield DatasetService(store, ArtifactStore((folder / "artifacts").as_uri()))
    store.dispose()


def test_an_index_is_built_once_stored_beside_the_dataset_and_finds_the_nearest(
    datasets: DatasetService,
) -> None:
    version = datasets.create_version(project_id="p", name="tickets", kind="completion", batches=[TICKETS])
    cache = IndexCache()
    index = cache.get(datasets, version, project_id="p")
    assert len(index) == len(TICKETS) and index.vectors.shape == (len(TICKETS), 384)
    assert index.vectors.dtype.name == "float32"
    assert abs(float((index.vectors**2).sum(axis=1).mean()) - 1.0) < 1e-4  # unit rows
    key = index_key("p", version.content_hash)
    assert datasets.artifacts.exists(key)

    found = index.nearest_now(PRINTER, k=2)
    assert [e.row for e in found][0] == 0 and found[0].input == TICKETS[0]["prompt"]
    assert found[0].similarity >= found[1].similarity
    assert found[0].output == "hardware" and len(found[0].id) == 32
    assert index.nearest_now(PRINTER, k=3, min_similarity=0.99) == []
    assert len(index.nearest_now(PRINTER, k=50)) == len(TICKETS)  # k past the end: all, ordered

    # Built once: the same process holds it; another process loads the stored artifact, never
    # building again (its file is not rewritten).
    written = datasets.artifacts.modified(key)
    assert cache.get(datasets, version, project_id="p") is index
    loaded = IndexCache().get(datasets, version, project_id="p")
    assert loaded is not index and loaded.ids == index.ids and (loaded.vectors == index.vectors).all()
    assert datasets.artifacts.modified(key) == written

    empty = datasets.create_version(project_id="p", name="cases", kind="eval", batches=[CASES_WITHOUT_ANSWERS])
    with pytest.raises(UserError, match="no record with both an input and an output"):
        ExampleIndex.for_version(datasets, empty, project_id="p")
