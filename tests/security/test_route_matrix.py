"""Issue 7, item 2: the route x role matrix from the live /openapi.json matches the written policy.

POLICY below is the policy, written down once from DESIGN.md's roles: a new route fails this test
until someone decides who may call it. The matrix is then enforced with a real key of each role:
below the route's role -> 403 naming the role (before any lookup, so a 403 never tells whether an
object exists), at or above it -> neither 401 nor 403 nor 5xx; no key -> 401 everywhere except the
health checks. Keys never exceed their creator's rights: role, project, limits and lifetime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from support.security import (
    PUBLIC,
    RANK,
    ROLES,
    Tenant,
    error_of,
    make_key,
    raw_request,
    routes,
)
from support.server import RunningServer

C, N, E, A = "consumer", "annotator", "engineer", "admin"

POLICY: dict[str, str | None] = {
    "GET /healthz": None,
    "GET /readyz": None,
    "GET /api/me": C,
    # projects: members see their own; creating and changing them is an admin's
    "GET /api/projects": C,
    "POST /api/projects": A,
    "GET /api/projects/{project_id}": C,
    "PATCH /api/projects/current": A,  # retention
    "PATCH /api/projects/current/limits": A,  # budgets
    "GET /api/users": A,
    "POST /api/users": A,
    "PATCH /api/users/{user_id}": A,
    "DELETE /api/users/{user_id}": A,
    "PUT /api/users/{user_id}/password": A,
    # keys: everyone manages their own (the service caps what they may create); limits are an admin's
    "GET /api/keys": C,
    "POST /api/keys": C,
    "DELETE /api/keys/{key_id}": C,
    "PATCH /api/keys/{key_id}/limits": A,
    "GET /api/jobs/kinds": E,
    "POST /api/jobs": E,
    "GET /api/jobs": E,
    "GET /api/jobs/{job_id}": E,
    "GET /api/jobs/{job_id}/logs": E,
    "POST /api/jobs/{job_id}/cancel": E,
    # traces hold every user's inputs and outputs: engineers only
    "GET /api/traces": E,
    "GET /api/traces/{trace_id}": E,
    "GET /api/traces/{trace_id}/feedback": E,
    "POST /api/feedback": C,
    # chat conversations: each user's own (another's is a 404, whatever the role)
    "GET /api/conversations": C,
    "GET /api/conversations/{conversation_id}/messages": C,
    "GET /api/conversations/{conversation_id}/export": C,
    "POST /api/conversations/{conversation_id}/messages/{message_id}/regenerate": C,
    "POST /api/conversations/{conversation_id}/messages/{message_id}/edit": C,
    # models: consumers see what they may call (never credentials); engineers register them
    "GET /api/models": C,
    "POST /api/models": E,
    "GET /api/models/{alias}": C,
    "GET /api/models/{alias}/loop": E,  # lineage: dataset versions, traces' filters, experiments
    "PATCH /api/models/{alias}": E,
    "DELETE /api/models/{alias}": E,
    # the OpenAI-compatible gateway and OTLP ingest: any key
    "POST /v1/chat/completions": C,
    "POST /v1/embeddings": C,
    "GET /v1/models": C,
    "GET /v1/models/{model_id}": C,
    "POST /v1/traces": C,
    "GET /metrics": E,
    "GET /api/stats/timeseries": E,
    "GET /api/stats/breakdown": E,
    "GET /api/alerts": E,
    "POST /api/alerts": E,
    "GET /api/alerts/events": E,
    "GET /api/alerts/{rule_id}": E,
    "PATCH /api/alerts/{rule_id}": E,
    "DELETE /api/alerts/{rule_id}": E,
    "POST /api/alerts/{rule_id}/evaluate": E,
    "GET /api/scorers": E,
    "GET /api/evaluators": E,
    "POST /api/evaluators": E,
    "GET /api/evaluators/{rule_id}": E,
    "PATCH /api/evaluators/{rule_id}": E,
    "DELETE /api/evaluators/{rule_id}": E,
    # prompts: consumers read and render them; engineers write them
    "GET /api/prompts": C,
    "POST /api/prompts": E,
    "GET /api/export/prompts": C,
    "GET /api/prompts/{name}": C,
    "DELETE /api/prompts/{name}": E,
    "GET /api/prompts/{name}/versions": C,
    "GET /api/prompts/{name}/diff": C,
    "PUT /api/prompts/{name}/labels/{label}": E,
    "DELETE /api/prompts/{name}/labels/{label}": E,
    "POST /api/prompts/{name}/render": C,
    # tailoring: everyone keeps their own instructions and saved prompts; engineers promote shared ones
    "GET /api/me/instructions": C,
    "PUT /api/me/instructions": C,
    "DELETE /api/me/instructions": C,
    "GET /api/me/prompts": C,
    "POST /api/me/prompts": C,
    "GET /api/me/prompts/{name}": C,
    "DELETE /api/me/prompts/{name}": C,
    "PUT /api/me/prompts/{name}/shared": C,
    "POST /api/me/prompts/{name}/fill": C,
    "GET /api/shared-prompts": C,
    "GET /api/shared-prompts/{prompt_id}": C,
    "POST /api/shared-prompts/{prompt_id}/promote": E,
    # endpoints: consumers see (enabled) ones; engineers build, weigh and promote them
    "GET /api/endpoints": C,
    "POST /api/endpoints": E,
    "GET /api/endpoints/{name}": C,
    "PATCH /api/endpoints/{name}": E,
    "DELETE /api/endpoints/{name}": E,
    "PUT /api/endpoints/{name}/weights": E,
    "GET /api/endpoints/{name}/events": E,
    "GET /api/endpoints/{name}/experiment": E,
    "POST /api/endpoints/{name}/promote": E,
    # assistants: everyone reads those they may use; engineers publish them and read their usage
    "GET /api/assistants": C,
    "GET /api/assistants/{name}": C,
    "PUT /api/assistants/{name}": E,
    "DELETE /api/assistants/{name}": E,
    "GET /api/assistants/{name}/usage": E,
    # guardrails and policies: engineers (a policy's deny lists and topics are not for callers to dodge)
    "GET /api/guardrails": E,
    "GET /api/policies": E,
    "POST /api/policies": E,
    "POST /api/policies/apply": E,
    "GET /api/policies/{scope}/{target}/{name}": E,
    "PUT /api/policies/{scope}/{target}/{name}": E,
    "DELETE /api/policies/{scope}/{target}/{name}": E,
    "POST /api/playground": E,
    # datasets hold production traffic and training data: engineers
    "GET /api/datasets": E,
    "POST /api/datasets/import": E,
    "GET /api/datasets/{name}": E,
    "DELETE /api/datasets/{name}": E,
    "GET /api/datasets/{name}/versions": E,
    "GET /api/datasets/{name}/versions/{version}": E,
    "GET /api/datasets/{name}/versions/{version}/lineage": E,
    "GET /api/datasets/{name}/versions/{version}/rows": E,
    "GET /api/datasets/{name}/versions/{version}/diff": E,
    "GET /api/datasets/{name}/versions/{version}/export": E,
    # curation of datasets: engineers
    "GET /api/curation/steps": E,
    "POST /api/datasets/{name}/curate": E,
    # batch inference over a dataset (calls models as the caller's key): engineers
    "POST /api/datasets/{name}/infer": E,
    # datasets from production traffic: engineers
    "POST /api/datasets/from-traces": E,
    # annotation queues: engineers make, delete and export them; annotators see theirs and decide items
    "POST /api/annotation-queues": E,
    "GET /api/annotation-queues": N,
    "GET /api/annotation-queues/{queue}": N,
    "DELETE /api/annotation-queues/{queue}": E,
    "GET /api/annotation-queues/{queue}/next": N,
    "GET /api/annotation-queues/{queue}/items/{item_id}": N,
    "POST /api/annotation-queues/{queue}/items/{item_id}/decisions": N,
    "POST /api/annotation-queues/{queue}/export": E,
    # fine-tunes: engineers
    "POST /api/finetunes": E,
    "GET /api/finetunes": E,
    "GET /api/finetunes/{job_id}": E,
    "GET /api/finetunes/{job_id}/curve": E,
    "GET /api/finetunes/{job_id}/logs": E,
    "POST /api/finetunes/{job_id}/cancel": E,
    "POST /api/finetunes/{job_id}/resume": E,
    "GET /api/finetunes/{job_id}/export": E,
    # eval runs call models on the project's budget and show its data: engineers
    "POST /api/evals/runs": E,
    "GET /api/evals/runs": E,
    "GET /api/evals/runs/{run_id}": E,
    "GET /api/evals/runs/{run_id}/results": E,
    "GET /api/evals/runs/{run_id}/compare": E,
    "GET /api/evals/runs/{run_id}/export": E,
    "POST /api/evals/runs/{run_id}/resume": E,
    # prompt optimisation (issue 20): it calls models on the project's budget and pushes versions
    "POST /api/optimizations": E,
    "GET /api/optimizations": E,
    "GET /api/optimizations/{run_id}": E,
    "GET /api/optimizations/{run_id}/candidates": E,
    "GET /api/optimizations/{run_id}/diff": E,
    "POST /api/optimizations/{run_id}/cancel": E,
}


def test_published_roles_match_the_policy(secured: RunningServer) -> None:
    published = {route.label: route.min_role for route in routes(secured)}
    unclassified = sorted(set(published) - set(POLICY))
    assert unclassified == [], f"routes without a policy entry (add them to POLICY): {unclassified}"
    gone = sorted(set(POLICY) - set(published))
    assert gone == [], f"policy entries for routes that no longer exist: {gone}"
    differs = {
        label: (published[label], POLICY[label]) for label in POLICY if published[label] != POLICY[label]
    }
    assert differs == {}, f"published vs policy role: {differs}"
    assert {label.split(" ", 1)[1] for label, role in POLICY.items() if role is None} == PUBLIC


# Role gates run before any lookup, so the backend does not change this matrix: SQLite only.
@pytest.mark.parametrize("secured", ["sqlite"], indirect=True)
def test_matrix_is_enforced(secured: RunningServer, tenant_a: Tenant) -> None:
    matrix: dict[tuple[str, str], int] = {}
    clients = {role: tenant_a.client(secured, role) for role in ROLES}
    for route in routes(secured):
        path = route.path()
        anonymous = raw_request(secured, route.method, path)
        if route.min_role is None:
            assert anonymous.status == 200, route.label
            continue
        assert error_of(anonymous, 401)["code"] == "invalid_api_key", route.label
        for role in ROLES:
            response = clients[role].request(route.method, path, json={} if route.has_body else None)
            matrix[(route.label, role)] = response.status_code
            if RANK[role] < RANK[route.min_role]:
                error = error_of(response, 403)
                assert error["type"] == "permission_error", (route.label, role)
                assert route.min_role in error["message"], (route.label, role, error)
            else:
                assert response.status_code not in (401, 403), (route.label, role, response.text)
                assert response.status_code < 500, (route.label, role, response.text)
    for client in clients.values():
        client.close()
    protected = [r for r in routes(secured) if r.min_role is not None]
    assert len(matrix) == len(ROLES) * len(protected), "every protected route was called with every role"


def _limits(admin: httpx.Client, key_id: str, **limits: object) -> None:
    assert admin.patch(f"/api/keys/{key_id}/limits", json=limits).status_code == 200


def test_keys_never_exceed_their_creators_rights(secured: RunningServer, tenant_a: Tenant) -> None:
    with tenant_a.client(secured, "admin") as admin, tenant_a.client(secured, "engineer") as engineer:
        # Role: never above the creator's; unnamed, the creator's.
        error_of(engineer.post("/api/keys", json={"name": "up", "role": "admin"}), 403)
        assert make_key(engineer)["role"] == "engineer"
        # Project: not one the creator's user does not administer (it looks like a missing one).
        error_of(engineer.post("/api/keys", json={"name": "x", "project": "default"}), 404)

        # Lifetime: a key that expires cannot mint one that outlives it.
        ends = datetime.now(UTC) + timedelta(hours=1)
        short = make_key(engineer, expires_at=ends.isoformat())
        with secured.client(short["key"]) as client:
            child = make_key(client)
            assert child["expires_at"] is not None
            assert datetime.fromisoformat(child["expires_at"]) <= ends + timedelta(seconds=1)
            later = (ends + timedelta(days=1)).isoformat()
            error = error_of(client.post("/api/keys", json={"name": "later", "expires_at": later}), 400)
            assert error["param"] == "expires_at"

        # Limits an admin set: a limited key cannot mint an unlimited one.
        limited = make_key(engineer)
        _limits(admin, limited["id"], rpm_limit=5)
        with secured.client(limited["key"]) as client:
            error = error_of(client.post("/api/keys", json={"name": "escape"}), 403)
            assert "admin" in error["message"]
            assert client.get("/api/me").status_code == 200
        # An admin may (limits are theirs to set anyway).
        _limits(admin, limited["id"], rpm_limit=None)
        admin_key = make_key(admin, role="admin")
        _limits(admin, admin_key["id"], budget=1.0)
        with secured.client(admin_key["key"]) as client:
            assert make_key(client)["role"] == "admin"
