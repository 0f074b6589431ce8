"""Authentication and authorization over real HTTP, on both backends.

Every route but the health checks needs a key; roles published in /openapi.json are the roles
enforced; a key never carries more rights than its creator; one project cannot see another's
objects; a revoked key stops working; key plaintexts never reach the logs.
"""

from __future__ import annotations

import http.client
import json
import re
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from fmops.auth import AuthService
from fmops.store import Store
from support.server import RunningServer

PUBLIC = {"/healthz", "/readyz"}
ROLES = ("consumer", "annotator", "engineer", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
ERROR_KEYS = {"message", "type", "param", "code"}

# Every plaintext key this module sees; none may ever appear in a server log.
SECRETS: list[str] = []


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # concrete: path parameters filled with an id that exists nowhere
    template: str
    min_role: str | None
    has_body: bool

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def operations(server: RunningServer) -> list[Operation]:
    schema = httpx.get(server.url + "/openapi.json", timeout=30).json()
    found = []
    for template, item in schema["paths"].items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            found.append(
                Operation(
                    method=method.upper(),
                    path=re.sub(r"\{[^}]+\}", "0" * 32, template),
                    template=template,
                    min_role=op.get("x-fmops-min-role"),
                    has_body="requestBody" in op,
                )
            )
    assert len(found) >= 20, "the API lists its routes"
    return found


def protected(server: RunningServer) -> list[Operation]:
    return [op for op in operations(server) if op.template not in PUBLIC]


def raw_request(
    server: RunningServer, method: str, path: str, authorization: bytes | None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with the Authorization header sent byte for byte (httpx refuses odd bytes)."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path)
        if authorization is not None:
            conn.putheader("Authorization", authorization)
        payload = body if body is not None else (b"{}" if method in {"POST", "PATCH", "PUT"} else b"")
        if payload:
            conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(payload)))
        conn.endheaders(payload)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def call(client: httpx.Client, op: Operation) -> httpx.Response:
    if op.has_body:
        return client.request(op.method, op.path, json={})
    return client.request(op.method, op.path)


def assert_error_shape(
    body: bytes | dict[str, Any], status: int, secret: str | None = None
) -> dict[str, Any]:
    data = json.loads(body) if isinstance(body, bytes) else body
    assert set(data) == {"error"}, data
    error: dict[str, Any] = data["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    assert isinstance(error["type"], str)
    if status == 401:
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "invalid_api_key"
    if status == 403:
        assert error["type"] == "permission_error"
    if secret and len(secret) >= 8:
        assert secret not in error["message"], "an error body never echoes the key it was sent"
    return error


def make_key(client: httpx.Client, **body: Any) -> dict[str, Any]:
    body.setdefault("name", f"k-{uuid.uuid4().hex[:8]}")
    response = client.post("/api/keys", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    SECRETS.append(created["key"])
    assert created["key"].startswith("fmk-")
    assert created["prefix"] == created["key"][:12]
    return created


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> httpx.Client:
    SECRETS.append(server.admin_key)
    return server.client()


@pytest.fixture(scope="module")
def role_keys(server: RunningServer, admin: httpx.Client) -> dict[str, str]:
    return {role: make_key(admin, role=role)["key"] for role in ROLES}


# --- no key, bad keys -----------------------------------------------------------------------------


def test_health_checks_are_the_only_public_routes(server: RunningServer) -> None:
    ops = operations(server)
    assert {op.template for op in ops if op.min_role is None} == PUBLIC
    for op in ops:
        if op.template in PUBLIC:
            status, _, _ = raw_request(server, op.method, op.path, None)
            assert status == 200, op
        else:
            assert op.min_role in ROLES, f"{op} publishes x-fmops-min-role"


def test_every_route_needs_a_key(server: RunningServer) -> None:
    for op in protected(server):
        status, headers, body = raw_request(server, op.method, op.path, None)
        assert status == 401, (str(op), body)
        assert headers.get("www-authenticate") == "Bearer", op
        error = assert_error_shape(body, 401)
        assert "missing API key" in error["message"]


MALFORMED_HEADERS = [
    b"Basic YWRtaW46YWRtaW4=",
    b"Bearer",
    b"Bearer ",
    b"Token fmk-" + b"a" * 40,
    b"fmk-" + b"a" * 40,
    b"Bearerfmk-" + b"a" * 40,
]


@pytest.mark.parametrize("header", MALFORMED_HEADERS, ids=lambda h: h.decode()[:16])
def test_malformed_authorization_header_is_401(server: RunningServer, header: bytes) -> None:
    for op in protected(server):
        status, headers, body = raw_request(server, op.method, op.path, header)
        assert status == 401, (str(op), body)
        assert headers.get("www-authenticate") == "Bearer"
        assert_error_shape(body, 401)


JUNK_KEYS = [
    "' OR '1'='1",
    "fmk-' OR 1=1; DROP TABLE api_keys; --" + "a" * 4,
    "fmk-aaaa'--" + "a" * 33,
    "fmk-" + "a" * 40,  # well formed, but no such key
    "fmk-" + "A" * 39 + "%",
    "fmk-%00" + "b" * 37,
    "x" * 10_240,
    "fmk-" + "é" * 40,
    "🔑" * 44,
    "fmk-" + "\u202e" * 40,
]


@pytest.mark.parametrize("junk", JUNK_KEYS, ids=lambda k: repr(k[:12]))
def test_junk_keys_are_401(server: RunningServer, admin: httpx.Client, junk: str) -> None:
    SECRETS.append(junk)
    for op in protected(server):
        status, headers, body = raw_request(server, op.method, op.path, b"Bearer " + junk.encode())
        assert status == 401, (str(op), body)
        assert headers.get("www-authenticate") == "Bearer"
        assert_error_shape(body, 401, secret=junk)
    assert admin.get("/api/me").status_code == 200, "the server is unharmed"


def test_nul_bytes_in_a_key_never_reach_a_route(server: RunningServer, admin: httpx.Client) -> None:
    # NUL is not allowed in an HTTP field value (RFC 9110 5.5): the HTTP parser refuses the request
    # before any route runs, so the answer is a protocol-level 400, never a success or a 500.
    for op in protected(server):
        for key in (b"fmk-\x00" + b"a" * 39, b"\x00", b"fmk-" + b"a" * 20 + b"\x00" + b"a" * 19):
            status, _, body = raw_request(server, op.method, op.path, b"Bearer " + key)
            assert status in (400, 401), (str(op), status, body)
    assert admin.get("/api/me").status_code == 200


# --- roles ----------------------------------------------------------------------------------------


def test_published_min_role_is_the_enforced_one(server: RunningServer, role_keys: dict[str, str]) -> None:
    for role, key in role_keys.items():
        with server.client(key) as client:
            me = client.get("/api/me")
            assert me.status_code == 200
            assert me.json()["role"] == role
            for op in protected(server):
                assert op.min_role is not None
                response = call(client, op)
                if RANK[role] < RANK[op.min_role]:
                    assert response.status_code == 403, (role, str(op), response.text)
                    error = assert_error_shape(response.json(), 403)
                    assert op.min_role in error["message"]
                else:
                    assert response.status_code not in (401, 403), (role, str(op), response.text)
                    assert response.status_code < 500, (role, str(op), response.text)


def test_keys_never_exceed_their_creators_rights(server: RunningServer, role_keys: dict[str, str]) -> None:
    for creator in ROLES:
        with server.client(role_keys[creator]) as client:
            for wanted in ROLES:
                response = client.post(
                    "/api/keys", json={"name": f"{creator}-makes-{wanted}", "role": wanted}
                )
                if RANK[wanted] > RANK[creator]:
                    assert response.status_code == 403, (creator, wanted, response.text)
                    assert_error_shape(response.json(), 403)
                else:
                    assert response.status_code == 201, (creator, wanted, response.text)
                    created = response.json()
                    SECRETS.append(created["key"])
                    assert created["role"] == wanted
                    with server.client(created["key"]) as made:
                        assert made.get("/api/me").json()["role"] == wanted
            # Without a role, a key inherits its creator's, never more.
            default = make_key(client)
            assert default["role"] == creator


def test_only_admins_create_keys_for_other_users(server: RunningServer, admin: httpx.Client) -> None:
    name = f"bob-{uuid.uuid4().hex[:6]}"
    created = admin.post("/api/users", json={"name": name, "role": "engineer"})
    assert created.status_code == 201, created.text

    engineer = make_key(admin, role="engineer")
    with server.client(engineer["key"]) as client:
        response = client.post("/api/keys", json={"name": "for-bob", "user": name, "role": "consumer"})
        assert response.status_code == 403
        assert_error_shape(response.json(), 403)

    # An admin may, but not beyond the user's own role in the project.
    too_much = admin.post("/api/keys", json={"name": "bob-admin", "user": name, "role": "admin"})
    assert too_much.status_code == 403, too_much.text
    assert "a key cannot be admin" in too_much.json()["error"]["message"]
    bobs = make_key(admin, user=name, role="engineer")
    assert (bobs["user"], bobs["role"]) == (name, "engineer")
    with server.client(bobs["key"]) as bob:
        me = bob.get("/api/me").json()
        assert (me["user_name"], me["role"]) == (name, "engineer")
        # Bob's engineer key cannot mint an admin key for himself either.
        assert bob.post("/api/keys", json={"name": "bob-up", "role": "admin"}).status_code == 403


def test_demoted_user_keys_lose_the_rights(server: RunningServer, admin: httpx.Client) -> None:
    name = f"carol-{uuid.uuid4().hex[:6]}"
    user = admin.post("/api/users", json={"name": name, "role": "engineer"}).json()
    key = make_key(admin, user=name, role="engineer")
    with server.client(key["key"]) as carol:
        assert carol.get("/api/jobs").status_code == 200
        demoted = admin.patch(f"/api/users/{user['id']}", json={"role": "consumer"})
        assert demoted.status_code == 200, demoted.text
        deadline = time.monotonic() + 5
        while (status := carol.get("/api/jobs").status_code) != 403 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 403


# --- projects -------------------------------------------------------------------------------------


def test_other_projects_objects_are_not_found(server: RunningServer, admin: httpx.Client) -> None:
    home = admin.get("/api/me").json()
    job = admin.post("/api/jobs", json={"kind": "test.count", "params": {"steps": 1, "step_seconds": 0}})
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    home_key = make_key(admin, role="consumer")
    frank = admin.post("/api/users", json={"name": f"frank-{uuid.uuid4().hex[:6]}", "role": "engineer"})
    assert frank.status_code == 201, frank.text
    frank_id = frank.json()["id"]

    other = f"other-{uuid.uuid4().hex[:8]}"
    created = admin.post("/api/projects", json={"name": other})
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "admin"
    other_admin = make_key(admin, project=other, role="admin")
    assert other_admin["project"] == other

    with server.client(other_admin["key"]) as outsider:
        assert outsider.get("/api/me").json()["project_name"] == other
        for method, path in [
            ("GET", f"/api/jobs/{job_id}"),
            ("GET", f"/api/jobs/{job_id}/logs"),
            ("POST", f"/api/jobs/{job_id}/cancel"),
            ("DELETE", f"/api/keys/{home_key['id']}"),
            ("PATCH", f"/api/users/{frank_id}"),
            ("DELETE", f"/api/users/{frank_id}"),
        ]:
            kwargs: dict[str, Any] = {"json": {"role": "admin"}} if method == "PATCH" else {}
            # The admin user is a member of both projects, but these objects belong to the first one.
            response = outsider.request(method, path, **kwargs)
            assert response.status_code == 404, (method, path, response.text)
            assert_error_shape(response.json(), 404)
        assert frank_id not in [u["id"] for u in outsider.get("/api/users").json()]
        assert job_id not in [j["id"] for j in outsider.get("/api/jobs").json()["data"]]
        assert home_key["id"] not in [k["id"] for k in outsider.get("/api/keys", params={"all": True}).json()]

        # A user who belongs only to the other project cannot even see that the first exists.
        eve = f"eve-{uuid.uuid4().hex[:6]}"
        assert outsider.post("/api/users", json={"name": eve, "role": "engineer"}).status_code == 201
        eve_key = make_key(outsider, user=eve, role="engineer")

    with server.client(eve_key["key"]) as client:
        assert client.get(f"/api/projects/{home['project_id']}").status_code == 404
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert [p["name"] for p in client.get("/api/projects").json()] == [other]
        sneaky = client.post("/api/keys", json={"name": "sneak", "project": home["project_name"]})
        assert sneaky.status_code == 404, sneaky.text

    # The refused calls changed nothing: the job still runs to its end, the key still works.
    deadline = time.monotonic() + 30
    while admin.get(f"/api/jobs/{job_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with server.client(home_key["key"]) as client:
        assert client.get("/api/me").status_code == 200
    members = {u["id"]: u["role"] for u in admin.get("/api/users").json()}
    assert members[frank_id] == "engineer"


# --- revocation, the admin key file, logs ---------------------------------------------------------


def test_revoked_key_is_refused_within_the_cache_time(server: RunningServer, admin: httpx.Client) -> None:
    key = make_key(admin, role="engineer")
    with server.client(key["key"]) as client:
        assert client.get("/api/me").status_code == 200  # now verified and cached

        revoked = admin.delete(f"/api/keys/{key['id']}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None

        deadline = time.monotonic() + 5
        while (response := client.get("/api/me")).status_code != 401:
            assert time.monotonic() < deadline, "a revoked key kept working past the cache time"
            time.sleep(0.1)
        error = assert_error_shape(response.json(), 401, secret=key["key"])
        assert "revoked" in error["message"]
        assert client.get("/api/jobs").status_code == 401


def server_database_url(server: RunningServer) -> str:
    """The database the server process was started with (its environment, else its SQLite default)."""
    raw = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    return env.get("FMOPS_DATABASE_URL") or f"sqlite:///{server.home / 'fmops.db'}"


def test_key_revoked_elsewhere_is_refused_once_the_cache_expires(
    server: RunningServer, admin: httpx.Client
) -> None:
    # Revoked by another process (the CLI, another replica): this server learns of it only when
    # its cached verification expires (FMOPS_KEY_CACHE_SECONDS, 2 s by default).
    key = make_key(admin, role="engineer")
    with server.client(key["key"]) as client:
        assert client.get("/api/me").status_code == 200
        store = Store(server_database_url(server))
        try:
            AuthService(store).revoke_key(None, key["id"])
        finally:
            store.dispose()
        revoked_at = time.monotonic()
        while (response := client.get("/api/me")).status_code != 401:
            assert time.monotonic() - revoked_at < 5, "a revoked key kept working past the cache time"
            time.sleep(0.1)
    assert "revoked" in assert_error_shape(response.json(), 401)["message"]


def test_keys_may_revoke_their_users_keys_but_not_others(server: RunningServer, admin: httpx.Client) -> None:
    name = f"dave-{uuid.uuid4().hex[:6]}"
    assert admin.post("/api/users", json={"name": name, "role": "engineer"}).status_code == 201
    daves = make_key(admin, user=name, role="engineer")
    other_daves = make_key(admin, user=name, role="consumer")
    mine = make_key(admin, role="engineer")
    with server.client(mine["key"]) as client:
        refused = client.delete(f"/api/keys/{daves['id']}")
        assert refused.status_code == 404, "only an admin sees other users' keys"
        assert client.get("/api/keys", params={"all": True}).status_code == 403
        assert daves["id"] not in [k["id"] for k in client.get("/api/keys").json()]
        assert client.delete(f"/api/keys/{mine['id']}").status_code == 200
    with server.client(daves["key"]) as dave:
        assert dave.get("/api/me").status_code == 200, "the refused revocation changed nothing"
        assert dave.delete(f"/api/keys/{other_daves['id']}").status_code == 200
    everyone = admin.get("/api/keys", params={"all": True}).json()
    assert daves["id"] in [k["id"] for k in everyone]
    assert admin.delete(f"/api/keys/{daves['id']}").status_code == 200, "an admin manages everyone's"


def test_admin_key_file_is_private(server: RunningServer) -> None:
    path = server.home / "admin.key"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert path.read_text().strip() == server.admin_key
    assert not (server.home / "admin.key.tmp").exists()


def test_logs_never_contain_a_key(server: RunningServer, admin: httpx.Client) -> None:
    # Run last in the module: by now every route was called with every kind of key.
    assert admin.get("/api/me").status_code == 200
    log = server.log_text()
    assert log, "the server logs"
    for secret in SECRETS:
        if len(secret) >= 8:
            assert secret not in log, f"key {secret[:8]}... leaked into the log"
