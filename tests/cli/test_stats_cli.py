"""`fmops stats` and `fmops projects retention`, the real console script against a home with known spans.

Each process start costs about a second of imports, so the commands run one after another in one
process (`run_session`, calling the console script's `main()` for each) and the tests read their results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmops.auth import AuthService
from fmops.store import Store
from support.cli_runs import Outcome, prepared, run_session, session_env
from support.databases import postgres_database, sqlite_url

STATS = [
    ("stats",),
    ("stats", "--since", "1h", "--by", "user", "--json"),
    ("stats", "--since", "2x"),
    ("stats", "--project", "nope"),
    ("stats", "--rollup"),
]


def run_all(home: Path, url: str, commands: list[tuple[str, ...]]) -> list[Outcome]:
    """The commands, in order, on an 80-column terminal, against `url`."""
    env = session_env(home, columns=80) | {"FMOPS_DATABASE_URL": url}
    return run_session(env, commands, cwd=home)


@pytest.fixture(scope="module")
def stats_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    home = tmp_path_factory.mktemp("stats-cli")
    url = sqlite_url(home)
    prepared(home, url)
    return run_all(home, url, STATS)


def test_table_and_sparklines(stats_runs: list[Outcome]) -> None:
    result = stats_runs[0]
    assert result.code == 0, str(result)
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), str(result)
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[0].startswith("last 24h, one bar per hour")
    requests = next(line for line in lines if line.startswith("requests"))
    assert "4 total" in requests
    assert set(requests.split()[1]) <= set("▁▂▃▄▅▆▇█ "), requests
    assert "█" in requests, "the busiest hour has the full bar"
    first, second = lines.index("by model"), lines.index("feedback and scores by model")
    cells = {
        line.split()[0]: line.split() for line in lines[first:second] if line.startswith(" ") and line.strip()
    }
    assert cells["gpt"][1:3] == ["3", "0.0%"], str(result)
    assert cells["claude"][1:3] == ["1", "100.0%"], str(result)
    assert cells["total"][1:3] == ["4", "25.0%"], str(result)


def test_json_output(stats_runs: list[Outcome]) -> None:
    result = stats_runs[1]
    assert result.code == 0, str(result)
    body = json.loads(result.stdout)
    assert body["bucket"] == "minute", "an hour fits the sparkline in minutes"
    assert [(r["group"], r["volume"]) for r in body["rows"]] == [({"user": None}, 1)], "the claude request"
    assert (body["total"]["volume"], body["total"]["errors"], body["total"]["latency_p50_ms"]) == (
        1,
        1,
        900.0,
    )
    assert sum(p["volume"] for p in body["points"]) == 1


@pytest.mark.parametrize(("index", "words"), [(2, "not a duration"), (3, "no project named 'nope'")])
def test_mistakes_are_one_line(stats_runs: list[Outcome], index: int, words: str) -> None:
    result = stats_runs[index]
    assert result.code != 0, str(result)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: "), str(result)
    assert words in line, str(result)


def test_on_postgresql(tmp_path: Path) -> None:
    with postgres_database() as url:
        prepared(tmp_path, url)
        [result] = run_all(tmp_path, url, [("stats", "--json")])
    assert result.code == 0, str(result)
    body = json.loads(result.stdout)
    assert [(r["group"], r["volume"]) for r in body["rows"]] == [
        ({"model": "gpt"}, 3),
        ({"model": "claude"}, 1),
    ]
    assert body["total"]["latency_p50_ms"] == 250.0


def retention_days(url: str) -> int | None:
    store = Store(url)
    try:
        return AuthService(store).list_projects()[0][0].retention_days
    finally:
        store.dispose()


def test_project_retention(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    prepared(tmp_path, url)
    [seven] = run_all(tmp_path, url, [("projects", "retention", "default", "7")])
    assert seven.code == 0, str(seven)
    assert "traces kept for 7 days" in seven.stdout
    assert retention_days(url) == 7
    zero, unknown, back = run_all(
        tmp_path,
        url,
        [
            ("projects", "retention", "default", "0"),
            ("projects", "retention", "nope", "5"),
            ("projects", "retention", "default", "default"),
        ],
    )
    assert (zero.code, unknown.code, back.code) == (1, 1, 0)
    assert "between 1 and 36500" in zero.stderr, str(zero)
    assert "no project named 'nope'" in unknown.stderr, str(unknown)
    assert "the default, 30 days" in back.stdout, str(back)
    assert retention_days(url) is None


def test_rolling_up_an_upgraded_database_once(stats_runs: list[Outcome]) -> None:
    result = stats_runs[4]
    assert result.code == 0, str(result)
    assert result.stdout.startswith("rolled up "), str(result)
    assert " hours in " in result.stdout, str(result)
