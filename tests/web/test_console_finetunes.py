"""The console's Fine-tuning section against a real server and its job worker: the list, the "New
fine-tune" form (defaults shown as YAML, refusals inline with the service's 4xx and nothing queued),
a real fine-tune of a tiny random model started from the form and followed live in Chromium to its
curves and model, its lineage back to the dataset version, cancel and resume, and the role gates.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from markupsafe import escape
from playwright.sync_api import Page, expect

from finetune.tiny import chat_records, make_tiny_model
from fmops.errors import UserError
from fmops.finetune.config import Method
from fmops.store.models import EvalRun, Job
from fmops.web.routers.console_finetunes_chart import loss_chart
from fmops.web.routers.console_finetunes_form import defaults_yaml, settings_from_yaml
from support.browser import create_user_key, screenshot, sign_in, web_session
from support.security import server_store
from support.server import RunningServer, start_server

pytestmark = pytest.mark.slow  # one server, two tiny training runs and Chromium: ~40 s in all

# A few steps of the tiny model: seconds. Validation every 2 steps (save_steps) gives two eval points.
TINY_YAML = (
    "max_steps: 4\nlogging_steps: 1\nsave_steps: 2\nlearning_rate: 0.003\nnum_threads: 1\nlora:\n  r: 4\n"
)
LONG_YAML = "max_steps: 400\nlogging_steps: 1\nsave_steps: 1\nnum_threads: 1\nlora:\n  r: 4\n"
DONE = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("finetunes-home")
    # The tiny model is built (torch loads here: seconds) while the server starts in its own process.
    with ThreadPoolExecutor(1) as pool:
        built = pool.submit(make_tiny_model, home / "models" / "tiny")
        with start_server(home) as running:
            built.result()
            with running.client() as client:
                _import(client, "tickets", chat_records(24, validation=4), None)
                pair = {
                    "prompt": [{"role": "user", "content": "hi"}],
                    "chosen": [{"role": "assistant", "content": "hello"}],
                    "rejected": [{"role": "assistant", "content": "no"}],
                }
                _import(client, "pairs", [pair] * 3, None)
                _import(client, "cases", [{"input": "2+2", "expected": "4"}] * 3, "eval")
            yield running


def _import(client: httpx.Client, name: str, records: list[dict[str, Any]], kind: str | None) -> None:
    lines = "\n".join(json.dumps(r) for r in records).encode()
    data = {"name": name, **({"kind": kind} if kind else {})}
    response = client.post("/api/datasets/import", files={"file": (f"{name}.jsonl", lines)}, data=data)
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def engineer_key(web: RunningServer) -> str:
    return create_user_key(web, "ft-engineer", "engineer")


@pytest.fixture(scope="module")
def engineer(web: RunningServer, engineer_key: str) -> Iterator[tuple[httpx.Client, str]]:
    client, token = web_session(web, engineer_key)
    yield client, token
    client.close()


def _api_finetunes(web: RunningServer) -> list[dict[str, Any]]:
    with web.client() as api:
        data: list[dict[str, Any]] = api.get("/api/finetunes").json()["data"]
        return data


def _submit(engineer: tuple[httpx.Client, str], **fields: str) -> httpx.Response:
    client, token = engineer
    return client.post("/console/finetunes", data={"csrf_token": token, **fields})


def _wait(web: RunningServer, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with web.client() as api:
        while True:
            view: dict[str, Any] = api.get(f"/api/finetunes/{job_id}").json()
            if view["status"] in DONE:
                return view
            assert time.monotonic() < deadline, view
            time.sleep(0.3)


@pytest.fixture(scope="module")
def started(web: RunningServer, engineer: tuple[httpx.Client, str]) -> str:
    """A tiny fine-tune started through the form (not waited for: the browser test follows it live)."""
    answer = _submit(
        engineer, dataset="tickets@1", base="tiny", method="sft", config=TINY_YAML, name="tiny-triage"
    )
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/console/finetunes/([0-9a-f]+)", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def test_the_list_is_in_the_navigation_and_names_each_finetune(
    web: RunningServer, engineer: tuple[httpx.Client, str], started: str
) -> None:
    client, _ = engineer
    page = client.get("/console/finetunes")
    assert page.status_code == 200
    assert 'href="/console/finetunes"' in page.text  # the navigation's link, in the Data section
    row = re.search(rf'<tr data-finetune="{started}".*?</tr>', page.text, re.S)
    assert row is not None
    for text in ("tiny", "tickets@1", "sft", 'href="/console/data/tickets/versions/1"'):
        assert text in row.group(0)
    htmx = client.get("/console/finetunes", headers={"HX-Request": "true"})  # the table's own refresh
    assert htmx.status_code == 200
    assert "<html" not in htmx.text
    assert started in htmx.text


def test_the_form_shows_the_effective_defaults_and_only_trainable_datasets(
    engineer: tuple[httpx.Client, str],
) -> None:
    client, _ = engineer
    newest = client.get("/console/finetunes/new")
    assert newest.status_code == 200
    assert re.search(r'<option value="pairs@1" data-kind="preference" selected>', newest.text)  # newest first
    page = client.get("/console/finetunes/new", params={"dataset": "tickets@1"})
    assert page.status_code == 200
    assert 'value="tickets@1"' in page.text
    assert 'value="pairs@1"' in page.text
    assert "cases@1" not in page.text  # an eval dataset trains nothing
    area = re.search(r'<textarea name="config"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert area is not None
    shown = area.group(1).replace("&#39;", "'")
    assert "learning_rate: 0.0005" in shown
    assert "completion_only_loss: true" in shown
    assert "  r: 16" in shown
    assert "\nbf16:" not in shown  # chosen per device: a copy of the CPU default must not pin it
    assert '<option value="tiny">' in page.text  # local bases under $FMOPS_HOME/models are offered
    assert re.search(r'<option value="sft" selected>', page.text)
    assert re.search(r'<option value="dpo" selected>', newest.text)
    assert "beta: 0.1" in newest.text


def test_changing_the_dataset_brings_its_method_and_defaults(engineer: tuple[httpx.Client, str]) -> None:
    client, _ = engineer
    sft = defaults_yaml(Method.sft)
    params = {"dataset": "pairs@1", "method": "sft", "shown_method": "sft", "config": sft}
    headers = {"HX-Request": "true", "HX-Trigger-Name": "dataset"}
    swapped = client.get("/console/finetunes/new/config", params=params, headers=headers)
    assert swapped.status_code == 200
    assert '<option value="dpo" selected>' in swapped.text
    assert "beta: 0.1" in swapped.text
    edited = client.get(
        "/console/finetunes/new/config", params={**params, "config": "max_steps: 3\n"}, headers=headers
    )
    assert "max_steps: 3" in edited.text
    assert "your edits are kept" in edited.text


@pytest.mark.parametrize(
    ("fields", "status", "words", "param"),
    [
        ({"config": "max_steps: [1, 2\n"}, 400, "config is not valid YAML at line", "config"),
        ({"config": "- a\n- b\n"}, 400, "config must be a mapping", "config"),
        ({"config": "lora:\n  target_modules: &m [q_proj]\nx: *m\n"}, 400, "YAML alias", "config"),
        ({"config": "learnin_rate: 0.1\n"}, 400, "did you mean learning_rate", "config.learnin_rate"),
        ({"config": "max_steps: many\n"}, 400, "must be of type int", "config.max_steps"),
        ({"method": "dpo"}, 400, "trains on preference records", "dataset"),
        ({"dataset": "pairs@1", "method": "sft"}, 400, "trains on chat records", "dataset"),
        ({"dataset": "nope@1"}, 404, "nope", ""),
        ({"base": "../../etc"}, 400, "must live under", "base"),
        ({"name": "bad name!"}, 400, "name", "name"),
        ({"name": "smollm2-135m-instruct"}, 409, "already exists", "name"),
    ],
)
def test_refusals_come_back_inline_with_a_4xx_and_queue_nothing(
    web: RunningServer,
    engineer: tuple[httpx.Client, str],
    fields: dict[str, str],
    status: int,
    words: str,
    param: str,
) -> None:
    # Ids only: a job an earlier test started may still be moving (its progress changes meanwhile).
    before = [f["id"] for f in _api_finetunes(web)]
    sent = {"dataset": "tickets@1", "base": "tiny", "method": "sft", "config": "max_steps: 2\n", **fields}
    answer = _submit(engineer, **sent)
    assert answer.status_code == status, answer.text[:2000]
    error = re.search(r'data-testid="form-error" data-param="([^"]*)">(.*?)</p>', answer.text, re.S)
    assert error is not None, answer.text[:2000]
    assert words in error.group(2).replace("&#39;", "'")
    if param:
        assert error.group(1) == param
    assert f">{escape(sent['config'])}</textarea>" in answer.text  # the form comes back as sent
    assert [f["id"] for f in _api_finetunes(web)] == before


def test_a_form_without_the_csrf_token_is_refused(engineer: tuple[httpx.Client, str]) -> None:
    client, _ = engineer
    answer = client.post("/console/finetunes", data={"dataset": "tickets@1"})
    assert answer.status_code == 403


@pytest.mark.parametrize("role", ["consumer", "annotator"])
def test_roles_below_engineer_cannot_open_or_act(web: RunningServer, started: str, role: str) -> None:
    client, token = web_session(web, create_user_key(web, f"ft-{role}", role))
    try:
        assert 'href="/console/finetunes"' not in client.get("/console").text
        for path in ("/console/finetunes", "/console/finetunes/new", f"/console/finetunes/{started}"):
            assert client.get(path).status_code == 403, path
        for action in ("cancel", "resume"):
            answer = client.post(f"/console/finetunes/{started}/{action}", data={"csrf_token": token})
            assert answer.status_code == 403, action
        assert _submit((client, token), dataset="tickets@1").status_code == 403
    finally:
        client.close()


def test_the_detail_page_follows_the_run_live_to_its_curves_and_model(
    page: Page, web: RunningServer, engineer_key: str, started: str, tmp_path: Path
) -> None:
    sign_in(page, web, engineer_key)
    page.goto(f"{web.url}/console/finetunes/new?dataset=tickets@1")
    expect(page.get_by_test_id("config")).to_contain_text("completion_only_loss: true")
    page.get_by_test_id("dataset").select_option("pairs@1")  # preference pairs: DPO and its defaults
    expect(page.get_by_test_id("method")).to_have_value("dpo")
    expect(page.get_by_test_id("config")).to_contain_text("beta: 0.1")
    page.goto(f"{web.url}/console/finetunes/{started}")
    live = page.get_by_test_id("live")
    # The page polls itself: no reload between the queued job and its finished state.
    expect(live).to_have_attribute("data-status", "succeeded", timeout=120_000)
    expect(page.get_by_test_id("curve-train")).to_be_visible()
    assert page.get_by_test_id("curve-train").get_attribute("data-points") == "4"
    expect(page.get_by_test_id("curve-eval")).to_have_count(1)
    expect(page.get_by_test_id("step")).to_have_text("4 / 4")
    link = page.get_by_test_id("model-link")
    expect(link).to_have_text("tiny-triage")
    lineage = page.get_by_test_id("lineage")
    expect(lineage.locator("[data-lineage=dataset] a")).to_have_text("tickets@1")
    expect(lineage.locator("[data-lineage=model]")).to_contain_text("tiny-triage")
    screenshot(page, "console-finetune", tmp_path)
    link.click()
    expect(page.locator('tr[data-model="tiny-triage"]')).to_be_visible()


def test_a_finished_finetune_shows_its_model_lineage_and_refuses_cancel_and_resume(
    web: RunningServer, engineer: tuple[httpx.Client, str], started: str
) -> None:
    view = _wait(web, started)
    assert view["status"] == "succeeded", view
    client, token = engineer
    page = client.get(f"/console/finetunes/{started}")
    assert page.status_code == 200
    assert 'data-testid="curve-train" data-points="4"' in page.text
    assert 'data-testid="model-link"' in page.text
    assert "tiny-triage" in page.text
    assert f'href="/console/finetunes/{started}"' in page.text  # the job in the lineage
    assert 'href="/console/data/tickets/versions/1"' in page.text
    assert 'data-metric="final_loss"' in page.text
    assert 'data-testid="eval-runs"' not in page.text  # no eval run has called the model yet
    assert 'data-testid="cancel"' not in page.text
    assert 'data-testid="resume"' not in page.text
    assert "hx-trigger" not in page.text.split('data-testid="live"')[1].split(">")[0]  # polling stopped
    listed = client.get("/console/finetunes").text
    row = re.search(rf'<tr data-finetune="{started}".*?</tr>', listed, re.S)
    assert row is not None
    assert f"{view['lineage']['metrics']['final_loss']:.4f}" in row.group(0)
    for action, words in (("cancel", "nothing to cancel"), ("resume", "already succeeded")):
        answer = client.post(f"/console/finetunes/{started}/{action}", data={"csrf_token": token})
        assert answer.status_code == 409, action
        assert words in answer.text
    assert client.get("/console/finetunes/" + "0" * 32).status_code == 404
    assert f'href="/console/finetunes/new?from={started}"' in page.text
    again = client.get("/console/finetunes/new", params={"from": started})  # train again, same settings
    assert again.status_code == 200
    assert '<option value="tickets@1" data-kind="chat" selected>' in again.text
    assert 'name="base" value="tiny"' in again.text
    assert 'name="name" value=""' in again.text  # model names are unique: a new one is chosen
    area = re.search(r'<textarea name="config"[^>]*>(.*?)</textarea>', again.text, re.S)
    assert area is not None
    assert settings_from_yaml(html.unescape(area.group(1)), Method.sft) == {
        "max_steps": 4,
        "logging_steps": 1,
        "save_steps": 2,
        "learning_rate": 0.003,
        "num_threads": 1,
        "lora": {"r": 4},
    }


def test_eval_runs_that_called_the_model_end_its_lineage(
    web: RunningServer, engineer: tuple[httpx.Client, str], started: str
) -> None:
    """A run as `EvalService.start` records it (what each target resolved to); its job is not run here."""
    assert _wait(web, started)["status"] == "succeeded"
    targets = [
        {"name": "tuned", "kind": "model", "model": "tiny-triage", "prompt_version": None},
        {"name": "same-name-endpoint", "kind": "endpoint", "model": "tiny-triage", "prompt_version": None},
    ]
    with server_store(web) as store:
        with store.session() as session:
            job = session.get(Job, started)
            assert job is not None
            project_id = job.project_id
        with store.write() as session:
            session.add(
                EvalRun(
                    project_id=project_id,
                    suite_name="triage-suite",
                    definition={"targets": targets},
                    status="succeeded",
                    cases=3,
                    targets=2,
                    summary={"targets": [{"index": 0, "score": {"mean": 0.75}}, {"index": 1}]},
                )
            )
    client, _ = engineer
    page = client.get(f"/console/finetunes/{started}").text
    rows = re.findall(r'<tr data-eval-run="[0-9a-f]+">.*?</tr>', page, re.S)
    assert len(rows) == 1  # the endpoint that happens to share the name is another thing
    for text in ("triage-suite", "tuned", "succeeded", "0.75"):
        assert text in rows[0]
    assert re.search(r'<a class="mono small" href="/console/evals/runs/[0-9a-f]+">', rows[0])  # its page


def test_cancel_then_resume_from_the_page(web: RunningServer, engineer: tuple[httpx.Client, str]) -> None:
    client, token = engineer
    _wait(web, _api_finetunes(web)[0]["id"])  # the worker is free: this job starts at once
    answer = _submit(engineer, dataset="tickets@1", base="tiny", method="sft", config=LONG_YAML)
    assert answer.status_code == 303, answer.text[:2000]
    job_id = answer.headers["location"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 90

    def step() -> int:  # the step the job's message reports (0 before the first)
        found = re.match(r"step (\d+)/", api.get(f"/api/finetunes/{job_id}").json().get("message") or "")
        return int(found.group(1)) if found else 0

    with web.client() as api:  # until it has trained a step and saved its checkpoint
        while step() < 2:  # at least: a quiet machine passes step 2 between two polls
            assert time.monotonic() < deadline
            time.sleep(0.2)
    live = client.post(
        f"/console/finetunes/{job_id}/cancel", headers={"HX-Request": "true", "X-CSRF-Token": token}
    )
    assert live.status_code == 200
    assert 'data-testid="live"' in live.text
    assert "<html" not in live.text
    assert _wait(web, job_id)["status"] == "cancelled"
    page = client.get(f"/console/finetunes/{job_id}").text
    assert 'data-testid="resume"' in page
    assert 'data-testid="cancel"' not in page
    resumed = client.post(
        f"/console/finetunes/{job_id}/resume", headers={"HX-Request": "true", "X-CSRF-Token": token}
    )
    assert resumed.status_code == 200, resumed.text[:2000]
    new_id = resumed.headers["hx-redirect"].rsplit("/", 1)[1]
    assert new_id != job_id
    new_page = client.get(f"/console/finetunes/{new_id}").text
    assert f'href="/console/finetunes/{job_id}"' in new_page  # "Continues" the cancelled job
    assert 'data-testid="curve-train"' in new_page  # the stopped run's curve carries on
    assert client.post(f"/console/finetunes/{new_id}/cancel", data={"csrf_token": token}).status_code == 303
    assert _wait(web, new_id)["status"] == "cancelled"
    assert f'href="/console/finetunes/{new_id}"' in client.get(f"/console/finetunes/{job_id}").text


def test_the_chart_puts_each_step_once_on_round_ticks() -> None:
    events = [
        {"event": "train", "step": s, "max_steps": 6, "loss": v} for s, v in [(2, 4.27), (4, 1.61), (6, 0.33)]
    ]
    events += [
        {"event": "eval", "step": 6, "eval_loss": 0.5},
        {"event": "eval", "step": 6, "eval_loss": 0.28},
    ]
    chart = loss_chart(events)
    train, evals = chart.series
    assert [p.step for p in train.points] == [2, 4, 6]
    assert [(p.step, p.value) for p in evals.points] == [(6, 0.28)]  # the last evaluation of a step wins
    assert [label for _, label in chart.y_ticks] == ["0", "1", "2", "3", "4", "5"]
    assert [label for _, label in chart.x_ticks] == ["0", "2", "4", "6"]
    assert train.points[-1].x == chart.right_edge  # the planned last step ends the axis
    assert chart.top <= min(p.y for p in train.points)
    assert max(p.y for p in train.points) <= chart.bottom_edge
    assert loss_chart([]).empty


def test_only_the_values_changed_from_the_defaults_are_sent() -> None:
    shown = defaults_yaml(Method.sft)
    assert settings_from_yaml(shown, Method.sft) == {}
    edited = (
        shown.replace("max_length: 512", "max_length: 256").replace("  r: 16", "  r: 4") + "max_steps: 9\n"
    )
    assert settings_from_yaml(edited, Method.sft) == {"max_length": 256, "max_steps": 9, "lora": {"r": 4}}
    with pytest.raises(UserError, match="the form's method is sft"):
        settings_from_yaml("method: dpo\n", Method.sft)
