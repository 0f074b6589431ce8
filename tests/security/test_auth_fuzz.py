"""Issue 7, item 1: junk as API keys in every place a key could be looked for -> 401, server unharmed.

tests/server/test_auth_http.py sends junk `Bearer` keys to every route; this module adds the other
places a client (or an attacker) may put a key: other auth headers, cookies and the query string,
where even a valid key must not authenticate (a key in a URL ends up in proxy and access logs).
It covers each way into authentication: FastAPI routes, the gateway's fast path (chat,
embeddings) and OTLP ingest. Afterwards the keys table is intact and valid keys still work.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from support.security import Raw, bearer, error_of, raw_request, server_store
from support.server import RunningServer

# One route per way into authentication (and per role gate).
ENTRY_POINTS = [
    ("GET", "/api/me"),  # FastAPI, any role
    ("GET", "/api/users"),  # FastAPI, admin gate
    ("DELETE", "/api/keys/" + "0" * 32),  # FastAPI, path parameter
    ("POST", "/v1/chat/completions"),  # the gateway's fast path
    ("POST", "/v1/embeddings"),  # the gateway's fast path
    ("POST", "/v1/traces"),  # OTLP ingest
    ("GET", "/metrics"),
]

JUNK = [
    "' OR '1'='1' --",
    "fmk-' OR 1=1; DROP TABLE api_keys; --" + "a" * 4,  # 44 characters: the shape of a key
    "fmk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' --x",
    "fmk-" + "\u00e9" * 40,
    "\U0001f511" * 44,
    "fmk-%00" + "b" * 37,
    "x" * 10_240,
    "fmk-" + "a" * 40,  # well formed, no such key
]

# Places other than `Authorization: Bearer`: none of them is read.
HEADER_PLACES = ["X-Api-Key", "Api-Key", "Proxy-Authorization", "X-Fmops-Key", "Cookie"]
QUERY_PLACES = ["api_key", "key", "access_token", "token"]


def _send(server: RunningServer, method: str, path: str, headers: list[tuple[str, bytes | str]]) -> Raw:
    body = b'{"model": "x", "messages": [], "input": "x"}' if method == "POST" else None
    return raw_request(server, method, path, headers, body)


def _assert_401(response: Raw, where: str, secret: str) -> None:
    error = error_of(response, 401)
    assert response.headers.get("www-authenticate") == "Bearer", where
    assert error["code"] == "invalid_api_key", where
    if len(secret) >= 8:
        assert secret not in response.body.decode(errors="replace"), f"{where} echoed the key"


def _keys_table(server: RunningServer) -> int:
    with server_store(server) as store, store.session() as session:
        return int(session.execute(text("SELECT count(*) FROM api_keys")).scalar_one())


def test_keys_anywhere_but_bearer_are_ignored(secured: RunningServer) -> None:
    valid = secured.admin_key
    before = _keys_table(secured)
    nul = "fmk-\x00" + "a" * 39  # NUL cannot travel in a header (HTTP refuses it), but can in a URL
    for method, path in ENTRY_POINTS:
        for key in [valid, JUNK[1], JUNK[4], nul]:
            encoded = key.encode()
            for header in HEADER_PLACES if key != nul else []:
                value = b"fmops_key=" + encoded if header == "Cookie" else encoded
                where = f"{method} {path} {header}: {key[:16]!r}"
                _assert_401(_send(secured, method, path, [(header, value)]), where, key)
            for name in QUERY_PLACES:
                where = f"{method} {path}?{name}={key[:16]!r}"
                _assert_401(_send(secured, method, f"{path}?{name}={quote(key)}", []), where, key)
    assert _keys_table(secured) == before, "no key was added or removed"
    with secured.client() as admin:
        assert admin.get("/api/me").status_code == 200, "the server is unharmed"


@pytest.mark.parametrize(("method", "path"), ENTRY_POINTS, ids=[p for _, p in ENTRY_POINTS])
def test_junk_bearer_keys_are_401_at_every_entry(secured: RunningServer, method: str, path: str) -> None:
    for key in JUNK:
        _assert_401(_send(secured, method, path, bearer(key)), f"{method} {path} {key[:16]!r}", key)
    # A header far beyond any key: refused by the HTTP layer or as a bad key, never served.
    huge = _send(secured, method, path, [("Authorization", b"Bearer " + b"A" * 65_536)])
    assert huge.status in (400, 401, 431), huge.status


# Any bytes a header may carry (RFC 9110: visible ASCII, space, tab, obs-text 0x80-0xff).
header_bytes = st.binary(min_size=1, max_size=300).map(
    lambda b: bytes(c for c in b if c in (9, 32) or 33 <= c <= 126 or c >= 128).strip() or b"x"
)


def test_fuzzed_keys_are_401(secured: RunningServer) -> None:
    seen: list[int] = []

    @given(key=header_bytes, fast=st.booleans())
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(key: bytes, fast: bool) -> None:
        method, path = ("POST", "/v1/chat/completions") if fast else ("GET", "/api/me")
        for value in (b"Bearer " + key, b"Bearer fmk-" + key):
            response = _send(secured, method, path, [("Authorization", value)])
            seen.append(response.status)
            assert response.status == 401, (value[:60], response.status, response.body[:200])

    run()
    assert len(seen) >= 80
