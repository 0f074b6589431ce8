"""Tags by header: `X-Fmops-Tags: a,b` on /v1/chat/completions (streamed or not) and /v1/embeddings,
sent by the official SDK's `extra_headers`, joins the body's `metadata.tags`; a bad value is a 400 that
names the header, before the upstream is called. On the ASGI fast path and on the FastAPI routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from support.gateway import add_models, gateway_server, openai_model, sdk, wait_for
from support.mock_upstream import MockUpstream
from support.server import RunningServer

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", params=["true", "false"], ids=["fast-path", "fastapi-route"])
def server(
    request: pytest.FixtureRequest, mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("tags-header")
    with gateway_server(home, {"FMOPS_GATEWAY_FAST_PATH": request.param}) as running:
        add_models(home, {"talker": openai_model("ok-talker", mock.url)})
        yield running


def tags_of(server: RunningServer, trace_id: str) -> list[str]:
    """The tags of a call's span (sorted, as the API lists them), once the writer has stored it."""
    with server.client() as api:

        def found() -> Any:
            answer = api.get(f"/api/traces/{trace_id}")
            return answer.status_code == 200 and answer.json()["spans"]

        assert wait_for(found, timeout=10), f"no span for trace {trace_id}"
        spans = api.get(f"/api/traces/{trace_id}").json()["spans"]
    assert len(spans) == 1
    return list(spans[0]["tags"])


def test_the_header_tags_a_chat_call_with_its_metadata_tags(
    server: RunningServer, mock: MockUpstream
) -> None:
    made = sdk(server).chat.completions.with_raw_response.create(
        model="talker",
        messages=HI,
        metadata={"tags": "env:prod, team-a"},
        extra_headers={"X-Fmops-Tags": "team-a, from:header,,ci"},  # blanks ignored, a repeat once
    )
    assert made.parse().choices[0].message.content
    assert tags_of(server, made.headers["x-fmops-trace-id"]) == ["ci", "env:prod", "from:header", "team-a"]
    sent = mock.state.requests[-1]
    assert not any(name.lower() == "x-fmops-tags" for name in sent["headers"])  # not passed upstream


def test_the_header_alone_tags_a_streamed_call(server: RunningServer) -> None:
    with sdk(server).chat.completions.with_streaming_response.create(
        model="talker", messages=HI, stream=True, extra_headers={"X-Fmops-Tags": "stream"}
    ) as made:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in made.parse() if chunk.choices)
        trace_id = made.headers["x-fmops-trace-id"]
    assert text == "Hello from the mock upstream."
    assert tags_of(server, trace_id) == ["stream"]


def test_the_header_tags_an_embeddings_call(server: RunningServer) -> None:
    made = sdk(server).embeddings.with_raw_response.create(
        model="talker", input="abcd", extra_headers={"X-Fmops-Tags": "rag,env:dev"}
    )
    assert len(made.parse().data) == 1
    assert tags_of(server, made.headers["x-fmops-trace-id"]) == ["env:dev", "rag"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ok,not ok", "X-Fmops-Tags: 'not ok' is not a valid tag"),
        ("-dash-first", "X-Fmops-Tags: '-dash-first' is not a valid tag"),
        ("x" * 65, "X-Fmops-Tags: 'xxxx"),
        (",".join(f"t{i}" for i in range(21)), "X-Fmops-Tags: at most 20 tags, not 21"),
        # the header's published grammar: at most 20 items, however many distinct
        (",".join(["same"] * 21), "X-Fmops-Tags: use at most 20 tags, comma-separated"),
    ],
    ids=["space", "first-character", "too-long", "too-many", "too-many-items"],
)
def test_a_bad_header_is_a_400_naming_it_before_any_call(
    server: RunningServer, mock: MockUpstream, value: str, message: str
) -> None:
    client = sdk(server)
    calls = len(mock.state.requests)
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model="talker", messages=HI, extra_headers={"X-Fmops-Tags": value})
    with pytest.raises(openai.BadRequestError) as embeddings:
        client.embeddings.create(model="talker", input="abcd", extra_headers={"X-Fmops-Tags": value})
    for caught in (chat, embeddings):
        assert caught.value.status_code == 400
        assert message in caught.value.message
        assert caught.value.param == "X-Fmops-Tags"
    assert len(mock.state.requests) == calls


def test_header_and_metadata_tags_together_are_at_most_twenty(server: RunningServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).chat.completions.create(
            model="talker",
            messages=HI,
            metadata={"tags": ",".join(f"m{i}" for i in range(12))},
            extra_headers={"X-Fmops-Tags": ",".join(f"h{i}" for i in range(12))},
        )
    assert "X-Fmops-Tags: at most 20 tags with metadata.tags, not 24" in caught.value.message
