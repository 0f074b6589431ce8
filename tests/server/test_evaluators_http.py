"""Online evaluators on a real server, on both backends: rules over HTTP, calls through the official
SDK, scores read back from the trace; the LLM judge runs in a job worker against the mock upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from fmops.evaluators.sampling import sampled
from support.databases import postgres_database
from support.gateway import add_models, gateway_server, openai_model, sdk, wait_for
from support.mock_upstream import REPLY, MockUpstream
from support.server import RunningServer

MESSAGES: Any = [{"role": "user", "content": "Reply with a JSON object."}]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp(f"evaluators-{request.param}")
    models = {
        alias: openai_model(f"upstream-{alias}", mock.url)
        for alias in ("talker", "sampled", "judged", "grader", "isolated")
    }
    env = {"FMOPS_WORKERS": "1"}  # the judge runs as a job
    if request.param == "sqlite":
        with gateway_server(home, env) as running:
            add_models(home, models)
            yield running
    else:
        with postgres_database() as url, gateway_server(home, {**env, "FMOPS_DATABASE_URL": url}) as running:
            (home / "fmops.toml").write_text(f'database_url = "{url}"\n')  # for `fmops models add`
            add_models(home, models)
            yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def create_rule(admin: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = admin.post("/api/evaluators", json=body)
    assert resp.status_code == 201, resp.text
    rule: dict[str, Any] = resp.json()
    return rule


def control(mock: MockUpstream, action: str, body: Any = None) -> None:
    """Script or reset the mock upstream (shared by both backends' servers)."""
    httpx.post(mock.url.removesuffix("/v1") + f"/_control/{action}", json=body).raise_for_status()


def call(
    server: RunningServer, model: str, reply: str | None = None, mock: MockUpstream | None = None
) -> str:
    """One chat call through the official SDK; returns its trace id."""
    if reply is not None:
        assert mock is not None
        control(mock, "script", {"reply": reply})
    with sdk(server) as client:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    trace_id: str = raw.headers["x-fmops-trace-id"]
    return trace_id


def scores_of(admin: httpx.Client, trace_id: str, name: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The trace's scores named `name`, once there is at least one."""
    deadline = time.monotonic() + timeout
    while True:
        resp = admin.get(f"/api/traces/{trace_id}/feedback")
        if resp.status_code == 200:
            found = [s for s in resp.json() if s["name"] == name]
            if found:
                return found
        else:
            assert resp.status_code == 404, resp.text  # the span is still in the writer's queue
        assert time.monotonic() < deadline, f"no {name!r} score on trace {trace_id} after {timeout}s"
        time.sleep(0.05)


def test_a_json_rule_scores_live_calls(
    server: RunningServer, admin: httpx.Client, mock: MockUpstream
) -> None:
    rule = create_rule(admin, name="is-json", scorer="json", model="talker")
    assert (rule["scorer"], rule["model"], rule["sample_rate"], rule["enabled"]) == (
        "json",
        "talker",
        1.0,
        True,
    )
    plain, valid = call(server, "talker"), call(server, "talker", '{"ok": true}', mock)

    [bad] = scores_of(admin, plain, "is-json")
    assert (bad["kind"], bad["value"], bad["label"], bad["source"], bad["author"]) == (
        "number",
        0.0,
        "fail",
        "evaluator",
        "is-json",
    )
    assert bad["comment"].startswith("not valid JSON")
    [good] = scores_of(admin, valid, "is-json")
    assert (good["value"], good["label"], good["comment"]) == (1.0, "pass", None)


def test_sample_rate_picks_the_traces_the_hash_says(server: RunningServer, admin: httpx.Client) -> None:
    create_rule(admin, name="every", scorer="length", model="sampled", config={"min": 1})
    create_rule(
        admin, name="half", scorer="contains", model="sampled", config={"strings": ["mock"]}, sample_rate=0.5
    )
    traces = [call(server, "sampled") for _ in range(16)]
    for trace_id in traces:
        # "every" and "half" are scored in the same round: once "every" is there, "half" is decided.
        scores_of(admin, trace_id, "every")
    picked = {
        t for t in traces if any(s["name"] == "half" for s in admin.get(f"/api/traces/{t}/feedback").json())
    }
    assert picked == {t for t in traces if sampled(t, 0.5)}
    assert 0 < len(picked) < len(traces)  # 16 calls at 50%: all or none would be a 1-in-32,768 fluke


def test_an_llm_judge_runs_as_a_job_and_its_reason_lands(
    server: RunningServer, admin: httpx.Client, mock: MockUpstream
) -> None:
    control(mock, "reset")
    rubric = "Is the answer polite?"
    rule = create_rule(
        admin,
        name="polite",
        scorer="judge",
        model="judged",
        config={"model": "grader", "rubric": rubric, "pass_threshold": 4},
    )
    assert rule["config"]["max_score"] == 5
    trace_id = call(server, "judged")
    verdict = orjson.dumps({"score": 4, "reason": "Friendly and on topic."}).decode()
    control(mock, "script", {"reply": verdict})

    [score] = scores_of(admin, trace_id, "polite", timeout=30)
    assert (score["value"], score["label"], score["comment"], score["source"]) == (
        0.75,
        "pass",
        "Friendly and on topic.",
        "evaluator",
    )

    def judge_jobs() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = admin.get("/api/jobs", params={"kind": "evaluator.judge"}).json()[
            "data"
        ]
        return found

    # The score is written before the job records its end.
    assert wait_for(lambda: [j["status"] for j in judge_jobs()] == ["succeeded"], timeout=10)
    jobs = judge_jobs()
    assert jobs[0]["result"]["scored"] == 1
    # The judge was called through the gateway: with the rubric, the output and the forced JSON shape...
    judge_calls = [r["body"] for r in mock.state.requests if r["body"].get("model") == "upstream-grader"]
    assert len(judge_calls) == 1
    assert rubric in judge_calls[0]["messages"][0]["content"]
    assert REPLY in judge_calls[0]["messages"][1]["content"]
    assert judge_calls[0]["response_format"]["type"] == "json_schema"
    # ...traced like any call, marked as the evaluator's, and never evaluated itself.
    spans = admin.get("/api/traces", params={"model": "grader"}).json()["data"]
    assert len(spans) == 1
    judge_trace = admin.get(f"/api/traces/{spans[0]['trace_id']}").json()["spans"][0]
    assert judge_trace["attributes"]["fmops.evaluator"] == "polite"
    assert judge_trace["attributes"]["fmops.evaluated_trace_id"] == trace_id
    assert admin.get(f"/api/traces/{spans[0]['trace_id']}/feedback").json() == []


def test_rules_can_be_read_changed_and_deleted(server: RunningServer, admin: httpx.Client) -> None:
    rule = create_rule(
        admin, name="brief", scorer="length", config={"max": 3, "unit": "words"}, model="isolated"
    )
    assert rule["config"] == {"min": None, "max": 3, "unit": "words"}
    assert admin.get(f"/api/evaluators/{rule['id']}").json() == rule
    assert rule["id"] in [r["id"] for r in admin.get("/api/evaluators").json()]

    resp = admin.patch(f"/api/evaluators/{rule['id']}", json={"enabled": False, "sample_rate": 0.2})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["enabled"], resp.json()["sample_rate"], resp.json()["config"]) == (
        False,
        0.2,
        rule["config"],
    )
    # Disabled at once: this call is not scored (checked below, once a later call is). A rule applies
    # when a span is committed, so wait for that before switching it on again.
    quiet = call(server, "isolated")
    assert wait_for(lambda: admin.get(f"/api/traces/{quiet}").status_code == 200)
    assert (
        admin.patch(f"/api/evaluators/{rule['id']}", json={"enabled": True, "sample_rate": 1}).status_code
        == 200
    )
    scored = call(server, "isolated")
    [score] = scores_of(admin, scored, "brief")
    assert score["comment"] == f"{len(REPLY.split())} words, more than the maximum of 3"
    assert [s for s in admin.get(f"/api/traces/{quiet}/feedback").json() if s["name"] == "brief"] == []

    assert admin.delete(f"/api/evaluators/{rule['id']}").status_code == 200
    assert admin.get(f"/api/evaluators/{rule['id']}").status_code == 404


def test_scorers_are_listed_with_their_config_schema(admin: httpx.Client) -> None:
    resp = admin.get("/api/scorers")
    assert resp.status_code == 200, resp.text
    found = {s["name"]: s for s in resp.json()}
    assert {"json", "json_schema", "regex", "length", "contains", "judge"} <= set(found)
    assert found["judge"]["runs_as"] == "job"
    assert found["regex"]["runs_as"] == "inline"
    assert "pattern" in found["regex"]["config_schema"]["required"]
    assert found["judge"]["config_schema"]["properties"]["rubric"]["type"] == "string"


def test_scorers_say_what_they_need_and_where_they_can_be_used(admin: httpx.Client) -> None:
    found = {s["name"]: s for s in admin.get("/api/scorers").json()}
    flags = ("needs_model", "needs_expected", "aggregates", "slow", "needs_record")
    assert {f: found["regex"][f] for f in flags} == dict.fromkeys(flags, False)
    assert found["regex"]["usable_in"] == {"suite": True, "online_evaluator": True, "guardrail": True}
    assert found["exact_match"]["needs_expected"] is True
    assert found["exact_match"]["usable_in"] == {"suite": True, "online_evaluator": False, "guardrail": False}
    assert found["judge"]["needs_model"] is True
    assert found["judge"]["usable_in"]["guardrail"] is False
    assert found["judge"]["usable_in"]["online_evaluator"] is True
    assert found["classification"]["aggregates"] is True
    assert found["bleu"]["aggregates"] is True
    assert found["embedding_similarity"]["slow"] is True
    assert found["latency"]["needs_record"] is True
    assert found["latency"]["usable_in"]["guardrail"] is False
    assert found["exact_match"]["description"]


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"name": "x", "scorer": "meteor"}, "scorer", "known scorers: all_of, any_of, bleu, chrf"),
        (
            {"name": "x", "scorer": "regex", "config": {"pattern": "(("}},
            "config.pattern",
            "regular expression",
        ),
        ({"name": "x", "scorer": "regex"}, "config.pattern", "Field required"),
        (
            {"name": "x", "scorer": "json_schema", "config": {"schema": {"type": "nope"}}},
            "config.schema",
            "Schema",
        ),
        (
            {"name": "x", "scorer": "judge", "config": {"model": "nope", "rubric": "r"}},
            "config.model",
            "'nope'",
        ),
        ({"name": "x", "scorer": "json", "sample_rate": 0}, None, "sample_rate"),
        ({"name": "x", "scorer": "json", "sample_rate": 1.5}, None, "sample_rate"),
        ({"name": "x", "scorer": "json", "sample_rate": "0.5"}, None, "sample_rate"),
        ({"name": "x y", "scorer": "json"}, None, "name"),
        ({"name": "x", "scorer": "json", "filter": {}}, None, "filter"),
    ],
)
def test_bad_rules_are_400s_that_say_what_to_fix(
    admin: httpx.Client, body: dict[str, Any], param: str | None, fragment: str
) -> None:
    resp = admin.post("/api/evaluators", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert fragment in error["message"]
    if param is not None:
        assert error["param"] == param


def test_conflicts_missing_rules_other_projects_and_roles(server: RunningServer, admin: httpx.Client) -> None:
    rule = create_rule(admin, name="dup", scorer="json", enabled=False)
    assert admin.post("/api/evaluators", json={"name": "dup", "scorer": "json"}).status_code == 409
    assert admin.patch(f"/api/evaluators/{rule['id']}", json={"name": None}).status_code == 400
    assert admin.patch(f"/api/evaluators/{rule['id']}", json={"config": {"nope": 1}}).status_code == 400
    for method in ("GET", "PATCH", "DELETE"):
        resp = admin.request(
            method, "/api/evaluators/0123456789abcdef", json={} if method == "PATCH" else None
        )
        assert resp.status_code == 404, (method, resp.text)

    project = f"other-{rule['id'][-6:]}"
    assert admin.post("/api/projects", json={"name": project}).status_code == 201
    outsider = admin.post("/api/keys", json={"name": "outsider", "project": project}).json()["key"]
    consumer = admin.post("/api/keys", json={"name": "consumer", "role": "consumer"}).json()["key"]
    with server.client(outsider) as theirs:
        assert theirs.get(f"/api/evaluators/{rule['id']}").status_code == 404
        assert theirs.delete(f"/api/evaluators/{rule['id']}").status_code == 404
        assert rule["id"] not in [r["id"] for r in theirs.get("/api/evaluators").json()]
    with server.client(consumer) as mine:
        assert mine.get("/api/evaluators").status_code == 403
        assert mine.post("/api/evaluators", json={"name": "c", "scorer": "json"}).status_code == 403
    assert admin.get(f"/api/evaluators/{rule['id']}").status_code == 200


def test_metrics_show_the_evaluator_queue(admin: httpx.Client) -> None:
    text = admin.get("/metrics").text
    assert "fmops_evaluator_queue_depth" in text
    assert "fmops_evaluator_shed_total 0.0" in text
