"""SessionService.set_member_password on both databases: who may set whose password."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fmops.auth import Principal, Role
from fmops.cli import app
from fmops.cli import users as users_cli
from fmops.errors import AuthenticationError, Conflict, NotFound, PermissionDenied, UserError
from fmops.platform import Platform

PASSWORD = "long enough secret"


def admin_of(platform: Platform, project: str) -> Principal:
    """A principal for a fresh admin user of `project` (created if missing), via a real key."""
    projects = {p.name: p for p, _ in platform.auth.list_projects()}
    if project not in projects:
        platform.auth.create_project(project)
        projects = {p.name: p for p, _ in platform.auth.list_projects()}
    name = f"{project}-admin"
    platform.auth.create_user(name, role=Role.admin, project_id=projects[project].id)
    _, key = platform.auth.create_key(name="k", role=Role.admin, creator=None, project=project, user=name)
    return platform.auth.authenticate(key)


def test_an_admin_sets_a_members_password_and_their_sessions_end(platform: Platform) -> None:
    admin = admin_of(platform, "default")
    member = platform.auth.create_user("bob", role=Role.consumer, project_id=admin.project_id)
    sessions = platform.web_sessions
    sessions.set_member_password(admin, member.user.id, PASSWORD)
    token = sessions.sign_in_with_password("bob", PASSWORD)
    assert sessions.resolve(token) is not None
    sessions.set_member_password(admin, member.user.id, PASSWORD + "!")
    assert sessions.resolve(token) is None  # the old session ended with the change
    with pytest.raises(AuthenticationError):
        sessions.sign_in_with_password("bob", PASSWORD)
    assert sessions.resolve(sessions.sign_in_with_password("bob", PASSWORD + "!")) is not None
    with pytest.raises(UserError, match="8 to 1024"):
        sessions.set_member_password(admin, member.user.id, "short")


def test_only_an_admin_of_every_project_of_the_user_may(platform: Platform) -> None:
    first, second = admin_of(platform, "default"), admin_of(platform, "other")
    shared = platform.auth.create_user("shared", role=Role.engineer, project_id=first.project_id)
    platform.auth.create_user("shared", role=Role.consumer, project_id=second.project_id)
    # first's admin is not admin of "other": a password would open "other" to them too.
    with pytest.raises(Conflict, match="not admin of"):
        platform.web_sessions.set_member_password(first, shared.user.id, PASSWORD)
    with pytest.raises(NotFound):  # someone outside the project: as if no such user
        platform.web_sessions.set_member_password(first, second.user_id, PASSWORD)
    engineer_key = platform.auth.create_key(name="e", role=Role.engineer, creator=None, user="shared")[1]
    with pytest.raises(PermissionDenied):
        platform.web_sessions.set_member_password(
            platform.auth.authenticate(engineer_key), shared.user.id, PASSWORD
        )
    with pytest.raises(NotFound):
        platform.web_sessions.set_member_password(first, "\x00bad", PASSWORD)


def test_the_cli_asks_on_a_terminal_only() -> None:
    """Without a terminal and without --password-stdin it stops before anything (no hanging prompt)."""
    result = CliRunner().invoke(app, ["users", "set-password", "bob"], input="piped\n")
    assert isinstance(result.exception, UserError)
    assert "--password-stdin" in result.exception.message


def test_the_cli_prompt_wants_the_same_password_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["first one!", "second one"])
    monkeypatch.setattr(users_cli.getpass, "getpass", lambda prompt: next(answers))
    with pytest.raises(UserError, match="differ"):
        users_cli._read_password(from_stdin=False)
    monkeypatch.setattr(users_cli.getpass, "getpass", lambda prompt: "same secret")
    assert users_cli._read_password(from_stdin=False) == "same secret"
