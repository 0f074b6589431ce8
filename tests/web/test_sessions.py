"""Web sign-in against a real server, over plain HTTP (no browser): sessions, cookies, CSRF, redirects.

Each test signs in as a browser does (POST /login, then the cookie) and checks what the server does
with that cookie afterwards: a session ends on the server, not only in the browser.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from support.browser import create_user_key
from support.security import database_url
from support.server import RunningServer

FMOPS = Path(sys.executable).with_name("fmops")
STATIC = Path(__file__).resolve().parents[2] / "src" / "fmops" / "web" / "static"
PASSWORD = "correct horse battery"


def browser_client(server: RunningServer) -> httpx.Client:
    """A client holding cookies and following no redirects, as the tests inspect each answer."""
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)


def sign_in(client: httpx.Client, **form: str) -> httpx.Response:
    return client.post("/login", data=form)


def csrf_of(client: httpx.Client, path: str = "/console") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'data-csrf="([^"]+)"', page.text)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def add_user(server: RunningServer, name: str, role: str, password: str | None = PASSWORD) -> str:
    with server.client() as admin:
        created = admin.post("/api/users", json={"name": name, "role": role})
        assert created.status_code == 201, created.text
        user_id = str(created.json()["id"])
        if password is not None:
            done = admin.put(f"/api/users/{user_id}/password", json={"password": password})
            assert done.status_code == 204, done.text
    return user_id


def signed_in_with_password(server: RunningServer, name: str, password: str = PASSWORD) -> httpx.Client:
    client = browser_client(server)
    answer = sign_in(client, username=name, password=password)
    assert answer.status_code == 303, answer.text
    return client


def assert_signed_out(client: httpx.Client, path: str = "/console") -> None:
    answer = client.get(path)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/login?next=")


def test_key_sign_in_sets_a_safe_cookie_and_lands_on_the_role_home(server: RunningServer) -> None:
    with browser_client(server) as admin:
        answer = sign_in(admin, api_key=server.admin_key)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("fmops_session=")
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=lax", "path=/"} <= flags
        home = admin.get("/console")
        assert home.status_code == 200
        assert 'data-testid="who">admin' in home.text
    consumer_key = create_user_key(server, "sess-consumer", "consumer")
    with browser_client(server) as consumer:
        answer = sign_in(consumer, api_key=consumer_key)
        assert (answer.status_code, answer.headers["location"]) == (303, "/")


def test_password_sign_in_and_its_failures(server: RunningServer) -> None:
    add_user(server, "sess-eng", "engineer")
    with browser_client(server) as client:
        answer = sign_in(client, username="sess-eng", password=PASSWORD)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console")
        assert client.get("/console").status_code == 200
    # A wrong password and an unknown user read the same: nothing tells which names exist.
    for name, password in (("sess-eng", "wrong password!"), ("nobody-here", PASSWORD)):
        with browser_client(server) as client:
            answer = sign_in(client, username=name, password=password)
            assert answer.status_code == 401
            assert "wrong user name or password" in answer.text
            assert "set-cookie" not in answer.headers
            assert not client.cookies
    with server.client() as admin:
        users = {u["name"]: u["id"] for u in admin.get("/api/users").json()}
        short = admin.put(f"/api/users/{users['sess-eng']}/password", json={"password": "short"})
        assert short.status_code == 400
        assert "8 to 1024 characters" in short.json()["error"]["message"]
        missing = admin.put("/api/users/" + "0" * 32 + "/password", json={"password": PASSWORD})
        assert missing.status_code == 404
    assert PASSWORD not in server.log_text()  # never logged


def test_an_engineer_cannot_set_passwords_through_the_api(server: RunningServer) -> None:
    engineer_key = create_user_key(server, "sess-eng-api", "engineer")
    with server.client() as admin:
        admin_id = next(u["id"] for u in admin.get("/api/users").json() if u["name"] == "admin")
    with server.client(engineer_key) as engineer:
        refused = engineer.put(f"/api/users/{admin_id}/password", json={"password": PASSWORD})
        assert refused.status_code == 403


def test_csrf_is_required_on_every_change(server: RunningServer) -> None:
    with browser_client(server) as client:
        sign_in(client, api_key=server.admin_key)
        token = csrf_of(client)
        # No token, a wrong one, a token in the wrong session's cookie: refused, and nothing changed.
        assert client.post("/logout").status_code == 403
        wrong = client.post("/logout", data={"csrf_token": "x" * 32})
        assert wrong.status_code == 403
        assert "reload the page" in wrong.text
        assert client.post("/logout", headers={"X-CSRF-Token": token + "x"}).status_code == 403
        assert client.get("/console").status_code == 200
        # The header HTMX sends works as the form field does.
        made = client.post(
            "/console/admin/project", data={"retention_days": "30"}, headers={"X-CSRF-Token": token}
        )
        assert made.status_code == 200, made.text


def test_sign_out_ends_the_session_on_the_server(server: RunningServer) -> None:
    with browser_client(server) as client:
        sign_in(client, api_key=server.admin_key)
        cookie = client.cookies["fmops_session"]
        token = csrf_of(client)
        answer = client.post("/logout", data={"csrf_token": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    with browser_client(server) as replay:  # the old cookie, sent again by someone who kept it
        replay.cookies.set("fmops_session", cookie)
        assert_signed_out(replay)


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example", "/\\evil.example", "evil"])
def test_next_never_leaves_the_server(server: RunningServer, target: str) -> None:
    with browser_client(server) as client:
        form = client.get("/login", params={"next": target})
        assert "evil.example" not in form.text
        answer = sign_in(client, api_key=server.admin_key, next=target)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console")
    with browser_client(server) as client:  # a path on this server is kept
        answer = sign_in(client, api_key=server.admin_key, next="/console/admin/keys?x=1")
        assert answer.headers["location"] == "/console/admin/keys?x=1"


def test_revoked_key_disabled_user_and_removed_member_end_sessions(server: RunningServer) -> None:
    key = create_user_key(server, "sess-revoked", "engineer")
    with browser_client(server) as by_key, server.client() as admin:
        sign_in(by_key, api_key=key)
        assert by_key.get("/console").status_code == 200
        key_id = next(
            k["id"] for k in admin.get("/api/keys?all=true").json() if k["name"] == "sess-revoked-key"
        )
        assert admin.delete(f"/api/keys/{key_id}").status_code == 200
        assert_signed_out(by_key)

    disabled_id = add_user(server, "sess-disabled", "engineer")
    removed_id = add_user(server, "sess-removed", "engineer")
    with (
        closing(signed_in_with_password(server, "sess-disabled")) as disabled,
        closing(signed_in_with_password(server, "sess-removed")) as removed,
        server.client() as admin,
    ):
        assert disabled.get("/console").status_code == 200
        assert removed.get("/console").status_code == 200
        assert admin.patch(f"/api/users/{disabled_id}", json={"disabled": True}).status_code == 200
        assert admin.delete(f"/api/users/{removed_id}").status_code == 204
        assert_signed_out(disabled)
        assert_signed_out(removed)
    with browser_client(server) as client:  # nor can they sign in again
        assert sign_in(client, username="sess-disabled", password=PASSWORD).status_code == 401


def test_a_new_password_ends_every_session_of_its_user(server: RunningServer) -> None:
    user_id = add_user(server, "sess-changed", "consumer")
    first = signed_in_with_password(server, "sess-changed")
    second = signed_in_with_password(server, "sess-changed")
    with closing(first), closing(second), server.client() as admin:
        assert first.get("/console").status_code == 403  # signed in, a consumer: no console
        new = admin.put(f"/api/users/{user_id}/password", json={"password": "a brand new one"})
        assert new.status_code == 204
        assert_signed_out(first)
        assert_signed_out(second)
    with browser_client(server) as client:
        assert sign_in(client, username="sess-changed", password=PASSWORD).status_code == 401
        assert sign_in(client, username="sess-changed", password="a brand new one").status_code == 303


def test_cli_sets_a_password_from_stdin_without_echoing_it(server: RunningServer) -> None:
    add_user(server, "sess-cli", "engineer", password=None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
    env |= {"FMOPS_HOME": str(server.home), "FMOPS_DATABASE_URL": database_url(server)}
    secret = "typed into a pipe 1"
    done = subprocess.run(
        [str(FMOPS), "users", "set-password", "sess-cli", "--password-stdin"],
        input=secret + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "password set for sess-cli" in done.stdout
    assert secret not in done.stdout + done.stderr
    with browser_client(server) as client:
        assert sign_in(client, username="sess-cli", password=secret).status_code == 303


def test_security_headers_on_pages(server: RunningServer) -> None:
    with browser_client(server) as client:
        sign_in(client, api_key=server.admin_key)
        for path in ("/login", "/console", "/console/admin/users"):
            page = client.get(path)
            assert page.status_code == 200, path
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["cache-control"] == "no-store"


def test_signed_out_requests_are_sent_to_sign_in(server: RunningServer) -> None:
    with browser_client(server) as client:
        page = client.get("/console/admin/users", params={"q": "a b"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fconsole%2Fadmin%2Fusers%3Fq%3Da%2Bb"
        htmx = client.get("/console/admin/users", headers={"HX-Request": "true"})
        assert htmx.status_code == 401
        assert htmx.headers["hx-redirect"] == "/login"
        fetch = client.get("/console", headers={"Accept": "application/json"})
        assert fetch.status_code == 401
        assert fetch.json()["error"]["code"] == "sign_in_required"
        posted = client.post("/console/admin/users", data={"name": "x"})
        assert posted.status_code == 401  # a change is never redirected: it did not happen


def test_static_assets_are_addressed_by_content_hash(server: RunningServer) -> None:
    with browser_client(server) as client:
        page = client.get("/login").text
        found = re.search(r'/static/app\.css\?v=([0-9a-f]+)"', page)
        assert found, "app.css is not linked with a content hash"
        expected = hashlib.sha256((STATIC / "app.css").read_bytes()).hexdigest()[: len(found.group(1))]
        assert found.group(1) == expected
        asset = client.get(f"/static/app.css?v={found.group(1)}")
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["x-content-type-options"] == "nosniff"


def test_setting_ones_own_password_in_the_console_signs_one_out(server: RunningServer) -> None:
    with server.client() as admin:
        me = admin.get("/api/me").json()
    with browser_client(server) as client:
        sign_in(client, api_key=server.admin_key)
        token = csrf_of(client, "/console/admin/users")
        answer = client.post(
            f"/console/admin/users/{me['user_id']}/password",
            data={"password": "the admin's own"},
            headers={"X-CSRF-Token": token, "HX-Request": "true"},
        )
        assert answer.status_code == 204
        assert answer.headers["hx-redirect"] == "/login"
        assert_signed_out(client)
    with browser_client(server) as client:
        assert sign_in(client, username=me["user_name"], password="the admin's own").status_code == 303


def test_another_sites_form_cannot_sign_a_browser_in(server: RunningServer) -> None:
    with browser_client(server) as client:
        forged = client.post(
            "/login", data={"api_key": server.admin_key}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert forged.status_code == 403
        assert "set-cookie" not in forged.headers
        own = client.post(
            "/login", data={"api_key": server.admin_key}, headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert own.status_code == 303


def test_password_guessing_is_throttled_per_user_name(server: RunningServer) -> None:
    add_user(server, "guessed", "consumer")
    with browser_client(server) as client:
        for _ in range(10):
            wrong = sign_in(client, username="guessed", password="not the password")
            assert wrong.status_code == 401, wrong.text
        throttled = sign_in(client, username="guessed", password=PASSWORD)
        assert throttled.status_code == 429
        assert "too many failed sign-ins" in throttled.text
        assert "fmops_session" not in throttled.headers.get("set-cookie", "")
        # Another user name, and a key, still sign in: the throttle is per name.
        assert sign_in(client, api_key=server.admin_key).status_code == 303
