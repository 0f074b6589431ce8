"""The console's Data pages in a real browser against a real server: a file imported through the page
(detection and skipped rows shown), rows paged and searched without a reload, two versions compared, a
curation report with near-duplicate pairs and their similarity, lineage back to an import and to a
trace filter (linked to the explorer) and forward to derived versions and fine-tunes; hostile records,
metadata, file names and reports show as text and run nothing.

Versions other than the imported one are made with the datasets service directly, in the shapes the
curation steps and the traces export write, against the server's own database and artifact store.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Page, expect

from fmops.artifacts import ArtifactStore
from fmops.curation.recipe import load_recipe
from fmops.curation.runner import CurationRun
from fmops.datasets import DatasetService, RecordKind
from fmops.settings import load_settings
from fmops.store import Store
from fmops.store.models import Job
from support.browser import create_user_key, screenshot, sign_in, watch_dialogs
from support.security import server_store
from support.server import RunningServer, start_server

pytestmark = pytest.mark.slow  # one server and Chromium for the module: ~40 s in all

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'><svg onload=alert(3)>"
ROWS = 45
REMOVED = range(40, 45)  # the rows the near-duplicate step drops
BODY_LIMIT = 1024 * 1024  # the server's, so that a file over it is small to make


def _chat(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"Question {i:02d}: where is parcel {i}?"},
            {"role": "assistant", "content": f"Answer {i:02d}: it ships tomorrow."},
        ],
        "tools": None,
        "metadata": {"split": "train"},
    }


@dataclass
class World:
    server: RunningServer
    engineer_key: str
    consumer_key: str
    job_id: str
    finetune_id: str


def _seed(service: DatasetService, store: Store, project_id: str) -> dict[str, Any]:
    v1 = service.create_version(
        project_id=project_id,
        name="support",
        kind=RecordKind.chat,
        batches=[[_chat(i) for i in range(ROWS)]],
        source={"type": "import", "file": "support.jsonl", "format": "jsonl", "shape": "openai"},
        counts={"in": ROWS, "out": ROWS, "skipped": 0},
    )
    with store.session() as session:
        job = Job(
            project_id=project_id, kind="datasets.curate", params={"dataset": v1.id}, status="succeeded"
        )
        session.add(job)
        session.flush()
        job_id = job.id
    pairs = [
        {
            "row": i,
            "kept_row": i - 40,
            "text": f"Question {i:02d}: where is my parcel?",
            "kept_text": f"Question {i - 40:02d}: where is my parcel",
            "similarity": 0.9123,
        }
        for i in REMOVED
    ]
    counts = {
        "in": ROWS,
        "out": ROWS - len(REMOVED),
        "removed": {"near_duplicate": len(REMOVED)},
        "modified": {},
    }
    step = {"dedup": {"method": "minhash", "threshold": 0.8}}
    v2 = service.create_version(
        project_id=project_id,
        name="support",
        kind=RecordKind.chat,
        batches=[[_chat(i) for i in range(ROWS) if i not in REMOVED]],
        parent_id=v1.id,
        source={"type": "curation", "job_id": job_id, "step_index": 0},
        recipe={"steps": [step]},
        step=step,
        counts=counts,
        report={"step": "dedup", **counts, "examples": {"near_duplicate": pairs}, "clusters": 40},
    )
    with store.session() as session:
        # One names the version; one the bare dataset, its result the version it resolved (as the job does).
        # Not queued: the server's workers would run it.
        failed = Job(project_id=project_id, kind="finetune", params={"dataset": v2.ref}, status="failed")
        finetune = Job(
            project_id=project_id,
            kind="finetune",
            params={"dataset": "support", "method": "sft"},
            status="succeeded",
            result={"model": "support-ft", "dataset": v2.ref, "dataset_version_id": v2.id},
        )
        session.add_all([failed, finetune])
        session.flush()
        finetune_id = finetune.id
    service.create_version(
        project_id=project_id,
        name="answers-preferred",
        kind=RecordKind.preference,
        batches=[
            [
                {
                    "prompt": [{"role": "user", "content": "Can I pay by invoice?"}],
                    "chosen": [{"role": "assistant", "content": "Yes, for business accounts."}],
                    "rejected": [{"role": "assistant", "content": "No."}],
                    "metadata": {"trace_id": "ab" * 16},
                }
            ]
        ],
        source={
            "type": "traces",
            "filter": {"model": "talker", "feedback": "positive", "min_score": 0.5},
            "trace_ids": 1,
        },
    )
    service.create_version(
        project_id=project_id,
        name="triage-eval",
        kind=RecordKind.eval,
        batches=[
            [{"input": "My card was charged twice", "expected": {"category": "billing"}, "metadata": {}}]
        ],
        source={"type": "import", "file": "triage.csv", "format": "csv", "shape": "eval"},
    )
    hostile = {"messages": [{"role": "user", "content": XSS}, {"role": "assistant", "content": XSS}]}
    hostile_v1 = service.create_version(
        project_id=project_id,
        name="hostile",
        kind=RecordKind.chat,
        batches=[[{**hostile, "metadata": {XSS: XSS}}]],
        source={"type": "import", "file": f"{XSS}.jsonl", "format": "jsonl"},
    )
    xss_counts = {"in": 2, "out": 1, "removed": {XSS: 1}, "modified": {}}
    service.create_version(
        project_id=project_id,
        name="hostile",
        kind=RecordKind.chat,
        batches=[[{**hostile, "metadata": {}}]],
        parent_id=hostile_v1.id,
        source={"type": "traces", "filter": {"q": XSS, XSS: XSS}},
        step={XSS: {XSS: XSS}},
        counts=xss_counts,
        report={
            **xss_counts,
            "examples": {XSS: [{"text": XSS, "kept_text": XSS, "similarity": 1}, {"text": XSS}]},
        },
    )
    service.create_version(  # derived into another dataset: its parent is linked across datasets
        project_id=project_id,
        name="support-held-out",
        kind=RecordKind.chat,
        batches=[[_chat(i) for i in range(3)]],
        parent_id=v1.id,
        source={"type": "curation", "job_id": "0" * 32, "step_index": 0},
        step={"split": {"test": 0.1, "seed": 0}},
        counts={"in": ROWS, "out": 3},
    )
    service.create_version(
        project_id=project_id,
        name="reviewed",
        kind=RecordKind.chat,
        batches=[[_chat(1)]],
        source={"type": "annotation", "queue_id": "a" * 32, "queue": "triage", "filter": {"model": "talker"}},
    )
    _curate(service, project_id)
    return {"job_id": job_id, "finetune_id": finetune_id}


def _curate(service: DatasetService, project_id: str) -> None:
    """A real curation run (what the `datasets.curate` job runs): exact and near-duplicate removal and a
    length filter over tickets with planted duplicates, one version per step with the steps' reports."""
    answer = "the parcel left our warehouse this morning and should reach you within three working days"
    tickets = [
        {
            "messages": [
                {"role": "user", "content": f"Order {i}: where is my parcel?"},
                {"role": "assistant", "content": f"{answer} thanks for order {i}"},
            ]
        }
        for i in range(12)
    ]
    tickets += [
        tickets[0],
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]},
    ]
    start = service.create_version(
        project_id=project_id, name="tickets", kind=RecordKind.chat, batches=[tickets]
    )
    steps = [
        {"dedup": {"method": "exact"}},
        {"dedup": {"method": "minhash", "threshold": 0.7}},
        {"filter": {"min_chars": 20}},
    ]
    CurationRun(datasets=service, project_id=project_id, recipe=load_recipe({"steps": steps})).run(start)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("console-data")
    with start_server(home, {"FMOPS_MAX_BODY_BYTES": str(BODY_LIMIT)}) as server:
        with server.client() as admin:
            project_id = admin.get("/api/me").json()["project_id"]
        with server_store(server) as store:
            settings = load_settings({"home": server.home, "database_url": store.url})
            service = DatasetService(store, ArtifactStore.from_settings(settings))
            seeded = _seed(service, store, project_id)
        yield World(
            server=server,
            engineer_key=create_user_key(server, "dora", "engineer"),
            consumer_key=create_user_key(server, "carl", "consumer"),
            **seeded,
        )


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(
        b"".join(orjson.dumps(r) + b"\n" if not isinstance(r, bytes) else r + b"\n" for r in rows)
    )
    return path


def test_an_engineer_imports_a_file_and_sees_what_was_detected(
    world: World, page: Page, tmp_path: Path
) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/data")
    expect(page.locator("nav.sidebar")).to_contain_text("Datasets")
    table = page.locator("[data-testid=datasets]")
    expect(table.locator("tr[data-dataset=support] td").nth(2)).to_have_text("2")  # versions
    expect(table.locator("tr[data-dataset=support] td").nth(3)).to_have_text("40")  # rows of the newest

    sharegpt = [
        {
            "conversations": [
                {"from": "human", "value": f"How do I reset password {i}?"},
                {"from": "gpt", "value": "Use the link."},
            ]
        }
        for i in range(3)
    ]
    upload = _jsonl(tmp_path / "faq.jsonl", [*sharegpt, b"{not json"])
    page.evaluate("window.__same_page = true")
    page.set_input_files("[data-testid=import-file]", str(upload))
    page.fill(".import-form input[name=name]", "faq")
    page.select_option(".import-form select[name=on_error]", "skip")
    page.click(".import-form button[type=submit]")
    result = page.locator("[data-testid=import-result]")
    expect(result.locator("[data-testid=detection]")).to_have_text(
        "format jsonl, shape sharegpt -> chat records"
    )
    expect(result.locator("[data-testid=rows-kept]")).to_have_text("3")
    expect(result.locator("[data-testid=rows-skipped]")).to_have_text("1")
    expect(result.locator("[data-testid=row-errors]")).to_contain_text("line 4")
    expect(table.locator("tr[data-dataset=faq] td").nth(3)).to_have_text("3")  # the list, updated in place
    assert page.evaluate("window.__same_page") is True
    screenshot(page, "console-data-import", tmp_path)

    # A file over the server's body limit is refused in the page, before its upload, with what to do instead.
    big = {"name": "big.jsonl", "mimeType": "application/jsonl", "buffer": b" " * (BODY_LIMIT + 1)}
    page.set_input_files("[data-testid=import-file]", files=[big])
    message = page.locator("[data-testid=import-file]").evaluate("el => el.validationMessage")
    assert "the console takes files up to 1.0 MiB" in message
    assert "fmops data import" in message
    page.click(".import-form button[type=submit]")
    expect(result.locator("[data-testid=detection]")).to_have_text(
        "format jsonl, shape sharegpt -> chat records"
    )
    page.set_input_files("[data-testid=import-file]", str(upload))

    # A file refused whole: the reason, with the line, where the page shows errors; nothing is made.
    page.select_option(".import-form select[name=on_error]", "refuse")
    page.fill(".import-form input[name=name]", "faq-strict")
    page.click(".import-form button[type=submit]")
    expect(page.locator("#flash .flash.error")).to_contain_text("line 4")

    page.click("[data-testid=imported-version]")
    expect(page).to_have_url(f"{world.server.url}/console/data/faq/versions/1")
    expect(page.locator(".record").first.locator(".bubble.user .text")).to_have_text(
        "How do I reset password 0?"
    )
    expect(page.locator(".record").first.locator(".bubble.assistant .text")).to_have_text("Use the link.")
    expect(page.locator("[data-testid=lineage] .source")).to_contain_text("faq.jsonl")
    page.goto(f"{world.server.url}/console/data")
    expect(table.locator("tr[data-dataset=faq]")).to_have_count(1)
    expect(table.locator("tr[data-dataset=faq-strict]")).to_have_count(0)  # the refused file made nothing
    assert dialogs == []


def test_rows_are_paged_and_searched_without_a_reload(world: World, page: Page, tmp_path: Path) -> None:
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/data/support/versions/1")
    records = page.locator("#rows .record")
    summary = page.locator("[data-testid=rows-summary]")
    expect(summary).to_have_text("Rows 1–20 of 45")
    expect(records).to_have_count(20)
    screenshot(page, "console-data-version", tmp_path)
    page.evaluate("window.__same_page = true")
    page.click("[data-testid=next]")
    expect(summary).to_have_text("Rows 21–40 of 45")
    expect(page).to_have_url(re.compile(r"/console/data/support/versions/1\?offset=20$"))
    page.click("[data-testid=next]")
    expect(summary).to_have_text("Rows 41–45 of 45")
    expect(records).to_have_count(5)
    expect(page.locator("[data-testid=next]")).to_have_count(0)
    expect(records.first).to_have_attribute("data-row", "41")
    page.click("[data-testid=previous]")
    expect(summary).to_have_text("Rows 21–40 of 45")

    expect(page.locator("[data-testid=jump]")).to_have_value("21")
    page.fill("#rows input[type=search]", "question 1")  # case-insensitive: Question 10 to 19; from match 1
    page.press("#rows input[type=search]", "Enter")
    expect(summary).to_have_text("Matches 1–10 for “question 1”")
    expect(records.first).to_have_attribute("data-row", "11")
    expect(records.first.locator(".bubble.user mark")).to_have_text("Question 1")
    assert page.evaluate("window.__same_page") is True
    assert "q=question+1" in page.url

    entries = page.evaluate("history.length")
    page.goto(page.url)  # the shared URL shows the same rows (fetched after the page paints)
    expect(records).to_have_count(10)
    assert "q=question+1" in page.url
    # Loading the current URL again replaces its entry; the deferred rows pushed none of their own.
    assert page.evaluate("history.length") == entries
    expect(page.locator("#rows input[type=search]")).to_have_value("question 1")
    page.fill("[data-testid=jump]", "4")  # from the 4th match
    page.press("[data-testid=jump]", "Enter")
    expect(summary).to_have_text("Matches 4–10 for “question 1”")
    expect(records.first).to_have_attribute("data-row", "14")
    expect(page).to_have_url(re.compile(r"q=question\+1&offset=3$"))


def test_two_versions_are_compared_from_the_dataset_page(world: World, page: Page, tmp_path: Path) -> None:
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/data/support")
    versions = page.locator("[data-testid=versions] tbody tr")
    expect(versions).to_have_count(2)
    expect(versions.nth(1)).to_contain_text("└")  # v2 under v1, its parent
    expect(versions.nth(1)).to_contain_text("dedup (method=minhash, threshold=0.8)")
    expect(versions.nth(0)).to_contain_text("Imported file")
    form = page.locator("[data-testid=compare]")
    expect(form.locator("select[name=a]")).to_have_value("1")
    expect(form.locator("select[name=b]")).to_have_value("2")
    form.locator("button").click()
    expect(page).to_have_url(f"{world.server.url}/console/data/support/diff?a=1&b=2")
    expect(page.locator("[data-testid=diff-rows]")).to_be_visible()  # fetched after the page painted
    expect(page.locator("[data-testid=removed]")).to_have_text("−5")
    expect(page.locator("[data-testid=added]")).to_have_text("+0")
    removed = page.locator("[data-testid=removed-examples] .record")
    expect(removed).to_have_count(5)
    expect(removed.first.locator(".bubble.user .text")).to_have_text("Question 40: where is parcel 40?")
    screenshot(page, "console-data-diff", tmp_path)

    page.select_option("form.compare select[name=a]", "2")
    page.select_option("form.compare select[name=b]", "1")
    page.click("form.compare button")
    expect(page.locator("[data-testid=added]")).to_have_text("+5")


def test_a_curation_report_and_the_lineage_of_a_version(world: World, page: Page, tmp_path: Path) -> None:
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/data/support/versions/2")
    report = page.locator("[data-testid=report]")
    expect(report).to_contain_text("dedup (method=minhash, threshold=0.8)")
    expect(report.locator("[data-testid=counts]")).to_have_text("45 in → 40 out; removed: near_duplicate 5")
    reason = report.locator("[data-reason=near_duplicate]")
    expect(reason.locator("h3")).to_contain_text("removed 5")
    pairs = reason.locator("[data-testid=pair]")
    expect(pairs).to_have_count(5)
    expect(pairs.first.locator("[data-testid=similarity]")).to_have_text("0.912")
    expect(pairs.first.locator(".side.kept")).to_contain_text("Question 00: where is my parcel")
    expect(pairs.first.locator(".side.removed")).to_contain_text("Question 40: where is my parcel?")
    expect(pairs.first.locator("header")).to_contain_text("row 41; kept row 1")
    screenshot(page, "console-data-report", tmp_path)

    lineage = page.locator("[data-testid=lineage]")
    steps = lineage.locator("ol.lineage > li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("support@2")
    expect(steps.nth(0).locator(".source")).to_contain_text("Curation job")
    expect(steps.nth(0).locator(".source")).to_contain_text(world.job_id)
    expect(steps.nth(0).locator(".source .badge")).to_have_text("succeeded")
    expect(steps.nth(1)).to_contain_text("support@1")
    expect(steps.nth(1).locator(".source")).to_contain_text("support.jsonl")
    finetunes = lineage.locator("[data-testid=finetunes] tbody tr")
    expect(finetunes).to_have_count(2)
    expect(finetunes.filter(has_text=world.finetune_id)).to_contain_text("support-ft")
    expect(finetunes.filter(has_text=world.finetune_id).locator("a")).to_have_attribute(
        "href", f"/console/finetunes/{world.finetune_id}"
    )
    expect(lineage.locator("[data-testid=finetune-this]")).to_have_attribute(
        "href", "/console/finetunes/new?dataset=support%402"
    )
    expect(page.locator("[data-testid=diff-parent]")).to_have_attribute(
        "href", "/console/data/support/diff?a=1&b=2"
    )
    steps.nth(1).locator("a.what").click()
    expect(page).to_have_url(f"{world.server.url}/console/data/support/versions/1")
    expect(page.locator("[data-testid=children]")).to_contain_text("support@2")
    expect(page.locator("[data-testid=children]")).to_contain_text("support-held-out@1")
    page.goto(f"{world.server.url}/console/data/support-held-out")
    parent = page.locator("[data-testid=versions] tbody tr").first.locator("td").nth(3)
    expect(parent.locator("a")).to_have_attribute("href", "/console/data/support/versions/1")
    expect(page.locator("[data-testid=versions]")).to_contain_text("split (test=0.1, seed=0)")
    expect(page.locator("[data-testid=finetunes]")).to_have_count(0)  # the fine-tune used v2, not v1

    page.goto(f"{world.server.url}/console/data/answers-preferred/versions/1")
    record = page.locator("#rows .record").first
    expect(record.locator(".side.chosen .bubble .text")).to_have_text("Yes, for business accounts.")
    expect(record.locator(".side.rejected .bubble .text")).to_have_text("No.")
    expect(record.locator("[data-testid=trace-link]")).to_have_attribute(
        "href", "/console/traces/" + "ab" * 16
    )
    source = page.locator("[data-testid=lineage] .source").first
    expect(source.locator("[data-testid=source-link]")).to_have_attribute(
        "href", "/console/traces?model=talker&feedback=positive&spans=all"
    )
    expect(source).to_contain_text("leaves out: min_score")
    source.locator("[data-testid=source-link]").click()
    expect(page.locator("input[name=model]")).to_have_value("talker")

    page.goto(f"{world.server.url}/console/data/reviewed/versions/1")
    expect(page.locator("[data-testid=lineage] .source")).to_contain_text("Annotation queue")
    expect(page.locator("[data-testid=source-link]")).to_have_attribute(
        "href", "/console/annotation/" + "a" * 32
    )
    expect(page.locator("[data-testid=lineage] .source")).to_contain_text("triage")

    page.goto(f"{world.server.url}/console/data/triage-eval/versions/1")
    case = page.locator("#rows .record").first
    expect(case.locator(".side.input")).to_contain_text("My card was charged twice")
    expect(case.locator(".side.expected")).to_contain_text('"category": "billing"')


def test_the_reports_of_a_real_curation_run(world: World, page: Page) -> None:
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/data/tickets")
    rows = page.locator("[data-testid=versions] tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.nth(3).locator(".tree")).to_have_text("└")  # v4 under v3 under v2 under v1
    expect(rows.nth(3)).to_contain_text("filter (min_chars=20")

    page.goto(f"{world.server.url}/console/data/tickets/versions/2")
    exact = page.locator("[data-reason=duplicate]")
    expect(exact.locator("h3")).to_contain_text("removed 1")
    expect(exact.locator("[data-testid=pair] .side.kept")).to_contain_text("Order 0: where is my parcel?")
    expect(exact.locator("[data-testid=similarity]")).to_have_count(0)  # exact: no similarity to show

    page.goto(f"{world.server.url}/console/data/tickets/versions/3")
    near = page.locator("[data-reason=near_duplicate]")
    expect(near.locator("h3")).to_contain_text("removed 11")
    pairs = near.locator("[data-testid=pair]")
    expect(pairs).to_have_count(11)
    expect(pairs.first.locator("[data-testid=similarity]")).to_have_text("0.750")
    expect(pairs.first.locator(".side.removed")).to_contain_text("thanks for order 1")
    expect(pairs.first.locator(".side.kept")).to_contain_text("thanks for order 0")
    expect(page.locator("[data-testid=step-details]")).to_contain_text("clusters")

    page.goto(f"{world.server.url}/console/data/tickets/versions/4")
    short = page.locator("[data-reason=too_short] [data-testid=example]")
    expect(short).to_have_text("hi\nok")
    expect(page.locator("[data-testid=lineage] ol.lineage > li")).to_have_count(4)
    expect(page.locator("[data-testid=rows-summary]")).to_have_text("Rows 1–1 of 1")


def test_hostile_records_names_and_reports_show_as_text(world: World, page: Page, tmp_path: Path) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/data/hostile/versions/1")
    expect(page.locator(".record .bubble.user .text")).to_have_text(XSS)
    expect(page.locator(".record dl.meta")).to_contain_text(XSS)
    expect(page.locator("[data-testid=lineage] .source")).to_contain_text(f"{XSS}.jsonl")
    page.fill("#rows input[type=search]", XSS)
    page.press("#rows input[type=search]", "Enter")
    expect(page.locator("[data-testid=rows-summary]")).to_contain_text(XSS)
    expect(page.locator("#rows .record")).to_have_count(1)

    page.goto(f"{world.server.url}/console/data/hostile/versions/2")
    report = page.locator("[data-testid=report]")
    expect(report.locator("[data-testid=pair] .side.removed")).to_have_text(re.compile(re.escape(XSS)))
    expect(report.locator("[data-testid=example]")).to_contain_text(XSS)
    expect(report).to_contain_text(f"Step {XSS} ({XSS}=")  # the step (its line is cut at 200 characters)
    expect(page.locator("[data-testid=lineage] .source").first).to_contain_text(XSS)
    page.goto(f"{world.server.url}/console/data/hostile/diff?a=1&b=2")
    expect(page.locator("[data-testid=removed-examples] dl.meta")).to_contain_text(XSS)

    # A hostile dataset name typed into the import form is refused, and the refusal shows it as text.
    page.goto(f"{world.server.url}/console/data")
    page.set_input_files(
        "[data-testid=import-file]", str(_jsonl(tmp_path / "x.jsonl", [{"prompt": "a", "completion": "b"}]))
    )
    page.locator(".import-form input[name=name]").evaluate(
        "(el, v) => { el.removeAttribute('pattern'); el.value = v; }", XSS
    )
    page.click(".import-form button[type=submit]")
    expect(page.locator("#flash .flash.error")).to_contain_text("invalid dataset name")
    expect(page.locator("#flash .flash.error")).to_contain_text(XSS[:50])  # repr() escapes the quote

    assert page.locator("img[src=x], svg[onload], script:not([src])").count() == 0
    assert dialogs == []


@contextmanager
def _signed_in(server: RunningServer, key: str) -> Iterator[tuple[httpx.Client, str]]:
    """A cookie session as a browser holds it, and its CSRF token (read from the page)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/login", data={"api_key": key})
        token = re.search(r'data-csrf="([^"]+)"', client.get("/console/data").text)
        yield client, token.group(1) if token else ""


def test_errors_and_roles_over_http(world: World, tmp_path: Path) -> None:
    with _signed_in(world.server, world.engineer_key) as (client, csrf):
        for path, status, message in (
            ("/console/data/nothing-here", 404, "no dataset 'nothing-here' in this project"),
            ("/console/data/support/versions/9", 404, "dataset 'support' has no version 9 (newest: 2)"),
            ("/console/data/support/diff?a=1&b=1", 400, "choose two different versions"),
            ("/console/data/support/diff?a=1&b=7", 404, "has no version 7"),
            ("/console/data/support/diff/rows?a=2&b=2", 400, "choose two different versions"),
            ("/console/data/support/versions/1?limit=100000", 400, "limit"),
            ("/console/data/support/versions/1?offset=-1", 400, "offset"),
            ("/console/data/support/versions/1?q=" + "x" * 501, 400, "q"),
        ):
            answer = client.get(path)
            assert answer.status_code == status, (path, answer.text)
            assert message in html.unescape(answer.text), (path, answer.text)
        fragment = client.get("/console/data/support/versions/1?row=41", headers={"HX-Request": "true"})
        assert fragment.text.lstrip().startswith('<div id="rows"'), fragment.text[:200]
        assert fragment.headers["hx-push-url"] == "/console/data/support/versions/1?offset=40"
        assert len(re.findall(r'class="record ', fragment.text)) == 5
        beyond = client.get("/console/data/support/versions/1?offset=1000")
        assert "No rows past row 1,000." in beyond.text

        upload = {"file": ("notes.txt", b"hello", "text/plain")}
        stale = client.post("/console/data/import", files=upload, data={"name": "notes"})
        assert stale.status_code == 403
        for data, files, message in (
            ({"name": "notes"}, upload, "cannot tell the format of notes.txt"),
            ({"name": "x", "kind": "poem"}, upload, "kind must be one of chat, completion, preference, eval"),
            ({"name": "../up"}, {"file": ("a.jsonl", b"{}", "application/json")}, "invalid dataset name"),
            (
                {"name": "half"},
                {"file": ("half.jsonl", b'{"prompt": "a", "completion": "b"}\n{"prompt": 1}\n', "x")},
                "line 2",
            ),
        ):
            answer = client.post(
                "/console/data/import",
                files=files,
                data={**data, "csrf_token": csrf},
                headers={"HX-Request": "true"},
            )
            assert answer.status_code == 400, (data, answer.text)
            assert message in html.unescape(answer.text), (data, answer.text)
        named = client.post(
            "/console/data/import",
            files={"file": ("notes.txt", b'{"prompt": "a", "completion": "b"}\n', "text/plain")},
            data={"name": "notes", "format": "jsonl", "csrf_token": csrf},
            headers={"HX-Request": "true"},
        )
        assert named.status_code == 200, named.text
        assert "format jsonl, shape prompt_completion -&gt; completion records" in named.text
        odd = client.post(
            "/console/data/import",
            files=upload,
            data={"name": "notes", "format": "xml", "csrf_token": csrf},
            headers={"HX-Request": "true"},
        )
        assert odd.status_code == 400
        assert "format must be one of jsonl, csv, parquet, not &#39;xml&#39;" in odd.text
        good = client.post(
            "/console/data/import",
            files={"file": ("cases.csv", b"input,expected\nhello,world\n", "text/csv")},
            data={"csrf_token": csrf},
        )
        assert good.status_code == 200, good.text
        assert "format csv, shape eval -&gt; eval records" in good.text  # a plain form: the whole page
        assert 'data-dataset="cases"' in good.text
        listing = client.get("/console/data").text
        assert 'data-dataset="half"' not in listing  # the refused import made nothing

    with _signed_in(world.server, world.consumer_key) as (consumer, _):
        for path in ("/console/data", "/console/data/support", "/console/data/support/versions/1"):
            denied = consumer.get(path)
            assert denied.status_code == 403, path
            assert "Question" not in denied.text
