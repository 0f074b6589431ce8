"""The admin pages in a real browser: users and passwords, keys shown once and revoked, project limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, expect

from support.browser import VIEWPORT, screenshot, sign_in, watch_dialogs
from support.server import RunningServer, start_server

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'><svg onload=alert(3)>"
# An email holds no spaces (the form refuses them, as the API does): the same payload without them.
XSS_EMAIL = "<img/src=x/onerror=alert(1)><script>alert(2)</script>\"'><svg/onload=alert(3)>@x.example"
PASSWORD = "a long enough secret"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("admin-home")) as running:
        yield running


def alerts(dialogs: list[str]) -> list[str]:
    """Dialogs other than the confirmations the UI asks on purpose (remove, revoke)."""
    return [d for d in dialogs if not d.startswith("confirm:")]


def add_user(page: Page, name: str, role: str, *, email: str = "", password: str = "") -> None:
    form = page.locator("#create-user")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=email]").fill(email)
    form.locator("select[name=role]").select_option(role)
    form.locator("input[name=password]").fill(password)
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text(f"added {name} as {role}")


def password_sign_in(browser: Browser, web: RunningServer, name: str) -> str:
    """Sign in through the password form in a fresh browser; the path it lands on."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        other = context.new_page()
        other.goto(f"{web.url}/login")
        other.fill("#password-form input[name=username]", name)
        other.fill("#password-form input[name=password]", PASSWORD)
        other.click("#password-form button[type=submit]")
        other.wait_for_load_state("domcontentloaded")
        return urlparse(other.url).path
    finally:
        context.close()


def test_admin_manages_users_who_then_sign_in_with_passwords(
    web: RunningServer, page: Page, browser: Browser, tmp_path: Path
) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, web, web.admin_key)
    page.click("nav.sidebar >> text=Users")
    expect(page).to_have_url(f"{web.url}/console/admin/users")

    add_user(page, "carol", "consumer", email="carol@example.com", password=PASSWORD)
    add_user(page, "dave", "engineer", password=PASSWORD)
    add_user(page, "mallory", "consumer", email=XSS_EMAIL)
    email_cell = page.locator("tr[data-user=mallory] td.email")
    expect(email_cell).to_have_text(XSS_EMAIL)  # shown as text, not parsed as HTML
    assert page.locator("tr[data-user=mallory] img, tr[data-user=mallory] svg").count() == 0

    # The service's rules show as messages: the only admin cannot step down.
    admin_row = page.locator("tr[data-user=admin]")
    admin_row.locator("select[name=role]").select_option("consumer")
    admin_row.locator("button", has_text="Change").click()
    expect(page.locator("#flash")).to_contain_text("last admin")

    # Disable and enable, as the table shows it.
    row = page.locator("tr[data-user=mallory]")
    row.locator("button", has_text="Disable").click()
    expect(page.locator("tr[data-user=mallory] .status")).to_have_text("disabled")
    screenshot(page, "console-admin", tmp_path)
    assert alerts(dialogs) == []

    # A consumer lands on the chat, an engineer on the console.
    assert password_sign_in(browser, web, "carol") == "/"
    assert password_sign_in(browser, web, "dave") == "/console"

    # A new password from the table: the old one stops working.
    page.locator("tr[data-user=dave] summary").click()
    page.locator("tr[data-user=dave] .password-form input[name=password]").fill("another long secret")
    page.locator("tr[data-user=dave] .password-form button").click()
    expect(page.locator("#flash")).to_contain_text("password set")
    assert password_sign_in(browser, web, "dave") == "/login"  # the form again, with its error

    page.locator("tr[data-user=carol] button", has_text="Remove").click()
    expect(page.locator("tr[data-user=carol]")).to_have_count(0)
    with web.client() as admin:
        names = {u["name"]: u for u in admin.get("/api/users").json()}
    assert "carol" not in names
    assert names["mallory"]["disabled"] is True
    assert names["mallory"]["email"] == XSS_EMAIL
    assert alerts(dialogs) == []


def test_a_key_is_shown_once_and_revoking_it_ends_its_session(
    web: RunningServer, page: Page, browser: Browser
) -> None:
    with web.client() as admin:
        assert admin.post("/api/users", json={"name": "erin", "role": "engineer"}).status_code == 201
    dialogs = watch_dialogs(page)
    sign_in(page, web, web.admin_key)
    page.goto(f"{web.url}/console/admin/keys")
    form = page.locator("#create-key")
    form.locator("select[name=user]").select_option("erin")
    form.locator("input[name=name]").fill(XSS)
    form.locator("button[type=submit]").click()
    box = page.locator("#new-key-value")
    expect(box).to_have_text(re.compile(r"^fmk-\S{40}$"))
    key = box.inner_text()
    row = page.locator("#keys-table tbody tr").first
    expect(row.locator("td.name")).to_have_text(XSS)
    expect(row.locator("td.status")).to_have_text("active")

    # Shown once: a reload has no trace of it.
    page.reload()
    assert key not in page.content()
    expect(page.locator("#new-key-value")).to_have_count(0)

    # The key signs a browser in (with erin's engineer rights) ...
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        erin = context.new_page()
        sign_in(erin, web, key)
        expect(erin).to_have_url(f"{web.url}/console")
        # ... until the admin revokes it: erin's next page load is the sign-in form.
        row = page.locator("#keys-table tbody tr").first
        row.locator("button", has_text="Revoke").click()
        expect(page.locator("#keys-table tbody tr").first.locator("td.status")).to_have_text("revoked")
        erin.reload()
        assert urlparse(erin.url).path == "/login"
    finally:
        context.close()

    # Limits: a bad value is a message on the page, a good one is saved.
    row = page.locator("#keys-table tbody tr").first
    row.locator("td.limits summary").click()
    row.locator("input[name=rpm]").fill("lots")
    row.locator("button", has_text="Save limits").click()
    expect(page.locator("#flash")).to_contain_text("rpm must be a whole number")
    row.locator("input[name=rpm]").fill("60")
    row.locator("input[name=budget]").fill("2.5")
    row.locator("select[name=budget_period]").select_option("day")
    row.locator("button", has_text="Save limits").click()
    expect(page.locator("#flash")).to_contain_text("limits of key")
    expect(page.locator("#keys-table tbody tr").first.locator("td.limits summary")).to_contain_text("rpm 60")
    with web.client() as admin:
        saved = next(k for k in admin.get("/api/keys?all=true").json() if k["name"] == XSS)
    assert (saved["rpm_limit"], saved["budget"], saved["budget_period"]) == (60, 2.5, "day")
    assert saved["revoked_at"] is not None
    assert alerts(dialogs) == []


def test_project_limits_and_retention(web: RunningServer, page: Page) -> None:
    sign_in(page, web, web.admin_key)
    page.goto(f"{web.url}/console/admin/project")
    form = page.locator("#project-form")
    form.locator("input[name=retention_days]").fill("0")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text("retention_days must be between 1 and 36500")
    form.locator("input[name=rpm]").fill("120")
    form.locator("input[name=budget]").fill("50")
    form.locator("input[name=retention_days]").fill("30")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text("project settings saved")
    expect(page.locator("[data-testid=rpm]")).to_have_text("120")
    expect(page.locator("[data-testid=retention]")).to_have_text("30")
    with web.client() as admin:
        project = admin.get("/api/projects").json()[0]
    assert (project["rpm_limit"], project["budget"], project["retention_days"]) == (120, 50.0, 30)
    assert project["tpm_limit"] is None
