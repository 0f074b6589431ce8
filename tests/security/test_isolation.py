"""Issue 7, item 3: another project's keys on this project's objects -> 404, nothing read or changed.

Tenant A (a project whose users belong to it alone) gets one object of every kind the API has:
a trace (OTLP ingest), feedback on it, a job, a model with a provider key, an evaluator, an alert
rule, a prompt with a label, an endpoint, and its users and keys. Tenant B's keys, admin
included, then try to read, change and delete each one by id and by name, find them in every
listing and search, and call A's model and endpoint through the gateway: every try is a 404
(never a 403, which would say the object exists), every listing is blind to A, and afterwards
each of A's objects reads back exactly as before.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from support.otlp import json_body, json_span, span_id, trace_id
from support.security import Tenant, error_of, make_key
from support.server import RunningServer

PROMPT = {
    "name": "iso-prompt",
    "messages": [{"role": "system", "content": "Secret instructions of A for {{ company }}"}],
}


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def _ingest(client: httpx.Client, trace: str, span: str, name: str) -> None:
    body = json_body(json_span(name, {"gen_ai.request.model": "a-app"}, trace=trace, span=span))
    response = client.post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert "partialSuccess" not in response.json(), response.text


def _wait_trace(client: httpx.Client, trace: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (response := client.get(f"/api/traces/{trace}")).status_code == 404:
        assert time.monotonic() < deadline, "the ingested span was never stored"
        time.sleep(0.05)
    return _created(response)


def seed(server: RunningServer, a: Tenant) -> dict[str, Any]:
    """One object of each kind in A; returns their ids and names."""
    s: dict[str, Any] = {"trace": trace_id(), "span": span_id(), "model": "iso-model"}
    with a.client(server, "admin") as admin, a.client(server, "consumer") as consumer:
        _ingest(consumer, s["trace"], s["span"], "a-step")
        _wait_trace(admin, s["trace"])
        feedback = {"trace_id": s["trace"], "kind": "thumbs", "value": True, "comment": "A's private note"}
        s["feedback"] = _created(consumer.post("/api/feedback", json=feedback))["id"]
        job = {"kind": "test.count", "params": {"steps": 1, "step_seconds": 0}}
        s["job"] = _created(admin.post("/api/jobs", json=job))["id"]
        model = {
            "alias": s["model"],
            "provider": "openai",
            "model": "gpt-a",
            "base_url": "https://8.8.8.8/v1",
            "api_key": "sk-iso-" + uuid.uuid4().hex,
        }
        _created(admin.post("/api/models", json=model))
        evaluator = {"name": "a-len", "scorer": "length", "config": {"min": 1}}
        s["evaluator"] = _created(admin.post("/api/evaluators", json=evaluator))["id"]
        alert = {"name": "a-slow", "metric": "latency_p95_ms", "operator": ">", "threshold": 500}
        s["alert"] = _created(admin.post("/api/alerts", json=alert))["id"]
        _created(admin.post("/api/prompts", json={**PROMPT, "model": s["model"], "labels": ["production"]}))
        endpoint = {"name": "iso-endpoint", "prompt": PROMPT["name"], "model": s["model"]}
        _created(admin.post("/api/endpoints", json=endpoint))
        s["key"] = make_key(admin, role="consumer")["id"]
    return s


def probes(s: dict[str, Any], a: Tenant) -> list[tuple[str, str, Any]]:
    """Every call on one of A's objects by id or name (bodies valid, so only the lookup can fail)."""
    t, p, e = s["trace"], PROMPT["name"], "iso-endpoint"
    return [
        ("GET", f"/api/traces/{t}", None),
        ("GET", f"/api/traces/{t}/feedback", None),
        ("POST", "/api/feedback", {"trace_id": t, "kind": "thumbs", "value": False}),
        ("GET", f"/api/jobs/{s['job']}", None),
        ("GET", f"/api/jobs/{s['job']}/logs", None),
        ("POST", f"/api/jobs/{s['job']}/cancel", None),
        ("GET", f"/api/models/{s['model']}", None),
        ("PATCH", f"/api/models/{s['model']}", {"max_retries": 0}),
        ("PATCH", f"/api/models/{s['model']}", {"base_url": "https://8.8.4.4/v1", "api_key": "sk-b"}),
        ("DELETE", f"/api/models/{s['model']}", None),
        ("GET", f"/v1/models/{s['model']}", None),
        (
            "POST",
            "/v1/chat/completions",
            {"model": s["model"], "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("POST", "/v1/chat/completions", {"model": e, "messages": [{"role": "user", "content": "hi"}]}),
        ("GET", f"/api/evaluators/{s['evaluator']}", None),
        ("PATCH", f"/api/evaluators/{s['evaluator']}", {"enabled": False}),
        ("DELETE", f"/api/evaluators/{s['evaluator']}", None),
        ("GET", f"/api/alerts/{s['alert']}", None),
        ("PATCH", f"/api/alerts/{s['alert']}", {"threshold": 1}),
        ("POST", f"/api/alerts/{s['alert']}/evaluate", None),
        ("DELETE", f"/api/alerts/{s['alert']}", None),
        ("GET", f"/api/prompts/{p}", None),
        ("GET", f"/api/prompts/{p}/versions", None),
        ("GET", f"/api/prompts/{p}/diff?a=1&b=1", None),
        ("POST", f"/api/prompts/{p}/render", {"variables": {"company": "B"}}),
        ("PUT", f"/api/prompts/{p}/labels/staging", {"version": 1}),
        ("DELETE", f"/api/prompts/{p}/labels/production", None),
        ("DELETE", f"/api/prompts/{p}", None),
        ("GET", f"/api/export/prompts?name={p}", None),
        ("GET", f"/api/endpoints/{e}", None),
        ("PATCH", f"/api/endpoints/{e}", {"description": "taken over"}),
        ("PUT", f"/api/endpoints/{e}/weights", {"weights": {"a": 1.0}}),
        ("GET", f"/api/endpoints/{e}/events", None),
        ("GET", f"/api/endpoints/{e}/experiment", None),
        ("POST", f"/api/endpoints/{e}/promote", {"variant": "a"}),
        ("DELETE", f"/api/endpoints/{e}", None),
        ("DELETE", f"/api/keys/{s['key']}", None),
        ("PATCH", f"/api/keys/{s['key']}/limits", {"rpm_limit": 1}),
        ("GET", f"/api/projects/{a.project_id}", None),
        ("PATCH", f"/api/users/{a.users['engineer']}", {"role": "consumer"}),
        ("DELETE", f"/api/users/{a.users['consumer']}", None),
        # SQL fragments where an id goes: a 404 like any unknown id.
        ("GET", "/api/jobs/" + quote("' OR '1'='1"), None),
        ("GET", "/api/traces/" + quote("x' OR 1=1 --"), None),
        ("GET", "/api/models/" + quote("iso-model' OR 'a'='a"), None),
    ]


LISTINGS = [
    "/api/traces?limit=500",
    "/api/traces?model=a-app&limit=500",
    "/api/traces?q=a-step",
    "/api/jobs",
    "/api/models",
    "/v1/models",
    "/api/evaluators",
    "/api/alerts",
    "/api/alerts/events",
    "/api/prompts",
    "/api/export/prompts",
    "/api/endpoints",
    "/api/keys",
    "/api/projects",
    "/api/stats/breakdown?by=model",
]
ADMIN_LISTINGS = ["/api/keys?all=true", "/api/users"]


def admin_only(path: str) -> bool:
    """Probes an engineer of B is refused by role (403) before any lookup."""
    return path.startswith("/api/users/") or path.endswith("/limits")


def snapshot(server: RunningServer, a: Tenant, s: dict[str, Any]) -> dict[str, Any]:
    """What A's own keys read of A's objects (volatile fields left out)."""
    reads = [
        f"/api/traces/{s['trace']}",
        f"/api/traces/{s['trace']}/feedback",
        f"/api/models/{s['model']}",
        f"/api/evaluators/{s['evaluator']}",
        f"/api/alerts/{s['alert']}",
        f"/api/prompts/{PROMPT['name']}?label=production",
        "/api/endpoints/iso-endpoint",
        "/api/users",
    ]
    with a.client(server, "admin") as admin:
        state = {path: _created(admin.get(path)) for path in reads}
        job = _created(admin.get(f"/api/jobs/{s['job']}"))
        state["job"] = (job["id"], job["status"], job["params"], job["cancel_requested"])
        keys = _created(admin.get("/api/keys", params={"all": True}))
        state["keys"] = sorted((k["id"], k["revoked_at"], k["rpm_limit"]) for k in keys)
        state["project"] = _created(admin.get(f"/api/projects/{a.project_id}"))
    return state


def test_other_projects_see_and_touch_nothing(
    secured: RunningServer, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    s = seed(secured, tenant_a)
    before = snapshot(secured, tenant_a, s)
    a_ids = {str(v) for v in (s["trace"], s["feedback"], s["job"], s["evaluator"], s["alert"], s["key"])}
    a_names = {s["model"], PROMPT["name"], "iso-endpoint", "a-len", "a-slow", tenant_a.name, "a-step"}
    a_names |= {f"alpha-{role}" for role in ("admin", "engineer", "consumer")}

    # Listings first: B's own failed calls below are B's traces, and name what B asked for.
    for role in ("admin", "engineer", "consumer"):
        with tenant_b.client(secured, role) as b:
            for path in LISTINGS + (ADMIN_LISTINGS if role == "admin" else []):
                response = b.get(path)
                if response.status_code == 403:
                    assert role != "admin", path
                    continue
                assert response.status_code == 200, (path, response.text)
                leaked = sorted(x for x in a_ids | a_names if x in response.text)
                assert leaked == [], (role, path, leaked)
    tried = 0
    with tenant_b.client(secured, "admin") as b:
        for method, path, body in probes(s, tenant_a):
            error_of(b.request(method, path, json=body), 404)
            tried += 1
    with tenant_b.client(secured, "engineer") as b:
        for method, path, body in filter(lambda probe: admin_only(probe[1]), probes(s, tenant_a)):
            error_of(b.request(method, path, json=body), 403)  # the role gate answers first, for any id
            tried += 1
    assert tried > 45

    after = snapshot(secured, tenant_a, s)
    assert after == before, "B's refused calls changed A's objects"


def test_same_names_live_apart(secured: RunningServer, tenant_a: Tenant, tenant_b: Tenant) -> None:
    # B may use the names A uses: each project has its own namespace, and neither sees the other's.
    with tenant_b.client(secured, "admin") as b, tenant_a.client(secured, "admin") as a:
        spec = {"alias": "twin", "provider": "openai", "model": "m", "base_url": "https://8.8.8.8/v1"}
        assert a.post("/api/models", json=spec).status_code == 201
        assert b.post("/api/models", json={**spec, "model": "b-model"}).status_code == 201
        assert a.get("/api/models/twin").json()["model"] == "m"
        assert b.get("/api/models/twin").json()["model"] == "b-model"
        assert b.delete("/api/models/twin").status_code == 204
        assert a.get("/api/models/twin").status_code == 200


def test_ingest_cannot_overwrite_another_projects_span(
    secured: RunningServer, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    trace, span = trace_id(), span_id()
    with tenant_a.client(secured, "consumer") as a_consumer, tenant_a.client(secured, "admin") as a:
        _ingest(a_consumer, trace, span, "original")
        assert _wait_trace(a, trace)["spans"][0]["name"] == "original"
        with tenant_b.client(secured, "consumer") as b:
            _ingest(b, trace, span, "forged")  # the same ids, from B: stored in B, nowhere in A
        with tenant_b.client(secured, "admin") as b_admin:
            shown = _wait_trace(b_admin, trace)
        assert _wait_trace(a, trace)["spans"][0]["name"] == "original"
    # B sees its own span under the shared ids, never A's.
    assert [s["name"] for s in shown["spans"]] == ["forged"], shown


@pytest.mark.parametrize("secured", ["sqlite"], indirect=True)  # the same primary key on both
def test_ingest_of_another_project_first_does_not_drop_this_projects_span(
    secured: RunningServer, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    trace, span = trace_id(), span_id()
    with tenant_b.client(secured, "consumer") as b:
        _ingest(b, trace, span, "squatted")
    time.sleep(0.5)
    with tenant_a.client(secured, "consumer") as a_consumer, tenant_a.client(secured, "admin") as a:
        _ingest(a_consumer, trace, span, "mine")
        deadline = time.monotonic() + 1.5
        while (got := a.get(f"/api/traces/{trace}")).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got.status_code == 200, "A's span was dropped because B stored one with its id first"
