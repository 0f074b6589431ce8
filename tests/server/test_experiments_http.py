"""An A/B experiment over HTTP on both backends: calls through the official SDK split over two
variants, thumbs through the feedback API, the report read back, the winner promoted (its label
moved, the variants gone, the event kept), then served; the playground over HTTP; and the same
through the real `fmops` CLI (`endpoints experiment|promote`, `prompts try`) on the same server,
which saves starting one more server per backend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from support.cli_runs import run_session
from support.databases import postgres_database
from support.endpoint_specs import PROMPT, V2, VARIABLES
from support.gateway import cli_env, gateway_server, sdk
from support.mock_upstream import REPLY, MockUpstream
from support.server import RunningServer


@dataclass
class Deployment:
    server: RunningServer
    mock: MockUpstream
    consumer_key: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(
    request: pytest.FixtureRequest, mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp(f"experiments-{request.param}")
    env = {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}  # the mock upstream listens on 127.0.0.1
    if request.param == "sqlite":
        with gateway_server(home, env) as running:
            yield deployed(running, mock)
    else:
        with postgres_database() as url, gateway_server(home, {**env, "FMOPS_DATABASE_URL": url}) as running:
            (home / "fmops.toml").write_text(f'database_url = "{url}"\n')  # for the CLI
            yield deployed(running, mock)


def deployed(server: RunningServer, mock: MockUpstream) -> Deployment:
    """Models `small` and `other`, prompt `support` v1 (production) and v2."""
    with server.client() as admin:
        for alias in ("small", "other"):
            model = {"alias": alias, "provider": "openai", "model": f"up-{alias}", "base_url": mock.url}
            assert admin.post("/api/models", json=model).status_code == 201
        assert admin.post("/api/prompts", json=PROMPT).status_code == 201
        assert admin.post("/api/prompts", json={**PROMPT, "messages": V2, "labels": []}).status_code == 201
        key = admin.post("/api/keys", json={"name": "app", "role": "consumer"}).json()["key"]
    return Deployment(server, mock, key)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()["error"]
    return body


def test_an_experiment_is_reported_and_its_winner_promoted(deployment: Deployment) -> None:
    d = deployment
    admin = d.server.client()
    ok(
        admin.post(
            "/api/endpoints",
            json={
                "name": "bot",
                "prompt": "support",
                "variants": [{"name": "a"}, {"name": "b", "version": 2, "model": "other"}],
            },
        ),
        201,
    )
    # 24 users, each assigned a variant for good; b's answers are liked, a's are not.
    served: dict[str, list[str]] = {"a": [], "b": []}
    with sdk(d.server) as client:
        for i in range(24):
            raw = client.chat.completions.with_raw_response.create(
                model="bot", messages=[], user=f"user-{i}", extra_body={"variables": VARIABLES}
            )
            trace_id = raw.headers["x-fmops-trace-id"]
            sent = d.mock.state.requests[-1]["body"]
            served["b" if sent["model"] == "up-other" else "a"].append(trace_id)
    assert all(served.values()), served  # 24 users: both variants got some (all but surely)
    for variant, traces in served.items():
        for trace_id in traces:
            thumbs = {"trace_id": trace_id, "kind": "thumbs", "value": 1 if variant == "b" else -1}
            ok(admin.post("/api/feedback", json=thumbs), 201)

    report = ok(admin.get("/api/endpoints/bot/experiment"))

    a, b = report["variants"]
    assert (report["control"], a["name"], b["name"]) == ("a", "a", "b")
    assert (a["calls"], b["calls"]) == (len(served["a"]), len(served["b"]))
    assert (a["positive_feedback"]["successes"], a["positive_feedback"]["n"]) == (0, len(served["a"]))
    assert (b["positive_feedback"]["successes"], b["positive_feedback"]["n"]) == (len(served["b"]),) * 2
    assert a["error_rate"]["value"] == 0.0
    assert a["latency_ms"]["n"] == len(served["a"])
    assert (
        a["latency_ms"]["interval"] is None or a["latency_ms"]["interval"]["low"] <= a["latency_ms"]["value"]
    )
    feedback = next(c for c in report["comparisons"] if c["metric"] == "positive_feedback")
    assert feedback["significant"] is True
    assert feedback["better"] is True
    assert report["winner"] == "b"
    # Both variants call the same mock, so their latencies differ only by chance (and by the machine's
    # load): the verdict may name a latency difference between the winner and its feedback line.
    verdict = report["verdict"]
    assert verdict.startswith("b wins on positive-feedback rate; "), verdict
    assert "b has a higher positive-feedback rate than a (p=" in verdict, verdict

    # Bad input, and who may do what.
    assert error(admin.post("/api/endpoints/bot/promote", json={"variant": "c"}), 400)["param"] == "variant"
    assert error(admin.get("/api/endpoints/nope/experiment"), 404)["param"] == "endpoint"
    consumer = d.server.client(d.consumer_key)
    assert error(consumer.get("/api/endpoints/bot/experiment"), 403)["code"] == "insufficient_role"
    assert error(consumer.post("/api/endpoints/bot/promote", json={"variant": "b"}), 403)

    promoted = ok(admin.post("/api/endpoints/bot/promote", json={"variant": "b", "note": "liked more"}))

    assert (promoted["variants"], promoted["model"], promoted["label"]) == ([], "other", "production")
    assert promoted["experiment_started_at"] is None
    assert ok(admin.get("/api/prompts/support", params={"label": "production"}))["version"] == 2
    event = ok(admin.get("/api/endpoints/bot/events"))[0]
    assert (event["kind"], event["detail"]["variant"], event["detail"]["note"]) == (
        "promoted",
        "b",
        "liked more",
    )
    assert event["detail"]["report"]["winner"] == "b"
    assert event["detail"]["label_moved_to"] == 2
    assert error(admin.get("/api/endpoints/bot/experiment"), 409)["code"] == "conflict"

    # Served at once: the winner's prompt version on the winner's model, for every user.
    with sdk(d.server, d.consumer_key) as client:
        client.chat.completions.create(
            model="bot", messages=[], user="user-0", extra_body={"variables": VARIABLES}
        )
    sent = d.mock.state.requests[-1]["body"]
    assert (sent["model"], sent["messages"][0]["content"]) == ("up-other", "You answer for Acme in one word.")


def test_the_playground_over_http(deployment: Deployment) -> None:
    d = deployment
    admin = d.server.client()
    body = {
        "inputs": [{"variables": VARIABLES}],
        "targets": [
            {"prompt": "support", "version": 1},
            {"prompt": "support", "version": 2, "model": "other"},
        ],
    }

    result = ok(admin.post("/api/playground", json=body))

    assert [(t["version"], t["model"]) for t in result["targets"]] == [(1, "small"), (2, "other")]
    assert [(c["input"], c["target"], c["output"], c["error"]) for c in result["cells"]] == [
        (0, 0, REPLY, None),
        (0, 1, REPLY, None),
    ]
    assert all(c["trace_id"] and c["output_tokens"] for c in result["cells"])

    bad = {"inputs": [{}], "targets": [{"prompt": "support"}, {"prompt": "gone"}]}
    refused = error(admin.post("/api/playground", json=bad), 400)
    assert (refused["param"], refused["message"].split(":")[0]) == ("targets.1.prompt", "targets.1.prompt")
    too_big = {"inputs": [{}] * 20, "targets": [{"model": "small"}] * 3}
    assert "60 cells" in error(admin.post("/api/playground", json=too_big), 400)["message"]
    consumer = d.server.client(d.consumer_key)
    assert error(consumer.post("/api/playground", json=body), 403)["code"] == "insufficient_role"


def run_cli(server: RunningServer, *commands: Sequence[str]) -> list[dict[str, Any]]:
    """`fmops` commands run in order on the server's home (its database and admin key)."""
    env = {**cli_env(server.home), "COLUMNS": "200"}
    return [vars(outcome) for outcome in run_session(env, commands)]


# The CLI's own code does not depend on the backend (the SQL it runs is covered on both above and
# in tests/endpoints), and each session costs seconds of imports: SQLite only.
@pytest.mark.parametrize("deployment", ["sqlite"], indirect=True)
def test_the_cli(deployment: Deployment, tmp_path: Any) -> None:
    d = deployment
    admin = d.server.client()
    variants = [{"name": "a"}, {"name": "b", "model": "other", "params": {"temperature": 0}}]
    ok(admin.post("/api/endpoints", json={"name": "cli-bot", "prompt": "support", "variants": variants}), 201)
    with sdk(d.server) as client:
        for i in range(6):
            client.chat.completions.create(
                model="cli-bot", messages=[], user=f"cli-{i}", extra_body={"variables": VARIABLES}
            )
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"question": "Open on Sunday?"}\n{"question": "Where are you?"}\n')
    try_args = ["prompts", "try", "support", "-v", "1", "-v", "2", "--model", "small", "--model", "other"]
    try_args += ["--var", "company=Acme", "--vars-file", str(inputs), "--url", d.server.url]

    as_json, table, tried, tried_table, promoted, again, no_server = run_cli(
        d.server,
        ["endpoints", "experiment", "cli-bot", "--json"],
        ["endpoints", "experiment", "cli-bot"],
        [*try_args, "--json"],
        try_args,
        ["endpoints", "promote", "cli-bot", "b", "--note", "from the CLI"],
        ["endpoints", "promote", "cli-bot", "b"],
        ["prompts", "try", "support", "--url", "http://127.0.0.1:9"],
    )

    for run in (as_json, table, tried, tried_table, promoted):
        assert run["code"] == 0, run
    report = orjson.loads(as_json["stdout"])
    assert [v["name"] for v in report["variants"]] == ["a", "b"]
    assert sum(v["calls"] for v in report["variants"]) == 6
    assert "no significant difference" in report["verdict"]
    assert "a (control)" in table["stdout"]
    assert "verdict:" in table["stdout"]
    grid = orjson.loads(tried["stdout"])
    assert [(t["version"], t["model"]) for t in grid["targets"]] == [
        (1, "small"),
        (1, "other"),
        (2, "small"),
        (2, "other"),
    ]
    assert len(grid["cells"]) == 8
    assert {c["output"] for c in grid["cells"]} == {REPLY}
    assert "v2 · other" in tried_table["stdout"]
    assert "question=Where are you?" in tried_table["stdout"]

    assert "promoted variant b of cli-bot" in promoted["stdout"]
    after = ok(admin.get("/api/endpoints/cli-bot"))
    assert (after["variants"], after["model"], after["params"]) == ([], "other", {"temperature": 0})
    # Mistakes are one line on stderr and a non-zero exit, never a traceback.
    assert again["code"] == 1
    assert "runs no experiment" in again["stderr"]
    assert no_server["code"] == 1
    assert "cannot reach the server" in no_server["stderr"]
