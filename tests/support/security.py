"""Helpers for the security suite (tests/security/): raw HTTP, keys per role and project, trusted setup."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text

from fmops.catalog import Catalog, ModelSpec
from fmops.secrets import SecretBox
from fmops.settings import load_settings
from fmops.store import Store
from support.server import RunningServer

ROLES = ("consumer", "annotator", "engineer", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
PUBLIC = {"/healthz", "/readyz"}
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as published, e.g. /api/jobs/{job_id}
    min_role: str | None  # x-fmops-min-role
    has_body: bool

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    def path(self, fill: str = "0" * 32) -> str:
        """The template with every path parameter set to `fill` (by default an id that exists nowhere)."""
        out, rest = "", self.template
        while "{" in rest:
            head, _, tail = rest.partition("{")
            out += head + fill
            rest = tail.partition("}")[2]
        return out + rest


def routes(server: RunningServer) -> list[Route]:
    """Every operation of the live /openapi.json."""
    schema = httpx.get(server.url + "/openapi.json", timeout=30).json()
    return [
        Route(method.upper(), template, op.get("x-fmops-min-role"), "requestBody" in op)
        for template, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    server: RunningServer,
    method: str,
    path: str,
    headers: Sequence[tuple[str, bytes | str]] = (),
    body: bytes | None = None,
) -> Raw:
    """One request sent byte for byte: the path is not normalised, headers may hold any bytes."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=any(k.lower() == "host" for k, _ in headers))
        payload = body if body is not None else (b"{}" if method in {"POST", "PATCH", "PUT"} else b"")
        for name, value in headers:
            conn.putheader(name, value)
        if payload:
            conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(payload)))
        conn.endheaders(payload)
        response = conn.getresponse()
        return Raw(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def bearer(key: str) -> list[tuple[str, bytes | str]]:
    return [("Authorization", b"Bearer " + key.encode())]


def make_key(client: httpx.Client, **body: Any) -> dict[str, Any]:
    body.setdefault("name", f"k-{uuid.uuid4().hex[:8]}")
    response = client.post("/api/keys", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def error_of(response: httpx.Response | Raw, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error of a response that must have `status`."""
    if isinstance(response, httpx.Response):
        got, shown = response.status_code, response.text[:500]
    else:
        got, shown = response.status, response.body[:500].decode(errors="replace")
    assert got == status, (status, got, shown)
    data = response.json()
    assert set(data) == {"error"}, data
    error: dict[str, Any] = data["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


@dataclass
class Tenant:
    """A project with an admin, an engineer and a consumer, each with their own user and key."""

    name: str
    project_id: str
    keys: dict[str, str]  # role -> plaintext key
    users: dict[str, str]  # role -> user id

    def client(self, server: RunningServer, role: str = "admin") -> httpx.Client:
        return server.client(self.keys[role])


def make_tenant(server: RunningServer, prefix: str) -> Tenant:
    """A fresh project with one user per role who belongs to it alone (its admin included)."""
    suffix = uuid.uuid4().hex[:6]
    name = f"{prefix}-{suffix}"
    with server.client() as root:
        created = root.post("/api/projects", json={"name": name})
        assert created.status_code == 201, created.text
        bootstrap = make_key(root, project=name, role="admin")
    keys, users = {}, {}
    with server.client(bootstrap["key"]) as boot:
        for role in ROLES:
            user = boot.post("/api/users", json={"name": f"{prefix}-{role}-{suffix}", "role": role})
            assert user.status_code == 201, user.text
            users[role] = user.json()["id"]
            keys[role] = make_key(boot, user=user.json()["name"], role=role)["key"]
        # The server's admin user stays a member, as a project's creator does; its key here goes.
        assert boot.delete(f"/api/keys/{bootstrap['id']}").status_code == 200
    return Tenant(name=name, project_id=created.json()["id"], keys=keys, users=users)


def database_url(server: RunningServer) -> str:
    """The database the server process was started with (its environment, else its SQLite default)."""
    raw = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    return env.get("FMOPS_DATABASE_URL") or f"sqlite:///{server.home / 'fmops.db'}"


@contextmanager
def server_store(server: RunningServer) -> Iterator[Store]:
    store = Store(database_url(server))
    try:
        yield store
    finally:
        store.dispose()


def add_trusted_model(server: RunningServer, project_id: str, spec: Mapping[str, Any]) -> None:
    """Add a model as the operator's CLI does (private upstreams allowed), with the server's secret key."""
    with server_store(server) as store:
        settings = load_settings({"home": server.home, "database_url": store.url})
        Catalog(store, settings, SecretBox.from_settings(settings)).add(
            project_id, ModelSpec(**spec), trusted=True
        )


def table_text(server: RunningServer, table: str) -> str:
    """Every row of a table as text, for scanning it for secrets."""
    with server_store(server) as store, store.session() as session:
        rows = session.execute(text(f"SELECT * FROM {table}")).all()  # a fixed table name
    return "\n".join(repr(tuple(row)) for row in rows)
