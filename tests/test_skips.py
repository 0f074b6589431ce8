"""In CI a skip is a failure unless it says why it may skip; a migration error is never an outage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import databases
from support.databases import TemplateMigrationError, postgres_database

TESTS = Path(__file__).resolve().parent

SAMPLE = """
import pytest

from support.services import long_only, not_applicable, require_module, unavailable


def test_bare_skip():
    pytest.skip("no reason given")


def test_service_missing():
    unavailable("Redis is not reachable")


def test_module_missing():
    require_module("fmops_no_such_module", "an optional extra")


def test_not_applicable():
    not_applicable("SQLite pragmas on PostgreSQL")


@long_only
def test_long():
    pass


@pytest.mark.xfail(reason="known")
def test_expected_failure():
    raise AssertionError
"""


def _run(folder: Path, required: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("FMOPS_TEST_REQUIRE_SERVICES", "FMOPS_TEST_LONG")}
    env["PYTHONPATH"] = str(TESTS)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # schemathesis, playwright...: seconds to load, unused here
    if required:
        env["FMOPS_TEST_REQUIRE_SERVICES"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "support.services",
            "-p",
            "no:cacheprovider",
            "-rA",
            "-q",
            "sample",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout


def _summary(stdout: str) -> set[str]:
    """The short summary's lines, without their line numbers and cut messages."""
    found = set()
    for line in stdout.splitlines():
        if line.startswith(("FAILED ", "XFAIL ")):
            found.add(line.split(" - ")[0])
        elif line.startswith("SKIPPED "):
            found.add("SKIPPED " + line.split(": ", 1)[1])
    return found


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("skips")
    (folder / "sample").mkdir()
    (folder / "sample" / "test_sample.py").write_text(SAMPLE)
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder


def test_in_ci_only_declared_skips_stay_skips(sample: Path) -> None:
    stdout = _run(sample, required=True)
    assert _summary(stdout) == {
        "FAILED sample/test_sample.py::test_bare_skip",
        "FAILED sample/test_sample.py::test_service_missing",
        "FAILED sample/test_sample.py::test_module_missing",
        "SKIPPED not applicable: SQLite pragmas on PostgreSQL",
        "SKIPPED long variant: set FMOPS_TEST_LONG=1 (make test-long)",
        "XFAIL sample/test_sample.py::test_expected_failure",
    }, stdout
    assert "FMOPS_TEST_REQUIRE_SERVICES=1 makes a skip a failure" in stdout


def test_locally_a_missing_service_is_a_skip(sample: Path) -> None:
    stdout = _run(sample, required=False)
    assert "5 skipped, 1 xfailed" in stdout, stdout
    assert "SKIPPED Redis is not reachable" in _summary(stdout)


def test_a_template_migration_error_fails_as_a_migration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with postgres_database():  # reachable (or this test is `unavailable`)
        pass

    def broken(store: object) -> None:
        raise RuntimeError("relation already exists")

    # A template of its own: no other test process builds or drops it.
    monkeypatch.setattr(databases, "_TEMPLATE_PREFIX", "fmops_brokentmpl_")
    monkeypatch.setattr(databases, "_migrations_hash", lambda: "test")
    monkeypatch.setattr(databases, "upgrade", broken)
    with (
        pytest.raises(TemplateMigrationError, match="relation already exists"),
        postgres_database(migrated=True),
    ):
        pass
