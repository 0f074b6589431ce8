"""Issue 7, item 10: Host headers and path tricks never reach an admin (or engineer) route without rights.

Each admin and engineer route is requested, byte for byte, with the path spellings that slip past
prefix-matching proxies and routers (`//`, `/./`, `/x/../`, `%2e`, `%2f`, encoded letters, case
changes, `;` parameters, trailing dots and slashes, backslashes, absolute-form targets), with the
method-override and URL-rewrite headers some frameworks honour, and with odd Host and forwarding
headers. Pass: with no key, a consumer key or an engineer key (on admin routes), never a 2xx and
never a 5xx; the admin key, as a control, gets its 200 on the plain path.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from support.security import Tenant, bearer, raw_request
from support.server import RunningServer

pytestmark = pytest.mark.parametrize("secured", ["sqlite"], indirect=True)  # routing is backend-free


def spellings(path: str, origin: str) -> list[str]:
    """Ways to write `path` (e.g. /api/users) that a careless matcher may take for another path."""
    head, _, tail = path.strip("/").rpartition("/")  # "api", "users"; "", "metrics"
    return [
        path,
        "/" + path,
        f"/{head}//{tail}",
        f"/{head}/./{tail}",
        f"/{head}/x/../{tail}",
        f"/./{head}/{tail}",
        f"/{head}/%2e/{tail}",
        f"/{head}%2f{tail}",
        f"/{head}/{tail}%2f",
        f"/{head}/%{ord(tail[0]):02x}{tail[1:]}",  # first letter percent-encoded
        f"/{head.upper()}/{tail}",
        f"/{head}/{tail.upper()}",
        f"/{head}/{tail}/",
        f"/{head}/{tail}/.",
        f"/{head}/{tail}.",
        f"/{head}/{tail};",
        f"/{head}/{tail};x=y",
        f"/{head}/{tail}/..;/{tail}",
        f"/{head}/{tail}%00",
        f"/{head}/{tail}%20",
        f"/{head}/{tail}.json",
        f"\\{head}\\{tail}",
        f"/{head}\\{tail}",
        f"/{head}/{tail}?all=true",
        origin + path,  # absolute-form request target
    ]


ADMIN_ROUTES = [("GET", "/api/users"), ("POST", "/api/projects"), ("PATCH", "/api/projects/current")]
ENGINEER_ROUTES = [("GET", "/api/traces"), ("GET", "/metrics"), ("GET", "/api/jobs")]
TRICK_HEADERS: list[list[tuple[str, bytes | str]]] = [
    [],
    [("Host", "localhost")],
    [("Host", "evil.example")],
    [("Host", "")],
    [("X-Forwarded-For", "127.0.0.1"), ("X-Real-IP", "127.0.0.1"), ("Forwarded", "for=127.0.0.1")],
    [("X-Forwarded-Host", "localhost"), ("X-Forwarded-Prefix", "/admin")],
]


def _assert_refused(
    server: RunningServer, method: str, target: str, headers: list[tuple[str, bytes | str]]
) -> int:
    response = raw_request(server, method, target, headers)
    assert not 200 <= response.status < 300, (method, target, headers, response.status, response.body[:200])
    assert response.status < 500, (method, target, headers, response.status, response.body[:200])
    return response.status


def test_path_and_host_tricks_never_reach_a_route_without_rights(
    secured: RunningServer, tenant_a: Tenant
) -> None:
    origin = secured.url
    identities = {
        "nobody": [],
        "consumer": bearer(tenant_a.keys["consumer"]),
        "engineer": bearer(tenant_a.keys["engineer"]),
    }
    statuses: set[int] = set()
    for who, auth in identities.items():
        routes = ADMIN_ROUTES + (ENGINEER_ROUTES if who != "engineer" else [])
        for method, path in routes:
            # Without a key every spelling is a 401 or 404 alike; the spellings matter for keys.
            for target in spellings(path, origin) if auth else [path]:
                statuses.add(_assert_refused(secured, method, target, auth))
            for extra in TRICK_HEADERS[1:]:
                statuses.add(_assert_refused(secured, method, path, [*auth, *extra]))
    assert {401, 403, 404} <= statuses, statuses
    # The control: the admin key is served on the plain path, whatever the Host header says.
    host = urlsplit(origin).netloc
    for host_header in (host, "localhost", "evil.example"):
        admin = raw_request(
            secured, "GET", "/api/users", [*bearer(tenant_a.keys["admin"]), ("Host", host_header)]
        )
        assert admin.status == 200, (host_header, admin.status)


def test_method_override_and_rewrite_headers_are_ignored(secured: RunningServer, tenant_a: Tenant) -> None:
    consumer = bearer(tenant_a.keys["consumer"])
    rewrites = [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Override-URL",
        "X-Forwarded-Uri",
        "X-Envoy-Original-Path",
    ]
    for header in rewrites:
        # An allowed route, with a header naming an admin one: the allowed route is what answers.
        response = raw_request(secured, "GET", "/api/me", [*consumer, (header, "/api/users")])
        assert response.status == 200, (header, response.status)
        assert response.json()["role"] == "consumer", (header, response.body[:200])
    for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        # A GET the consumer may make, asking to be treated as a DELETE of the project's users.
        for method, path in (("GET", "/api/users"), ("POST", "/api/me")):
            statuses = _assert_refused(secured, method, path, [*consumer, (header, "DELETE")])
            assert statuses in (403, 405), (header, method, path, statuses)
    # Methods the routes do not declare are not a way around their gates either.
    for method in ("HEAD", "OPTIONS", "TRACE", "PUT", "CONNECT"):
        _assert_refused(secured, method, "/api/users", consumer)
