"""The real `fmops` console script, run as a subprocess against SQLite and PostgreSQL.

Each process start costs about a second of imports, so the commands that need no earlier command are
started together (the `batch` fixture) and the tests read their results; sequences run one by one.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import fmops
from fmops.auth import AuthService, Role
from fmops.errors import AuthenticationError
from fmops.jobs import JobService
from fmops.store import Store, head_revision, upgrade
from support.databases import postgres_database

FMOPS = Path(sys.executable).with_name("fmops")
KEY_RE = re.compile(r"fmk-[A-Za-z0-9_\-]{40}")
ID_RE = re.compile(r"\b[0-9a-f]{32}\b")


@dataclass
class Result:
    home: Path
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        head = f"fmops {' '.join(self.args)} -> {self.returncode}"
        return f"{head}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}"


def cli_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without FMOPS_* or terminal settings, plus FMOPS_HOME."""
    drop = ("FORCE_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_") and k not in drop}
    # An ordinary 80-column terminal: output must stay usable at that width.
    env.update({"FMOPS_HOME": str(home), "COLUMNS": "80"})
    env.update(extra or {})
    return env


def start(home: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(FMOPS), *args],
        env=cli_env(home, env),
        cwd=home,  # no stray ./fmops.toml
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], home: Path, args: Sequence[str], timeout: float = 120) -> Result:
    stdout, stderr = proc.communicate(timeout=timeout)
    return Result(home, args, proc.returncode, stdout, stderr)


def fmops_cli(home: Path, *args: str, env: Mapping[str, str] | None = None) -> Result:
    """Run one command that must succeed."""
    result = finish(start(home, *args, env=env), home, args)
    assert result.returncode == 0, str(result)
    assert "Traceback" not in result.stderr, str(result)
    return result


def sqlite_store(home: Path) -> Store:
    return Store(f"sqlite:///{home / 'fmops.db'}")


def init_home(home: Path) -> str:
    """Set a home up in-process, as its first `fmops up` or CLI command would; returns the admin key."""
    store = sqlite_store(home)
    try:
        upgrade(store)
        key = AuthService(store).bootstrap(home / "admin.key")
    finally:
        store.dispose()
    assert key is not None
    return key


def assert_user_error(result: Result, *fragments: str) -> None:
    """A user mistake: non-zero exit, exactly one line on stderr starting with `error:`, no traceback."""
    assert result.returncode != 0, str(result)
    assert "Traceback" not in result.stdout + result.stderr, str(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("error: "), str(result)
    for fragment in fragments:
        assert fragment in lines[0], str(result)
    assert result.stdout == "", str(result)


# --- independent commands, started together ------------------------------------------------------


def initialised(home: Path) -> list[str]:
    init_home(home)
    return []


def with_odd_key_name(home: Path) -> list[str]:
    init_home(home)
    store = sqlite_store(home)
    try:
        AuthService(store).create_key(name="[/x] odd [bold]name[/bold]", role=Role.consumer, creator=None)
    finally:
        store.dispose()
    return []


def with_odd_job(home: Path) -> list[str]:
    init_home(home)
    store = sqlite_store(home)
    try:
        project_id = AuthService(store).list_projects()[0][0].id
        job = JobService(store).submit("test.markup", {"text": "[/red] not [bold]x"}, project_id=project_id)
    finally:
        store.dispose()
    return [job.id]


@dataclass
class Case:
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    # Prepares the home in-process and returns arguments to append; None: a home never used before.
    setup: Callable[[Path], list[str]] | None = initialised


BATCH = {
    "help": Case(("--help",), setup=None),
    "version": Case(("version",), setup=None),
    "first-use": Case(("users", "create", "amy", "--role", "consumer"), setup=None),
    "unknown-project": Case(("users", "create", "bob", "--project", "nope")),
    "bad-role": Case(("users", "create", "bob", "--role", "owner")),
    "bad-port": Case(("up",), env={"FMOPS_PORT": "99999"}),
    "markup-in-name": Case(("projects", "create", "[/red]x")),
    "unknown-command": Case(("deploy",)),
    "odd-key-name": Case(("keys", "list"), env={"COLUMNS": "250"}, setup=with_odd_key_name),
    "odd-job": Case(("jobs", "show"), setup=with_odd_job),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Start every BATCH command at once, each on its own FMOPS_HOME; results by name."""
    procs = {}
    for name, case in BATCH.items():
        home = tmp_path_factory.mktemp(f"cli-{name}")
        args = case.args + tuple(case.setup(home) if case.setup else ())
        procs[name] = (home, args, start(home, *args, env=case.env))
    return {name: finish(proc, home, args) for name, (home, args, proc) in procs.items()}


def test_help_lists_the_command_groups(batch: dict[str, Result]) -> None:
    result = batch["help"]
    assert result.returncode == 0, str(result)
    for command in ("up", "db", "keys", "jobs", "projects", "users", "version"):
        assert re.search(rf"│ {command}\s", result.stdout), f"{command} missing from\n{result.stdout}"
    assert result.stderr == ""


def test_version_prints_the_package_version(batch: dict[str, Result]) -> None:
    result = batch["version"]
    assert result.returncode == 0, str(result)
    assert result.stdout == f"{fmops.__version__}\n"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("name", "code", "fragments"),
    [
        ("unknown-project", 1, ["no project named 'nope'", "fmops projects create nope"]),
        ("bad-role", 2, ["--role", "'owner'", "consumer", "fmops users create --help"]),
        ("bad-port", 2, ["FMOPS_PORT", "65535"]),
        # A name that looks like Rich markup is echoed as typed, not interpreted (or crashed on).
        ("markup-in-name", 1, ["'[/red]x'", "not valid"]),
        ("unknown-command", 2, ["deploy"]),
    ],
)
def test_user_mistakes_print_one_error_line(
    batch: dict[str, Result], name: str, code: int, fragments: list[str]
) -> None:
    assert_user_error(batch[name], *fragments)
    assert batch[name].returncode == code


def test_first_command_on_a_new_home_sets_it_up(batch: dict[str, Result]) -> None:
    result = batch["first-use"]
    assert result.returncode == 0, str(result)
    assert result.stdout.startswith("amy is now consumer in default")
    key_path = result.home / "admin.key"
    assert str(key_path) in result.stderr.replace("\n", "")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = key_path.read_text().strip()
    assert key not in result.stdout + result.stderr
    store = sqlite_store(result.home)
    try:
        auth = AuthService(store, cache_seconds=0)
        principal = auth.authenticate(key)
        assert [(m.user.name, m.role) for m in auth.list_members(principal)] == [
            ("admin", Role.admin),
            ("amy", Role.consumer),
        ]
    finally:
        store.dispose()
    assert (principal.user_name, principal.project_name, principal.role) == ("admin", "default", Role.admin)


def test_listings_show_names_as_text_not_markup(batch: dict[str, Result]) -> None:
    result = batch["odd-key-name"]
    assert result.returncode == 0, str(result)
    assert "[/x] odd [bold]name[/bold]" in result.stdout


def test_jobs_show_prints_params_as_text_not_markup(batch: dict[str, Result]) -> None:
    result = batch["odd-job"]
    assert result.returncode == 0, str(result)
    assert result.args[-1] in result.stdout  # the job id
    assert "[/red] not [bold]x" in result.stdout


# --- sequences on one home -------------------------------------------------------------------------


def test_db_upgrade_and_status_then_keys_create_list_revoke(tmp_path: Path) -> None:
    upgraded = fmops_cli(tmp_path, "db", "upgrade")
    assert upgraded.stdout == f"database migrated from empty to {head_revision()}\n"
    status = fmops_cli(tmp_path, "db", "status")
    assert status.stdout == (
        f"url: sqlite:///{tmp_path.resolve() / 'fmops.db'}\n"
        f"revision: {head_revision()} (latest {head_revision()})\n"
    )

    created = fmops_cli(tmp_path, "keys", "create", "--name", "ci", "--role", "engineer")
    (key,) = KEY_RE.findall(created.stdout)
    assert created.stdout == f"{key}\n"  # only the key on stdout, so $(fmops keys create ...) works
    assert key not in created.stderr
    (key_id,) = ID_RE.findall(created.stderr.replace("\n", ""))

    store = sqlite_store(tmp_path)
    auth = AuthService(store, cache_seconds=0)
    try:
        principal = auth.authenticate(key)
        assert (principal.key_id, principal.role) == (key_id, Role.engineer)
        assert (principal.user_name, principal.project_name) == ("admin", "default")

        table = fmops_cli(tmp_path, "keys", "list")
        listed = fmops_cli(tmp_path, "keys", "list", "--json")
        for output in (table.stdout + table.stderr, listed.stdout + listed.stderr):
            assert key not in output
            assert key[:16] not in output
        rows = {row["id"]: row for row in json.loads(listed.stdout)}
        assert len(rows) == 2  # and the admin key made on first use
        assert rows[key_id]["name"] == "ci"
        assert rows[key_id]["role"] == "engineer"
        assert rows[key_id]["prefix"] == key[:12] + "…"
        assert rows[key_id]["revoked"] is None
        # The table keeps ids whole at 80 columns, so they can be copied into `keys revoke`.
        assert set(ID_RE.findall(table.stdout)) == set(rows)

        revoked = fmops_cli(tmp_path, "keys", "revoke", key_id)
        assert revoked.stdout == f"revoked key {key_id} (ci)\n"
        with pytest.raises(AuthenticationError, match="revoked"):
            auth.authenticate(key)
        assert auth.authenticate((tmp_path / "admin.key").read_text().strip()).role == Role.admin
    finally:
        store.dispose()


def test_projects_users_and_keys_for_them(tmp_path: Path) -> None:
    init_home(tmp_path)
    created = fmops_cli(tmp_path, "projects", "create", "p2")
    assert re.fullmatch(r"created project p2 \([0-9a-f]{32}\); admin is its admin\n", created.stdout)

    added = fmops_cli(tmp_path, "users", "create", "bob", "--role", "consumer", "--project", "p2")
    assert added.stdout.startswith("bob is now consumer in p2;")

    key_out = fmops_cli(tmp_path, "keys", "create", "--name", "bob", "--project", "p2", "--user", "bob")
    (key,) = KEY_RE.findall(key_out.stdout)

    store = sqlite_store(tmp_path)
    try:
        auth = AuthService(store, cache_seconds=0)
        principal = auth.authenticate(key)
        assert (principal.user_name, principal.project_name, principal.role) == ("bob", "p2", Role.consumer)
        assert [p.name for p, _ in auth.list_projects()] == ["default", "p2"]
        assert [(k.role, u) for k, u, _ in auth.list_keys(None, project="p2")] == [("consumer", "bob")]
    finally:
        store.dispose()


# --- PostgreSQL ---------------------------------------------------------------------------------


def test_cli_on_postgresql(tmp_path: Path) -> None:
    with postgres_database() as url:
        # Plain postgresql:// with a password (a trust-auth server ignores it): the CLI must pick the
        # psycopg driver itself and never print the password.
        given = make_url(url)
        password = given.password or "hunter2-secret"
        plain = given.set(drivername="postgresql", password=password)
        env = {"FMOPS_DATABASE_URL": plain.render_as_string(hide_password=False)}
        shown = given.set(password=password).render_as_string(hide_password=True)

        upgraded = fmops_cli(tmp_path, "db", "upgrade", env=env)
        assert upgraded.stdout == f"database migrated from empty to {head_revision()}\n"
        status = fmops_cli(tmp_path, "db", "status", env=env)
        assert status.stdout == f"url: {shown}\nrevision: {head_revision()} (latest {head_revision()})\n"
        assert shown.startswith("postgresql+psycopg://")
        assert ":***@" in shown
        assert password not in status.stdout + status.stderr

        created = fmops_cli(tmp_path, "keys", "create", "--name", "ci", "--role", "engineer", env=env)
        (key,) = KEY_RE.findall(created.stdout)

        store = Store(url)
        try:
            auth = AuthService(store, cache_seconds=0)
            principal = auth.authenticate(key)
            assert (principal.role, principal.user_name, principal.project_name) == (
                Role.engineer,
                "admin",
                "default",
            )
            assert len(auth.list_keys(None)) == 2  # the first-use admin key and this one
        finally:
            store.dispose()
    # Nothing went to a SQLite file under home.
    assert not (tmp_path / "fmops.db").exists()


def test_projects_limits_sets_and_clears_a_projects_limits(tmp_path: Path) -> None:
    init_home(tmp_path)
    set_ = fmops_cli(
        tmp_path, "projects", "limits", "default", "--rpm", "100", "--budget", "5", "--period", "day"
    )
    assert "rpm 100" in set_.stdout
    assert "budget 5 per day" in set_.stdout
    cleared = fmops_cli(tmp_path, "projects", "limits", "default", "--rpm", "none")
    assert "rpm unlimited" in cleared.stdout
    assert "budget 5 per day" in cleared.stdout  # left out: kept
    store = sqlite_store(tmp_path)
    try:
        with store.session() as session:
            row = session.execute(text("SELECT rpm_limit, budget, budget_period FROM projects")).one()
    finally:
        store.dispose()
    assert tuple(row) == (None, 5.0, "day")
    bad = finish(
        start(tmp_path, "projects", "limits", "nope", "--rpm", "1"), tmp_path, ["projects", "limits"]
    )
    assert_user_error(bad, "no project named 'nope'")
