"""Web pages and actions respect roles: no console for consumers, only their queues for annotators,
no admin pages for engineers.

The routes are read from the web app's own routers and the console's page registry, so a page or an
action added later is covered here without touching this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import APIRoute

from fmops.auth import Role
from fmops.web.pages import ConsolePage, current_page, pages_for
from fmops.web.routers import WEB_ROUTERS
from support.browser import create_user_key
from support.server import RunningServer, start_server

FILLER = "0" * 32  # any path parameter: the gate answers before anything is looked up


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("roles-home")) as running:
        yield running


@pytest.fixture(scope="module")
def clients(web: RunningServer) -> Iterator[dict[str, tuple[httpx.Client, str]]]:
    keys = {
        Role.consumer: create_user_key(web, "roles-consumer", "consumer"),
        Role.annotator: create_user_key(web, "roles-annotator", "annotator"),
        Role.engineer: create_user_key(web, "roles-engineer", "engineer"),
        Role.admin: web.admin_key,
    }
    made: dict[str, tuple[httpx.Client, str]] = {}
    for role, key in keys.items():
        client = httpx.Client(base_url=web.url, timeout=30, follow_redirects=False)
        assert client.post("/login", data={"api_key": key}).status_code == 303
        made[role] = (client, _csrf(client))
    yield made
    for client, _ in made.values():
        client.close()


def _csrf(client: httpx.Client) -> str:
    """The session's CSRF token, from the first page it may open."""
    for path in ("/console", "/"):
        page = client.get(path)
        found = re.search(r'data-csrf="([^"]+)"', page.text)
        if found and found.group(1):
            return found.group(1)
    raise AssertionError("no page carried a CSRF token")


def registered_pages() -> list[ConsolePage]:
    return [p for _, pages in pages_for(Role.admin) for p in pages]


def console_routes() -> list[tuple[str, str]]:
    """(method, path with parameters filled) of every web route under /console."""
    found = []
    for router in WEB_ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.path.startswith("/console"):
                path = re.sub(r"\{[^}]+\}", FILLER, route.path)
                found += [(method, path) for method in sorted(route.methods) if method != "HEAD"]
    return found


def call(client: httpx.Client, csrf: str, method: str, path: str) -> httpx.Response:
    return client.request(method, path, headers={"X-CSRF-Token": csrf}, data={} if method != "GET" else None)


def test_the_registry_holds_the_console_pages() -> None:
    paths = {p.path for p in registered_pages()}
    assert {"/console/admin/users", "/console/admin/keys", "/console/admin/project"} <= paths
    admin_only = {p.path for p in registered_pages() if p.role == Role.admin}
    assert admin_only >= {"/console/admin/users", "/console/admin/keys", "/console/admin/project"}


def test_a_consumer_gets_no_console(clients: dict[str, tuple[httpx.Client, str]]) -> None:
    client, csrf = clients[Role.consumer]
    page = client.get("/console")
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "cannot open the console" in page.text
    assert 'href="/"' in page.text
    assert 'href="/console"' not in page.text
    chat = client.get("/")  # the link on the 403 page works, and the chat shows no way into the console
    assert chat.status_code == 200
    assert 'href="/console' not in chat.text
    for page_info in registered_pages():
        assert client.get(page_info.path).status_code == 403, page_info.path
    for method, path in console_routes():
        assert call(client, csrf, method, path).status_code == 403, f"{method} {path}"


def test_an_annotator_sees_their_queues_and_nothing_else(
    web: RunningServer, clients: dict[str, tuple[httpx.Client, str]]
) -> None:
    client, csrf = clients[Role.annotator]
    home = client.get("/console")
    assert home.status_code == 200
    theirs = {p.path for p in registered_pages() if p.role == Role.annotator}
    assert theirs == {"/console/annotate"}
    for page_info in registered_pages():
        answer = client.get(page_info.path)
        expected = 200 if page_info.role == Role.annotator else 403
        assert answer.status_code == expected, f"{page_info.path}: {answer.status_code}"
        assert (f'href="{page_info.path}"' in home.text) == (expected == 200), page_info.path
    above = [
        (m, p)
        for m, p in console_routes()
        if (found := current_page(p)) is not None and found.role != Role.annotator
    ]
    assert len(above) >= 20
    for method, path in above:
        answer = call(client, csrf, method, path)
        assert answer.status_code == 403, f"{method} {path}: {answer.status_code}"
    key = create_user_key(web, "roles-annotator-2", "annotator")
    with httpx.Client(base_url=web.url, timeout=30, follow_redirects=False) as fresh:
        assert fresh.post("/login", data={"api_key": key}).headers["location"] == "/console/annotate"


def test_an_engineer_sees_no_admin_section_and_is_refused_there(
    clients: dict[str, tuple[httpx.Client, str]],
) -> None:
    client, csrf = clients[Role.engineer]
    home = client.get("/console")
    assert home.status_code == 200
    assert "<h3>Admin</h3>" not in home.text
    assert 'href="/console"' in client.get("/").text  # the chat links an engineer to the console
    for page_info in registered_pages():
        answer = client.get(page_info.path)
        expected = 200 if page_info.role != Role.admin else 403
        assert answer.status_code == expected, f"{page_info.path}: {answer.status_code}"
        if page_info.role == Role.admin:
            assert page_info.path not in home.text
    admin_routes = [
        (m, p)
        for m, p in console_routes()
        if (found := current_page(p)) is not None and found.role == Role.admin
    ]
    assert len(admin_routes) >= 8  # the admin pages' GETs and POSTs at least
    for method, path in admin_routes:
        answer = call(client, csrf, method, path)
        assert answer.status_code == 403, f"{method} {path}: {answer.status_code}"
        assert "needs admin" in answer.text


def test_an_admin_opens_every_page(clients: dict[str, tuple[httpx.Client, str]]) -> None:
    client, _ = clients[Role.admin]
    home = client.get("/console")
    assert "<h3>Admin</h3>" in home.text
    for page_info in registered_pages():
        answer = client.get(page_info.path)
        assert answer.status_code == 200, f"{page_info.path}: {answer.status_code}"
        assert f'href="{page_info.path}"' in answer.text  # in the navigation
