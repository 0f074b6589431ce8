"""The playground on both backends against the mock upstream: a grid of prompt versions × models,
each cell a real gateway call (rendered prompt, merged params, a span marked as a playground call),
a failing cell reported on its own, and a bad request refused before anything runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import nullcontext
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from fmops.errors import UserError
from fmops.platform import Platform
from fmops.prompts.playground import PLAYGROUND_ATTRIBUTE, Playground, PlaygroundRequest
from fmops.settings import load_settings
from fmops.store import Store, upgrade
from fmops.store.models import Span
from support.databases import postgres_database, sqlite_url
from support.endpoint_world import EndpointWorld, endpoint_world
from support.mock_upstream import REPLY, MockUpstream

pytestmark = pytest.mark.anyio
ACME = {"company": "Acme", "question": "When are you open?"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream
) -> Iterator[EndpointWorld]:
    """Models `small` and `other` on the mock upstream; prompt `support` v1 (production), v2 (staging)."""
    folder = tmp_path_factory.mktemp(f"playground-{request.param}")
    database = postgres_database() if request.param == "postgresql" else nullcontext(sqlite_url(folder))
    with database as url:
        store = Store(url)
        upgrade(store)
        settings = load_settings({"home": folder / "home", "database_url": url, "key_cache_seconds": 0})
        try:
            yield endpoint_world(Platform.build(settings, store), mock)
        finally:
            store.dispose()


@pytest.fixture
async def w(world: EndpointWorld) -> AsyncIterator[EndpointWorld]:
    world.mock.reset()
    yield world
    await world.platform.gateway.close()


def playground(w: EndpointWorld) -> Playground:
    return Playground(w.prompts, w.platform.catalog, w.platform.gateway)


def grid(**body: Any) -> PlaygroundRequest:
    return PlaygroundRequest.model_validate(body)


async def test_two_versions_by_two_models(w: EndpointWorld) -> None:
    targets = [
        {"prompt": "support", "version": v, "model": m, "params": {"temperature": 0.9}}
        for v in (1, 2)
        for m in ("small", "other")
    ]
    inputs = [{"variables": ACME}, {"variables": {"company": "Acme"}}]  # the second lacks `question`

    result = await playground(w).run(w.principal, grid(inputs=inputs, targets=targets))

    assert [(t.version, t.model) for t in result.targets] == [
        (1, "small"),
        (1, "other"),
        (2, "small"),
        (2, "other"),
    ]
    # The version's params with the target's over them.
    assert result.targets[0].params == {"temperature": 0.9, "max_tokens": 200}
    assert [(c.input, c.target) for c in result.cells] == [(i, j) for i in range(2) for j in range(4)]
    done, failed = result.cells[:4], result.cells[4:]
    for cell in done:
        assert (cell.output, cell.error) == (REPLY, None)
        assert cell.input_tokens
        assert cell.output_tokens == len(REPLY.split())
        assert cell.latency_ms is not None
        assert cell.latency_ms > 0
        assert cell.trace_id is not None
    for cell in failed:  # each cell fails on its own; the first input's cells still ran
        assert cell.output is None
        assert cell.error is not None
        assert "question" in cell.error
        assert cell.error_code is not None

    # What the upstream got: each version rendered, sent to its model, with the merged params.
    sent = sorted(w.upstream(), key=lambda b: (b["messages"][0]["content"], b["model"]))
    assert len(sent) == 4
    assert [(b["model"], b["messages"][0]["content"]) for b in sent] == [
        ("up-other", "You answer for Acme in one word."),
        ("up-small", "You answer for Acme in one word."),
        ("up-other", "You answer for Acme. Be brief."),
        ("up-small", "You answer for Acme. Be brief."),
    ]
    assert {(b["temperature"], b["max_tokens"]) for b in sent} == {(0.9, 200)}
    assert all(b["messages"][1] == {"role": "user", "content": ACME["question"]} for b in sent)

    # Every call's span says it was the playground's, and which prompt version it ran.
    await w.platform.tracer.flush()
    with w.platform.store.session() as session:
        spans = session.scalars(select(Span).where(Span.trace_id.in_([c.trace_id for c in done]))).all()
    assert sorted((s.model, s.prompt_name, s.prompt_version) for s in spans) == [
        ("other", "support", 1),
        ("other", "support", 2),
        ("small", "support", 1),
        ("small", "support", 2),
    ]
    assert all(s.attributes[PLAYGROUND_ATTRIBUTE] is True for s in spans)
    assert all(s.endpoint is None and s.variant is None for s in spans)


async def test_a_bare_model_an_upstream_error_and_a_label(w: EndpointWorld) -> None:
    w.mock.script({"status": 400})  # the first call the upstream sees is refused
    inputs = [{"messages": [{"role": "user", "content": "Hi"}], "variables": ACME}]
    targets = [{"model": "small"}, {"prompt": "support", "label": "staging", "model": "other"}]

    result = await playground(w).run(w.principal, grid(inputs=inputs, targets=targets))

    assert [(t.prompt, t.version) for t in result.targets] == [(None, None), ("support", 2)]
    errors = [c for c in result.cells if c.error]
    assert len(errors) == 1  # the refused call fails its cell only
    assert errors[0].error_code == "upstream_rejected"
    assert errors[0].trace_id is not None  # a failed call is traced too
    assert sum(c.output == REPLY for c in result.cells) == 1
    # A bare model gets the input's messages as they are; a prompt gets them after its own.
    shapes = sorted(len(b["messages"]) for b in w.upstream())
    assert shapes == [1, 3]


@pytest.mark.parametrize(
    ("target", "param", "words"),
    [
        ({"prompt": "nope"}, "targets.0.prompt", "no prompt 'nope'"),
        ({"prompt": "support", "label": "prod"}, "targets.0.label", "labels: production, staging"),
        ({"prompt": "support", "version": 9}, "targets.0.version", "versions: 1 to 2"),
        ({"prompt": "support", "model": "gpt-9"}, "targets.0.model", "model 'gpt-9' does not exist"),
        ({"model": "small", "params": {"temprature": 1}}, "targets.0.params.temprature", "not an OpenAI"),
        (
            {"model": "small", "params": {"temperature": 7}},
            "targets.0.params.temperature",
            "less than or equal",
        ),
    ],
)
async def test_a_bad_target_is_refused_before_anything_runs(
    w: EndpointWorld, target: dict[str, Any], param: str, words: str
) -> None:
    request = grid(inputs=[{"variables": ACME}], targets=[target])
    with pytest.raises(UserError) as refused:
        await playground(w).run(w.principal, request)
    assert (refused.value.status_code, refused.value.param) == (400, param)
    assert words in refused.value.message
    assert w.upstream() == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"inputs": [{}] * 6, "targets": [{"model": "small"}] * 9}, "54 cells"),
        ({"inputs": [], "targets": [{"model": "small"}]}, "at least 1"),
        ({"inputs": [{}], "targets": [{}]}, "give a prompt, a model, or both"),
        ({"inputs": [{}], "targets": [{"prompt": "support", "version": 1, "label": "staging"}]}, "not both"),
        ({"inputs": [{}], "targets": [{"model": "small", "version": 1}]}, "set prompt too"),
        ({"inputs": [{"vars": {}}], "targets": [{"model": "small"}]}, "Extra inputs"),
    ],
)
def test_the_request_shape_is_checked(body: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        grid(**body)
