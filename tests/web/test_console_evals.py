"""The console's Evaluate section against a real server whose workers run eval jobs through the gateway
to the mock upstream: suites and runs, the "New eval run" form (every problem of a suite listed, a 400,
nothing queued), a run's aggregates and per-case table with its filters and pages, two runs and two
targets compared with the paired test and the cases that changed, the model-selection view with the
recommendation of `fmops.evals.select.rank`, the role gate, and a run started in Chromium and followed
live to its table.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect
from sqlalchemy import select

from fmops.evals.select import rank
from fmops.store import Store
from fmops.store.models import User
from fmops.web.routers.console_evals_chart import scatter
from support.browser import create_user_key, member_session, screenshot, sign_in, web_session
from support.gateway import add_models, openai_model
from support.mock_upstream import MockUpstream
from support.server import RunningServer

REPLY = "Hello from the mock upstream."
PRICES = ("--input-price", "1.0", "--output-price", "2.0")
# 30 cases: the last two expect another answer (failures); 28 pass exact match.
CASES = [{"input": f"case {i}", "expected": REPLY if i < 28 else "nope"} for i in range(30)]
SCORERS = [
    {"name": "exact_match", "threshold": 0.5},
    {"name": "regex", "config": {"pattern": "^Hello"}},
]
DONE = ("succeeded", "failed", "cancelled")

pytestmark = pytest.mark.slow  # one server, a few runs against the mock and Chromium: ~60 s in all


def suite(name: str, targets: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "cases": CASES, "targets": targets, "scorers": SCORERS, **extra}


@pytest.fixture(scope="module")
def server(sqlite_server: RunningServer, mock: MockUpstream) -> RunningServer:
    add_models(
        sqlite_server.home,
        {
            "ev-fast": openai_model("m1", mock.url, *PRICES),
            "ev-fast2": openai_model("m1", mock.url, *PRICES),
            "ev-slow": openai_model("slow-5", mock.url),
            "ev-bad": openai_model("always-400", mock.url),
            "ev-ui": openai_model("slow-300", mock.url),
        },
    )
    return sqlite_server


@pytest.fixture(scope="module")
def engineer_key(server: RunningServer) -> str:
    return create_user_key(server, "eval-engineer", "engineer")


@pytest.fixture(scope="module")
def engineer(server: RunningServer, engineer_key: str) -> Iterator[tuple[httpx.Client, str]]:
    client, token = web_session(server, engineer_key)
    yield client, token
    client.close()


def _submit(engineer: tuple[httpx.Client, str], **fields: str) -> httpx.Response:
    client, token = engineer
    return client.post("/console/evals", data={"csrf_token": token, **fields})


def store_user_id(store: Store, name: str) -> str:
    with store.session() as session:
        user = session.scalars(select(User).where(User.name == name)).one()
        return user.id


def _started(answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text[:3000]
    found = re.fullmatch(r"/console/evals/runs/([0-9a-zA-Z]+)", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def _wait(server: RunningServer, run_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.client() as api:
        while True:
            run: dict[str, Any] = api.get(f"/api/evals/runs/{run_id}").json()
            if run["status"] in DONE:
                return run
            assert time.monotonic() < deadline, run
            time.sleep(0.2)


def _run_count(server: RunningServer) -> int:
    with server.client() as api:
        return len(api.get("/api/evals/runs", params={"limit": 500}).json()["data"])


@pytest.fixture(scope="module")
def runs(server: RunningServer, engineer: tuple[httpx.Client, str], mock: MockUpstream) -> dict[str, str]:
    """Three finished runs of the suite `triage`, started from the form as YAML text:
    base: main (ev-fast) and ev-slow answer alike; broken: main errors on every case (ev-bad);
    worse: main (ev-fast2, uncached) answers the first 10 cases wrongly (concurrency 1, scripted)."""
    base = suite("triage", [{"model": "ev-fast", "name": "main"}, {"model": "ev-slow"}])
    broken = suite("triage", [{"model": "ev-bad", "name": "main"}, {"model": "ev-slow"}])
    worse = suite("triage", [{"model": "ev-fast2", "name": "main"}], concurrency=1)
    found = {"base": _started(_submit(engineer, suite=yaml.safe_dump(base)))}
    assert _wait(server, found["base"])["status"] == "succeeded"
    found["broken"] = _started(_submit(engineer, suite=yaml.safe_dump(broken)))
    assert _wait(server, found["broken"])["status"] == "succeeded"
    mock.state.script.extend({"reply": "Something else."} for _ in range(10))
    found["worse"] = _started(_submit(engineer, suite=yaml.safe_dump(worse)))
    assert _wait(server, found["worse"])["status"] == "succeeded"
    mock.state.script.clear()
    return found


def test_the_section_lists_suites_and_runs(engineer: tuple[httpx.Client, str], runs: dict[str, str]) -> None:
    client, _ = engineer
    page = client.get("/console/evals")
    assert page.status_code == 200
    assert "<h3>Evaluate</h3>" in page.text  # the navigation's section
    assert 'href="/console/evals"' in page.text
    suite_row = re.search(r'<tr data-suite="triage">.*?</tr>', page.text, re.S)
    assert suite_row is not None
    assert re.search(r'<td class="num">3</td>', suite_row.group(0))  # three runs of it
    assert 'href="/console/evals/new?suite=triage"' in suite_row.group(0)
    for run_id in runs.values():
        assert f'data-run="{run_id}" data-status="succeeded"' in page.text
    row = re.search(rf'<tr data-run="{runs["base"]}".*?</tr>', page.text, re.S)
    assert row is not None
    assert "main <strong>0.967</strong>" in row.group(0)  # 28 cases score 1, two 0.5 (regex only)
    fragment = client.get("/console/evals", params={"suite": "triage"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert runs["worse"] in fragment.text


def test_run_again_fills_the_form_with_the_suite(
    engineer: tuple[httpx.Client, str], runs: dict[str, str]
) -> None:
    client, _ = engineer
    form = client.get("/console/evals/new", params={"suite": "triage"})
    assert form.status_code == 200
    area = re.search(r'<textarea name="suite"[^>]*>(.*?)</textarea>', form.text, re.S)
    assert area is not None
    loaded = yaml.safe_load(html.unescape(area.group(1)))
    assert loaded["name"] == "triage"
    assert len(loaded["cases"]) == 30
    missing = client.get("/console/evals/new", params={"suite": "no-such-suite"})
    assert missing.status_code == 404
    assert "no eval suite" in missing.text


def test_a_suite_with_problems_lists_them_all_with_a_400_and_queues_nothing(
    server: RunningServer, engineer: tuple[httpx.Client, str]
) -> None:
    before = _run_count(server)
    bad = {
        "name": "bad",
        "cases": {"dataset": "no-such-data"},
        "targets": [{"model": "ev-fsat"}],
        "scorers": [{"name": "exact_mtch"}],
    }
    answer = _submit(engineer, suite=yaml.safe_dump(bad))
    assert answer.status_code == 400
    problems = re.search(r'<ul data-testid="problems">(.*?)</ul>', answer.text, re.S)
    assert problems is not None
    items = [html.unescape(i) for i in re.findall(r"<li>(.*?)</li>", problems.group(1), re.S)]
    assert len(items) == 3, items
    assert any(i.startswith("cases.dataset") for i in items)
    assert any("ev-fsat" in i and "did you mean" in i for i in items)
    assert any("exact_mtch" in i and "did you mean 'exact_match'" in i for i in items)
    assert "ev-fsat" in answer.text  # the text sent comes back to be fixed
    for fields, words in [
        ({"suite": "name: [x"}, "not valid YAML"),
        ({"suite": "  "}, "paste a suite"),
        ({"suite": yaml.safe_dump(bad), "concurrency": "many"}, "concurrency"),
        ({"suite": yaml.safe_dump(bad), "candidates": "ev-fast"}, "at least two distinct"),
    ]:
        refused = _submit(engineer, **fields)
        assert refused.status_code == 400, (fields, refused.status_code)
        assert words in html.unescape(refused.text), words
    client, token = engineer
    upload = client.post(
        "/console/evals",
        data={"csrf_token": token, "suite": ""},
        files={"file": ("suite.yaml", b"\xff\xfe not text")},
    )
    assert upload.status_code == 400
    assert "not UTF-8" in upload.text
    no_csrf = client.post("/console/evals", data={"suite": yaml.safe_dump(bad)})
    assert no_csrf.status_code == 403
    assert _run_count(server) == before


def test_an_uploaded_suite_file_starts_a_run(
    server: RunningServer, engineer: tuple[httpx.Client, str]
) -> None:
    client, token = engineer
    text = yaml.safe_dump(suite("uploaded", [{"model": "ev-fast"}], cases=CASES[:3]))
    answer = client.post(
        "/console/evals", data={"csrf_token": token, "suite": ""}, files={"file": ("s.yaml", text.encode())}
    )
    run = _wait(server, _started(answer))
    assert run["suite"] == "uploaded"
    assert run["status"] == "succeeded"


def test_the_run_page_shows_aggregates_with_intervals_cost_latency_and_errors_apart(
    engineer: tuple[httpx.Client, str], runs: dict[str, str]
) -> None:
    client, _ = engineer
    page = client.get(f"/console/evals/runs/{runs['base']}")
    assert page.status_code == 200
    assert 'data-status="succeeded"' in page.text
    assert "hx-trigger" not in page.text.split('data-testid="live"')[1].split(">")[0]  # no polling once done
    main = re.search(r'<tr data-target="main">.*?</tr>', page.text, re.S)
    assert main is not None
    assert re.search(
        r"<strong>0\.9\d\d</strong> <span class=\"muted small\">\[0\.\d{3}, \d\.\d{3}\]", main.group(0)
    )
    assert re.search(r'data-scorer="exact_match">0\.933 <span class="muted small">\[', main.group(0))
    assert '<span class="badge ok">pass</span>' in main.group(0)  # 0.933 over its 0.5 threshold
    assert re.search(r"<td class=\"num\">0\.0000\d\d</td>", main.group(0))  # priced per case
    assert 'data-testid="comparisons"' in page.text  # main and ev-slow paired
    broken = client.get(f"/console/evals/runs/{runs['broken']}").text
    bad = re.search(r'<tr data-target="main">.*?</tr>', broken, re.S)
    assert bad is not None
    assert re.search(r'data-testid="errors"><span class="bad-text">30</span>', bad.group(0))
    assert '<td class="num">0 / 30</td>' in bad.group(0)  # none answered: no mean, not a 0
    assert "<strong>–</strong>" in bad.group(0)


def _matched(text: str) -> int:
    found = re.search(r'data-testid="matched">(\d+) case', text)
    assert found is not None
    return int(found.group(1))


def test_the_case_table_filters_disagreements_and_failures_and_pages(
    engineer: tuple[httpx.Client, str], runs: dict[str, str]
) -> None:
    client, _ = engineer
    path = f"/console/evals/runs/{runs['base']}"
    every = client.get(path).text
    assert _matched(every) == 30
    assert len(re.findall(r'<tr data-case="', every)) == 25  # the first page
    assert REPLY in every
    second = client.get(f"{path}/cases", params={"page": 2}, headers={"HX-Request": "true"})
    assert second.status_code == 200
    assert "<html" not in second.text
    assert len(re.findall(r'<tr data-case="', second.text)) == 5
    assert "page 2 of 2" in second.text
    failures = client.get(f"{path}/cases", params={"filter": "failures"}).text
    assert _matched(failures) == 2
    assert re.findall(r'<tr data-case="(\d+)"', failures) == ["28", "29"]  # expected "nope"
    assert _matched(client.get(f"{path}/cases", params={"filter": "disagreements"}).text) == 0  # alike
    broken = f"/console/evals/runs/{runs['broken']}/cases"
    disagree = client.get(broken, params={"filter": "disagreements"}).text
    assert _matched(disagree) == 30  # main errored, ev-slow answered
    assert '<span class="badge bad">error</span>' in disagree
    assert client.get(path, params={"filter": "wrong"}).status_code in (400, 422)
    assert client.get(path, params={"page": 0}).status_code in (400, 422)
    assert client.get("/console/evals/runs/nosuchrun").status_code == 404
    csv = client.get(f"{path}/export", params={"format": "csv"})
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == 61  # a header and 30 cases x 2 targets
    assert client.get(f"{path}/export", params={"format": "xml"}).status_code in (400, 422)


def test_two_runs_compared_with_the_paired_test_and_the_cases_that_changed(
    engineer: tuple[httpx.Client, str], runs: dict[str, str]
) -> None:
    client, _ = engineer
    page = client.get("/console/evals/compare", params={"a": runs["base"], "b": runs["worse"]})
    assert page.status_code == 200, page.text[:2000]
    row = re.search(r'<tr data-test="main">.*?</tr>', page.text, re.S)
    assert row is not None
    assert "<td>wilcoxon</td>" in row.group(0)  # weighted scores are graded (0.5: regex only)
    assert '<span class="badge bad">regression</span>' in row.group(0)  # 10 worse, none better
    assert '<td class="num" data-testid="p-value">0.00195</td>' in row.group(0)
    assert "10 in all, 0 better, 10 worse" in page.text
    assert len(re.findall(r'<tr data-change="\d+" class="worse">', page.text)) == 10
    targets = client.get(
        "/console/evals/compare", params={"a": runs["broken"], "target_a": "ev-slow", "target_b": "main"}
    ).text
    assert "30 in all" in targets  # answered, then errored on every case
    assert 'data-test="ev-slow vs main"' in targets or 'data-test="main vs ev-slow"' in targets
    for params, status, words in [
        ({"a": runs["worse"]}, 400, "has one target"),
        ({"a": runs["base"], "target_a": "zzz"}, 400, "no target 'zzz'"),
        ({"a": runs["base"], "target_a": "main", "target_b": "main"}, 400, "two different targets"),
        ({"a": "nosuchrun"}, 404, "no eval run"),
    ]:
        refused = client.get("/console/evals/compare", params=params)
        assert refused.status_code == status, (params, refused.status_code)
        assert words in html.unescape(refused.text)
    assert client.get("/console/evals/compare").status_code == 200  # the empty form


def test_the_selection_view_draws_each_candidate_and_says_what_select_says(
    server: RunningServer, engineer: tuple[httpx.Client, str], runs: dict[str, str]
) -> None:
    text = yaml.safe_dump(suite("choose", [{"model": "ev-fast"}], cases=CASES[:8]))
    run_id = _started(_submit(engineer, suite=text, candidates="ev-fast, ev-slow"))
    assert _wait(server, run_id)["status"] == "succeeded"
    with server.client() as api:
        run = api.get(f"/api/evals/runs/{run_id}").json()
        compared = api.get(f"/api/evals/runs/{run_id}/compare").json()
    expected = rank(run["summary"], compared, {})  # licences: shown in the ranking, not in the reason
    client, _ = engineer
    page = client.get(f"/console/evals/runs/{run_id}/select")
    assert page.status_code == 200
    assert f'data-testid="recommended">{expected["recommended"]}</strong>' in page.text
    reason = re.search(r'data-testid="reason">(.*?)</span>', page.text, re.S)
    assert reason is not None
    assert html.unescape(reason.group(1)) == expected["reason"]
    for key in ("latency", "cost"):
        chart = re.search(rf'data-testid="chart-{key}">.*?</svg>', page.text, re.S)
        assert chart is not None
        for model in ("ev-fast", "ev-slow"):
            assert f'data-candidate="{model}"' in chart.group(0)
        assert chart.group(0).count('class="error-bar"') == 6  # a bar and its two caps each
    assert 'class="candidate recommended"' in page.text
    one_target = client.get(f"/console/evals/runs/{runs['worse']}/select")
    assert one_target.status_code == 400
    assert "one target" in html.unescape(one_target.text)


def test_a_password_session_starts_a_run_that_calls_models_as_its_member(server: RunningServer) -> None:
    """A member signed in with a password has no key: the run's job calls models as the member (their
    role when it runs), and its spans name them."""
    client, token = member_session(server, "eval-member", "engineer", "a long passphrase 1")
    try:
        text = yaml.safe_dump(
            {
                "name": "by-member",
                "cases": [{"input": f"member case {i}", "expected": REPLY} for i in range(3)],  # not cached
                "targets": [{"model": "ev-fast"}],
                "scorers": SCORERS,
            }
        )
        run_id = _started(client.post("/console/evals", data={"csrf_token": token, "suite": text}))
    finally:
        client.close()
    run = _wait(server, run_id)
    assert run["status"] == "succeeded", run
    with server.client() as api:
        results = api.get(f"/api/evals/runs/{run_id}/results", params={"limit": 10}).json()["data"]
        assert len(results) == 3
        assert all(r["error"] is None for r in results), results
        spans = api.get("/api/traces", params={"user": "eval-member", "limit": 10}).json()["data"]
    assert len(spans) == 3, spans


def test_a_consumer_cannot_open_the_section(server: RunningServer) -> None:
    client, token = web_session(server, create_user_key(server, "eval-consumer", "consumer"))
    try:
        assert client.get("/console/evals").status_code == 403
        assert client.post("/console/evals", data={"csrf_token": token, "suite": "x"}).status_code == 403
    finally:
        client.close()


def test_a_run_started_in_the_browser_shows_progress_then_its_table(
    server: RunningServer, engineer_key: str, page: Page, tmp_path: Path
) -> None:
    cases = "\n".join(f'  - {{input: "ui case {i}", expected: "{REPLY}"}}' for i in range(12))
    text = (
        f"name: ui\nconcurrency: 1\ncases:\n{cases}\n"
        "targets:\n  - {model: ev-ui}\n  - {model: ev-fast}\nscorers:\n  - {name: exact_match}\n"
    )
    sign_in(page, server, engineer_key)
    page.goto(f"{server.url}/console/evals")
    page.get_by_test_id("new-run-link").click()
    page.get_by_test_id("suite").fill(text)
    page.get_by_test_id("start").click()
    expect(page).to_have_url(re.compile(r".*/console/evals/runs/[0-9a-zA-Z]+$"))
    # 12 calls of 300 ms (and 12 quick ones) one at a time: the live part reports partial progress.
    expect(page.get_by_test_id("message")).to_have_text(
        re.compile(r"^([1-9]|1\d|2[0-3])/24 results$"), timeout=30_000
    )
    expect(page.get_by_test_id("live")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator("#eval-cases[hx-trigger]")).to_have_count(0)  # the table's refresh has stopped
    expect(page.locator("#eval-cases tr[data-case]")).to_have_count(12)
    expect(page.get_by_test_id("matched")).to_have_text(re.compile(r"^12 cases"))
    page.locator('#eval-cases a[data-filter="failures"]').click()
    expect(page.get_by_test_id("cases")).to_have_attribute("data-filter", "failures")
    expect(page.get_by_test_id("matched")).to_have_text(re.compile(r"^0 cases"))
    screenshot(page, "console-eval-run", tmp_path)
    page.get_by_test_id("select-link").click()
    for key in ("latency", "cost"):
        expect(page.locator(f'[data-testid="chart-{key}"] g[data-candidate]')).to_have_count(2)
    expect(page.get_by_test_id("recommended")).to_have_text(re.compile(r"^ev-(ui|fast)$"))
    screenshot(page, "console-eval-select", tmp_path)


def test_the_scatter_draws_each_interval_on_the_score_axis() -> None:
    ranking = [
        {"model": "a", "score": 0.9, "ci": [0.8, 1.0], "p50_ms": 120.0},
        {"model": "b", "score": 0.5, "ci": None, "p50_ms": 40.0},
        {"model": "c", "score": None, "ci": None, "p50_ms": 10.0},  # answered nothing: not drawn
    ]
    chart = scatter(ranking, "p50_ms", "latency", "median latency (ms)", "a")
    a, b = chart.dots
    assert chart.left_out == ["c"]
    assert [label for _, label in chart.x_ticks] == ["0", "50", "100", "150"]
    assert a.recommended
    assert not b.recommended
    assert a.y_high < a.y < a.y_low  # the interval spans the mean (SVG's y grows downwards)
    assert a.y_high == chart.top  # a score of 1 is the top of the axis
    assert b.y_low == b.y == b.y_high  # no interval: no bar
    assert chart.left < b.x < a.x < chart.right_edge
