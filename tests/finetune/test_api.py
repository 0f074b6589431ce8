"""/api/finetunes on a real server with its workers: bad input is a 4xx before anything is queued; a
fine-tune of a tiny base runs to a catalog model whose lineage and loss curve the API shows."""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from finetune.tiny import chat_records, make_tiny_model
from support.cli_runs import Outcome, run_session, session_env
from support.server import RunningServer

CONFIG = {"max_steps": 4, "logging_steps": 2, "save_steps": 2, "learning_rate": 3e-3, "num_threads": 1}


@pytest.fixture(scope="module")
def admin(sqlite_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tiny = make_tiny_model(tmp_path_factory.mktemp("tiny") / "base")
    shutil.copytree(tiny, sqlite_server.home / "models" / "tiny")
    with sqlite_server.client() as client:
        lines = "\n".join(json.dumps(r) for r in chat_records(24, validation=4)).encode()
        response = client.post(
            "/api/datasets/import", files={"file": ("t.jsonl", lines)}, data={"name": "tickets"}
        )
        assert response.status_code == 201, response.text
        pairs = [
            {
                "prompt": [{"role": "user", "content": "hi"}],
                "chosen": [{"role": "assistant", "content": "hello"}],
                "rejected": [{"role": "assistant", "content": "no"}],
            }
        ] * 3
        lines = "\n".join(json.dumps(p) for p in pairs).encode()
        response = client.post(
            "/api/datasets/import", files={"file": ("p.jsonl", lines)}, data={"name": "pairs"}
        )
        assert response.status_code == 201, response.text
        yield client


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"dataset": "tickets", "config": {"learnin_rate": 1}}, 400, "did you mean learning_rate"),
        ({"dataset": "tickets", "config": {"output_dir": "/etc"}}, 400, "set by fmops"),
        ({"dataset": "tickets", "method": "dpo"}, 400, "from-traces NAME --preference"),
        ({"dataset": "pairs"}, 400, "train on preference pairs with method dpo"),
        ({"dataset": "nope"}, 404, "nope"),
        ({"dataset": "tickets", "base": "/etc"}, 400, "must live under"),
        ({"dataset": "tickets", "name": "smollm2-135m-instruct"}, 409, "already exists"),
        ({"dataset": "tickets", "bogus": 1}, 400, "bogus"),
    ],
)
def test_bad_input_is_refused_before_anything_is_queued(
    admin: httpx.Client, body: dict[str, Any], status: int, words: str
) -> None:
    before = admin.get("/api/finetunes").json()["data"]
    response = admin.post("/api/finetunes", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert admin.get("/api/finetunes").json()["data"] == before


def wait(admin: httpx.Client, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = admin.get(f"/api/finetunes/{job_id}").json()
        if view["status"] in ("succeeded", "failed", "cancelled"):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.5)


@pytest.mark.slow
def test_a_finetune_runs_to_a_model_with_lineage_and_curve(admin: httpx.Client) -> None:
    response = admin.post("/api/finetunes", json={"base": "tiny", "dataset": "tickets@1", "config": CONFIG})
    assert response.status_code == 201, response.text
    started = response.json()
    assert started["status"] == "queued"
    version = admin.get("/api/datasets/tickets/versions/1").json()
    assert started["dataset"] == version["id"]  # pinned to the version, whatever comes later
    view = wait(admin, started["id"])
    assert view["status"] == "succeeded", view
    assert view["model"] == f"tiny-ft-{started['id'][-8:]}"
    lineage = view["lineage"]
    assert lineage["dataset_version_id"] == version["id"]
    assert lineage["config"]["max_steps"] == 4
    assert lineage["metrics"]["steps"] == 4
    assert [e["step"] for e in view["curve"] if e["event"] == "train"] == [2, 4]
    assert any(e["event"] == "eval" for e in view["curve"])
    model = admin.get(f"/api/models/{view['model']}")
    assert model.status_code == 200, model.text
    listed = admin.get("/api/finetunes").json()["data"]
    assert listed[0]["id"] == started["id"]
    assert admin.post(f"/api/finetunes/{started['id']}/cancel").status_code == 409
    resumed = admin.post(f"/api/finetunes/{started['id']}/resume")
    assert resumed.status_code == 409
    assert "already succeeded" in resumed.json()["error"]["message"]
    logs = admin.get(f"/api/finetunes/{started['id']}/logs").json()
    assert any(line["line"].startswith('{"event": "done"') for line in logs)

    exported = admin.get(f"/api/finetunes/{started['id']}/export", params={"format": "adapter"})
    assert exported.status_code == 200, exported.text
    assert f'filename="{view["model"]}.adapter.zip"' in exported.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        names = set(archive.namelist())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    assert "training_args.bin" not in names  # pickles never leave
    no_gguf = admin.get(f"/api/finetunes/{started['id']}/export", params={"format": "gguf"})
    assert no_gguf.status_code == 409  # the tiny base has no GGUF
    assert "has no GGUF" in no_gguf.json()["error"]["message"]
    bad = admin.get(f"/api/finetunes/{started['id']}/export", params={"format": "onnx"})
    assert 400 <= bad.status_code < 500
    assert admin.get(f"/api/finetunes/{'0' * 32}/export").status_code == 404


def fmops(server: RunningServer, *commands: Sequence[str]) -> list[Outcome]:
    """`fmops` commands on the server's home, in order, in one process (each start costs seconds)."""
    return run_session(session_env(server.home, columns=120), commands, timeout=600)


@pytest.mark.slow
def test_cli_run_wait_show_list(admin: httpx.Client, sqlite_server: RunningServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    config = tmp_path / "ft.yaml"
    config.write_text("max_steps: 2\nlogging_steps: 1\nsave_steps: 2\nnum_threads: 1\nlora:\n  r: 4\n")
    refused, done = fmops(
        sqlite_server,
        ("finetune", "run", "--dataset", "tickets", "--base", "tiny", "--config", str(bad)),
        ("finetune", "run", "--dataset", "tickets", "--base", "tiny", "--config", str(config),
         "--name", "tiny-cli", "--wait"),
    )  # fmt: skip
    assert refused.code != 0
    assert "did you mean learning_rate" in refused.stderr + refused.stdout
    assert done.code == 0, done.stdout + done.stderr
    job_id = done.stdout.split("fine-tune ")[1].split()[0]
    shown, listed, logged, finished, not_one, merged, no_gguf = fmops(
        sqlite_server,
        ("finetune", "show", job_id, "--json"),
        ("finetune", "list", "--json"),
        ("finetune", "logs", job_id),
        ("finetune", "cancel", job_id),
        ("finetune", "logs", "0" * 32),
        ("finetune", "export", job_id, "--format", "merged", "--out", str(tmp_path / "m")),
        ("finetune", "export", job_id, "--out", str(tmp_path / "x.gguf")),
    )
    assert shown.code == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["model"] == "tiny-cli"
    assert view["lineage"]["config"]["lora"]["r"] == 4
    assert job_id in listed.stdout
    assert logged.code == 0, logged.stderr
    assert '{"event": "train"' in logged.stdout  # the loss curve's lines
    assert finished.code != 0  # nothing to cancel: it ended
    assert "succeeded" in finished.stderr + finished.stdout
    assert not_one.code != 0
    assert merged.code == 0, merged.stdout + merged.stderr
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "m")).config.num_hidden_layers == 2
    assert no_gguf.code != 0
    assert "has no GGUF" in no_gguf.stderr
