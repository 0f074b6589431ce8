"""Dynamic few-shot (fmops.fewshot), with the real MiniLM encoder: what records demonstrate and where
examples go; a version's index built once, stored beside the dataset and searched; an endpoint's
`fewshot:` option checked (a clear 400 for each mistake), served to the `openai` SDK through a real
server against the mock upstream (the examples it received, in order, before the last user
message), traced as a retrieval span shown in the console; and the CLI (`fmops data index`,
`fmops endpoints update --fewshot`)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from openai import OpenAI
from typer.testing import CliRunner

from fmops.artifacts import ArtifactStore
from fmops.cli import app, common
from fmops.datasets import DatasetService
from fmops.errors import UserError
from fmops.fewshot import Example, ExampleIndex, FewshotSpec, checks, demonstration, with_examples
from fmops.fewshot.index import IndexCache, index_key
from fmops.fewshot.retrieval import Retriever
from fmops.platform import Platform
from fmops.server.runner import asgi_app, prepare, uvicorn_config
from fmops.settings import load_settings
from fmops.store import Store
from support.browser import web_session
from support.databases import migrated_sqlite_url
from support.mock_upstream import MockUpstream
from support.server import free_port

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
    assert len(index) == len(TICKETS)
    assert index.vectors.shape == (len(TICKETS), 384)
    assert index.vectors.dtype.name == "float32"
    assert abs(float((index.vectors**2).sum(axis=1).mean()) - 1.0) < 1e-4  # unit rows
    key = index_key("p", version.content_hash)
    assert datasets.artifacts.exists(key)

    found = index.nearest_now(PRINTER, k=2)
    assert next(e.row for e in found) == 0
    assert found[0].input == TICKETS[0]["prompt"]
    assert found[0].similarity >= found[1].similarity
    assert found[0].output == "hardware"
    assert len(found[0].id) == 32
    assert index.nearest_now(PRINTER, k=3, min_similarity=0.99) == []
    assert len(index.nearest_now(PRINTER, k=50)) == len(TICKETS)  # k past the end: all, ordered

    # Built once: the same process holds it; another process loads the stored artifact, never
    # building again (its file is not rewritten).
    written = datasets.artifacts.modified(key)
    assert cache.get(datasets, version, project_id="p") is index
    loaded = IndexCache().get(datasets, version, project_id="p")
    assert loaded is not index
    assert loaded.ids == index.ids
    assert (loaded.vectors == index.vectors).all()
    assert datasets.artifacts.modified(key) == written

    empty = datasets.create_version(
        project_id="p", name="cases", kind="eval", batches=[CASES_WITHOUT_ANSWERS]
    )
    with pytest.raises(UserError, match="no record with both an input and an output"):
        ExampleIndex.for_version(datasets, empty, project_id="p")


def test_a_call_never_builds_an_index_it_starts_a_build_and_goes_without(datasets: DatasetService) -> None:
    version = datasets.create_version(project_id="p", name="fresh", kind="completion", batches=[TICKETS[:3]])
    retriever = Retriever(datasets.store, datasets.artifacts)
    spec = FewshotSpec(dataset="fresh@1", k=1)

    first = asyncio.run(retriever.retrieve("p", spec, PRINTER))
    assert first.examples == []
    assert first.error is not None
    assert "being built" in first.error
    for build in retriever.building():
        build.join(60)
    assert datasets.artifacts.exists(index_key("p", version.content_hash))
    second = asyncio.run(retriever.retrieve("p", spec, PRINTER))
    assert second.error is None
    assert [e.row for e in second.examples] == [0]
    assert second.version_id == version.id


def test_saving_a_large_version_checks_a_sample_and_leaves_the_build_to_the_gateway(
    datasets: DatasetService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "BUILD_ON_SAVE", 2)
    big = datasets.create_version(project_id="p", name="big", kind="completion", batches=[TICKETS[3:]])
    checks.prepared(datasets, "p", FewshotSpec(dataset="big@1"))
    assert not datasets.artifacts.exists(index_key("p", big.content_hash))  # not built on save
    datasets.create_version(project_id="p", name="blank", kind="eval", batches=[CASES_WITHOUT_ANSWERS * 3])
    with pytest.raises(UserError, match="none of the first 3 records of blank@1"):
        checks.prepared(datasets, "p", FewshotSpec(dataset="blank@1"))


# --- an endpoint's option, served through a real server (in this process: one encoder load) ------


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread while this module runs: on a loaded 2-core machine torch's default of two
    makes a one-sentence MiniLM pass ~30x slower (threads spinning for busy cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Served:
    url: str
    key: str
    home: Path
    mock: MockUpstream

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream) -> Iterator[Served]:
    """The server's app under uvicorn on a thread of this process (so the MiniLM the index test
    loaded serves it too), on SQLite, with model `mock-model` on the mock upstream and dataset
    tickets@1 (completion records) and cases@1 (eval cases without answers)."""
    home = tmp_path_factory.mktemp("fewshot-server")
    settings = load_settings(
        {"home": home, "port": free_port(), "upstream_allow_private": True, "key_cache_seconds": 0}
    )
    store, key = prepare(settings)
    assert key is not None
    platform = Platform.build(settings, store)
    server = uvicorn.Server(uvicorn_config(settings, asgi_app(settings, platform)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    running = Served(f"http://127.0.0.1:{settings.port}", key, home, mock)
    try:
        with running.client() as client:
            made = client.post(
                "/api/models",
                json={"alias": "mock-model", "provider": "openai", "base_url": mock.url, "model": "m"},
            )
            assert made.status_code == 201, made.text
            for name, records in (("tickets", TICKETS), ("cases", CASES_WITHOUT_ANSWERS)):
                files = {"file": (f"{name}.jsonl", _jsonl(records))}
                imported = client.post("/api/datasets/import", data={"name": name}, files=files)
                assert imported.status_code == 201, imported.text
        yield running
    finally:
        server.should_exit = True
        thread.join(30)


def _spans(client: httpx.Client, trace_id: str, kinds: int) -> list[dict[str, Any]]:
    """The trace's spans once `kinds` kinds of span are stored (they are written off the request path)."""
    deadline = time.monotonic() + 10
    while True:
        got = client.get(f"/api/traces/{trace_id}")
        spans = _flat(got.json()) if got.status_code == 200 else []
        if len({s["kind"] for s in spans}) >= kinds or time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def _flat(tree: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for node in tree.get("spans", tree.get("roots", [])):
        stack = [node]
        while stack:
            item = stack.pop()
            found.append(item.get("span", item))
            stack.extend(item.get("children", []))
    return found


def test_an_endpoint_inserts_the_nearest_examples_and_traces_their_retrieval(served: Served) -> None:
    with served.client() as client:
        for fewshot, fragment in (
            ({"dataset": "nope@1"}, "fewshot.dataset: no dataset 'nope'"),
            ({"dataset": "tickets@9"}, "has no version 9"),
            ({"dataset": "tickets"}, "pin a version"),
            ({"dataset": "tickets@1", "k": 21}, "fewshot.k"),
            ({"dataset": "cases@1"}, "no record with both an input and an output"),
        ):
            body = {"name": "bad", "model": "mock-model", "fewshot": fewshot}
            refused = client.post("/api/endpoints", json=body)
            assert refused.status_code == 400, refused.text
            assert fragment in refused.json()["error"]["message"], refused.text
        body = {"name": "triage", "model": "mock-model", "fewshot": {"dataset": "tickets@1", "k": 2}}
        made = client.post("/api/endpoints", json=body)
        assert made.status_code == 201, made.text
        assert made.json()["fewshot"] == {"dataset": "tickets@1", "k": 2, "min_similarity": 0.0}

        served.mock.reset()
        sdk = OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)
        question = {"role": "user", "content": PRINTER}
        raw = sdk.chat.completions.with_raw_response.create(
            model="triage", messages=[{"role": "system", "content": "Answer with one label."}, question]
        )
        assert raw.parse().model == "triage"
        [sent] = [r["body"] for r in served.mock.state.requests]
        contents = [m["content"] for m in sent["messages"]]
        assert contents[0] == "Answer with one label."
        assert contents[-1] == PRINTER
        pairs = contents[1:-1]
        assert len(pairs) == 4
        assert [m["role"] for m in sent["messages"][1:-1]] == ["user", "assistant"] * 2
        assert pairs[2:] == [TICKETS[0]["prompt"], "hardware"]  # the nearest, next to the question

        spans = _spans(client, raw.headers["x-fmops-trace-id"], kinds=2)
        [call] = [s for s in spans if s["kind"] == "llm"]
        [retrieval] = [s for s in spans if s["kind"] == "retrieval"]
        assert retrieval["parent_span_id"] == call["span_id"]
        assert retrieval["status"] == "ok"
        attributes = retrieval["attributes"]
        assert attributes["fmops.fewshot.dataset"] == "tickets@1"
        assert attributes["fmops.fewshot.k"] == 2
        assert attributes["fmops.fewshot.rows"][0] == 0
        assert len(attributes["fmops.fewshot.ids"]) == 2
        similarities = attributes["fmops.fewshot.similarities"]
        assert similarities == sorted(similarities, reverse=True)
        assert similarities[0] > 0.5
        assert retrieval["latency_ms"] > 0
        assert PRINTER not in json.dumps(retrieval)

        browser, _ = web_session(served, served.key)  # type: ignore[arg-type]  # it reads `url`
        try:
            page = browser.get("/console/endpoints/triage").text
            assert "most similar examples of" in page
            assert "tickets@1" in page
            trace = browser.get(f"/console/traces/{raw.headers['x-fmops-trace-id']}").text
            assert 'data-testid="retrieval-examples"' in trace
            assert TICKETS[0]["prompt"] in trace
        finally:
            browser.close()

        # Streamed: the same examples reach the upstream, and the same span is written.
        served.mock.reset()
        with sdk.chat.completions.with_streaming_response.create(
            model="triage", messages=[question], stream=True
        ) as streamed:
            chunks = list(streamed.parse())
            streamed_trace = streamed.headers["x-fmops-trace-id"]
        assert chunks
        [sent] = [r["body"] for r in served.mock.state.requests]
        assert [m["content"] for m in sent["messages"]][-3:] == [TICKETS[0]["prompt"], "hardware", PRINTER]
        assert any(s["kind"] == "retrieval" for s in _spans(client, streamed_trace, kinds=2))

        # Cleared: the next call has no examples and no retrieval span.
        assert client.patch("/api/endpoints/triage", json={"fewshot": None}).json()["fewshot"] is None
        served.mock.reset()
        sdk.chat.completions.create(model="triage", messages=[question])
        assert [r["body"]["messages"] for r in served.mock.state.requests] == [[question]]


def test_the_cli_prebuilds_an_index_and_sets_an_endpoints_examples(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FMOPS_HOME", str(served.home))
    common.settings.cache_clear()
    common.local_platform.cache_clear()
    runner = CliRunner()

    def fmops(*args: str) -> tuple[int, str]:
        done = runner.invoke(app, list(args))
        said = done.output + (getattr(done.exception, "message", "") if done.exception else "")
        return done.exit_code, " ".join(said.split())  # unwrapped: the console is 80 wide

    try:
        faq = served.home / "faq.jsonl"
        faq.write_bytes(_jsonl([{"prompt": "Where is the office printer?", "completion": "second floor"}]))
        assert fmops("data", "import", str(faq), "--name", "faq")[0] == 0
        code, built = fmops("data", "index", "faq@1")
        assert code == 0, built
        assert "faq@1: 1 of 1 records are examples" in built
        assert "built in" in built
        assert "already built" in fmops("data", "index", "faq@1")[1]

        code, lonely = fmops("endpoints", "update", "triage", "--fewshot-k", "2")
        assert code != 0
        assert "give --fewshot DATASET@VERSION too" in lonely
        code, changed = fmops("endpoints", "update", "triage", "--fewshot", "faq@1", "--fewshot-k", "1")
        assert code == 0, changed
        assert "1 most similar examples of faq@1" in changed
        code, bad = fmops("endpoints", "update", "triage", "--fewshot", "faq@7")
        assert code != 0
        assert "has no version 7" in bad

        served.mock.reset()
        OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0).chat.completions.create(
            model="triage", messages=[{"role": "user", "content": PRINTER}]
        )
        [sent] = [r["body"]["messages"] for r in served.mock.state.requests]
        assert [m["content"] for m in sent] == ["Where is the office printer?", "second floor", PRINTER]
    finally:
        common.settings.cache_clear()
        common.local_platform.cache_clear()
