"""Searching traces as a client does: calls through the real gateway, then /api/traces and the CLI."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from support.cli_runs import run_session
from support.gateway import FMOPS, add_models, cli_env, gateway_server, openai_model, read_span, sdk
from support.mock_upstream import REPLY, MockUpstream
from support.server import RunningServer


@pytest.fixture(scope="module")
def server(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("gateway-traces")
    with gateway_server(home) as running:
        add_models(
            home,
            {"talker": openai_model("ok-talker", mock.url), "broken": openai_model("always-500", mock.url)},
        )
        yield running


@dataclass
class Calls:
    ok: list[str]  # trace ids of the successful calls, oldest first
    zebra: str  # the call whose prompt mentions zebras, made for user carol in session s-42
    failed: str  # the call to a model whose upstream always answers 500


@pytest.fixture(scope="module")
def calls(server: RunningServer) -> Calls:
    client = sdk(server)
    ok = []
    for text in ("first question", "second question"):
        done = client.chat.completions.with_raw_response.create(
            model="talker", messages=[{"role": "user", "content": text}]
        )
        ok.append(done.headers["x-fmops-trace-id"])
    zebra = client.chat.completions.with_raw_response.create(
        model="talker",
        messages=[{"role": "user", "content": "Tell me about the ZEBRA crossing"}],
        user="carol",
        extra_headers={"x-fmops-session-id": "s-42"},
    )
    ok.append(zebra.headers["x-fmops-trace-id"])
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}])
    failed = caught.value.response.headers["x-fmops-trace-id"]
    for trace_id in [*ok, failed]:
        read_span(server, trace_id)  # written by the background writer: wait until it is
    return Calls(ok=ok, zebra=ok[-1], failed=failed)


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def traces(admin: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = admin.get("/api/traces", params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_search_by_model_lists_summaries_newest_first(admin: httpx.Client, calls: Calls) -> None:
    spans = traces(admin, model="talker")
    assert [s["trace_id"] for s in spans] == calls.ok[::-1]
    for span in spans:
        assert span["model"] == "talker"
        assert span["provider"] == "openai"
        assert span["status"] == "ok"
        assert span["input"] is None  # summaries only, unless asked
        assert span["output"] is None
        assert span["latency_ms"] > 0
    with_io = traces(admin, model="talker", include_io="true")
    assert with_io[0]["input"]["messages"][0]["content"] == "Tell me about the ZEBRA crossing"


def test_search_by_status_finds_the_failed_call(admin: httpx.Client, calls: Calls) -> None:
    (failed,) = traces(admin, status="error")
    assert failed["trace_id"] == calls.failed
    assert failed["model"] == "broken"
    assert failed["status_message"]
    assert {s["trace_id"] for s in traces(admin, status="ok")} == set(calls.ok)


def test_search_by_text_user_and_session(admin: httpx.Client, calls: Calls) -> None:
    assert [s["trace_id"] for s in traces(admin, q="zebra")] == [calls.zebra]  # case-insensitive
    assert [s["trace_id"] for s in traces(admin, q=REPLY.split()[-2])] == calls.ok[::-1]  # in the output
    assert traces(admin, q="no such words anywhere") == []
    assert [s["trace_id"] for s in traces(admin, user="carol")] == [calls.zebra]
    assert [s["trace_id"] for s in traces(admin, session_id="s-42")] == [calls.zebra]
    assert traces(admin, model="talker", status="error") == []


def test_cursor_pages_through_every_span_once(admin: httpx.Client, calls: Calls) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    while True:
        page = admin.get("/api/traces", params=params).json()
        seen += [s["trace_id"] for s in page["data"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [s["trace_id"] for s in traces(admin, limit=500)]
    assert set(seen) >= {*calls.ok, calls.failed}
    assert len(seen) == len(set(seen))


def test_trace_has_its_span_tree_with_full_input_and_output(admin: httpx.Client, calls: Calls) -> None:
    response = admin.get(f"/api/traces/{calls.zebra}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["trace_id"] == calls.zebra
    (root,) = body["spans"]
    assert root["children"] == []
    assert root["parent_span_id"] is None
    assert root["user"] == "carol"
    assert root["input"]["messages"] == [{"role": "user", "content": "Tell me about the ZEBRA crossing"}]
    assert REPLY in orjson.dumps(root["output"]).decode()
    assert root["attributes"]["gen_ai.request.model"] == "talker"
    assert root["input_tokens"] > 0


@pytest.mark.parametrize(
    ("params", "param", "words"),
    [
        ({"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start", "must be before end"),
        ({"min_cost": 2, "max_cost": 1}, "min_cost", "greater than max_cost"),
        ({"cursor": "definitely-not-a-cursor"}, "cursor", "cursor is not valid"),
        ({"limit": 0}, "limit", "limit"),
        ({"limit": 501}, "limit", "limit"),
        ({"status": "broken"}, "status", "status"),
        ({"start": "yesterday"}, "start", "start"),
        ({"min_latency_ms": -1}, "min_latency_ms", "min_latency_ms"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(
    admin: httpx.Client, params: dict[str, Any], param: str, words: str
) -> None:
    response = admin.get("/api/traces", params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert words in error["message"]


def test_unknown_trace_is_404(admin: httpx.Client) -> None:
    response = admin.get(f"/api/traces/{'0' * 32}")
    assert response.status_code == 404
    assert "no trace" in response.json()["error"]["message"]


def new_key(admin: httpx.Client, **body: Any) -> str:
    response = admin.post("/api/keys", json={"name": f"k-{uuid.uuid4().hex[:8]}", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_consumers_may_not_read_traces(server: RunningServer, admin: httpx.Client, calls: Calls) -> None:
    with server.client(new_key(admin, role="consumer")) as consumer:
        for path in ("/api/traces", f"/api/traces/{calls.zebra}"):
            response = consumer.get(path)
            assert response.status_code == 403, response.text
    with server.client(new_key(admin, role="engineer")) as engineer:
        assert engineer.get(f"/api/traces/{calls.zebra}").status_code == 200


def test_another_projects_key_sees_none_of_these_traces(
    server: RunningServer, admin: httpx.Client, calls: Calls
) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/projects", json={"name": other}).status_code == 201
    with server.client(new_key(admin, project=other, role="admin")) as outsider:
        response = outsider.get(f"/api/traces/{calls.zebra}")
        assert response.status_code == 404, response.text
        assert outsider.get("/api/traces").json()["data"] == []


def test_cli_search_json_and_show(server: RunningServer, calls: Calls) -> None:
    # One process runs the commands in order: starting the CLI costs about a second each.
    done, failed, text, shown, as_json = run_session(
        cli_env(server.home),
        [
            ("traces", "search", "--model", "talker", "--since", "1h", "--json"),
            ("traces", "search", "--status", "error", "--json"),
            ("traces", "search", "--q", "zebra", "--user", "carol", "--json"),
            ("traces", "show", calls.zebra),
            ("traces", "show", calls.zebra, "--json"),
        ],
    )
    assert done.code == 0, done.stderr
    rows = orjson.loads(done.stdout)
    assert [r["trace_id"] for r in rows] == calls.ok[::-1]
    assert {r["project"] for r in rows} == {"default"}

    assert [r["trace_id"] for r in orjson.loads(failed.stdout)] == [calls.failed]
    assert [r["trace_id"] for r in orjson.loads(text.stdout)] == [calls.zebra]

    assert shown.code == 0, shown.stderr
    assert calls.zebra in shown.stdout
    assert "user: Tell me about the ZEBRA crossing" in shown.stdout
    assert f"assistant: {REPLY}" in shown.stdout
    assert orjson.loads(as_json.stdout)["spans"][0]["user"] == "carol"


def test_cli_errors_are_one_line(server: RunningServer) -> None:
    missing, bad_since, bad_project = run_session(
        cli_env(server.home),
        [
            ("traces", "show", "f" * 32),
            ("traces", "search", "--since", "soon"),
            ("traces", "search", "--project", "nope"),
        ],
    )
    assert missing.code == 1
    assert "no trace" in missing.stderr
    assert bad_since.code != 0
    assert "not a duration" in bad_since.stderr
    assert bad_project.code == 1
    assert "no project named 'nope'" in bad_project.stderr


def test_cli_tail_prints_new_spans(server: RunningServer, calls: Calls) -> None:
    args = [str(FMOPS), "traces", "tail", "--model", "talker", "--last", "0", "--max-seconds", "20"]
    args += ["--json", "--interval", "0.2"]
    proc = subprocess.Popen(
        args, env=cli_env(server.home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        assert "following new spans" in proc.stderr.readline()  # the first poll is done
        client = sdk(server)
        new = [
            client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "tail me"}]
            ).headers["x-fmops-trace-id"]
            for model in ("talker", "talker")
        ]
        assert proc.stdout is not None
        lines = [orjson.loads(proc.stdout.readline()) for _ in new]  # one JSON object per span
    finally:
        proc.kill()
        proc.wait()
    assert [line["trace_id"] for line in lines] == new  # oldest first, nothing printed twice
    assert not set(calls.ok) & {line["trace_id"] for line in lines}  # --last 0: no history
