"""A fine-tune in two processes (torchrun, gloo on the CPU) through the `finetune` job: the ranks share
the batches, rank 0 alone reports and saves, and the job registers one model; a cancel stops both
ranks after the same step and registers nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from finetune.tiny import chat_records, make_tiny_model
from fmops.artifacts import ArtifactStore
from fmops.auth import AuthService
from fmops.catalog import Catalog
from fmops.datasets import DatasetService
from fmops.finetune.job import run_dir
from fmops.finetune.launch import main
from fmops.jobs import JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.secrets import SecretBox
from fmops.settings import Settings, load_settings
from fmops.store import Store
from fmops.store.models import Finetune, Job
from support.services import long_only

CONFIG = {
    "num_processes": 2,
    "num_threads": 1,
    "max_steps": 3,
    "logging_steps": 1,
    "save_steps": 2,
    "learning_rate": 3e-3,
    "per_device_train_batch_size": 2,
}


def test_the_entry_point_says_how_to_call_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "torchrun --nproc-per-node N -m fmops.finetune.launch SPEC.json" in capsys.readouterr().err


def start(store: Store, tmp_path: Path, config: dict[str, Any]) -> tuple[Settings, str, str]:
    """A project with a chat dataset and a tiny base; the job queued (settings, project, job id)."""
    settings = load_settings(
        {"home": tmp_path / "home", "database_url": store.url, "job_heartbeat_seconds": 0.1}
    )
    base = make_tiny_model(settings.home / "models" / "base")
    project = AuthService(store).create_project("ft").id
    DatasetService(store, ArtifactStore.from_settings(settings)).create_version(
        project_id=project, name="tickets", kind="chat", batches=[chat_records(16, validation=4)]
    )
    params = {"base": str(base), "dataset": "tickets", "config": config, "name": "two"}
    return settings, project, JobService(store).submit("finetune", params, project_id=project).id


def execute(store: Store, settings: Settings, job_id: str) -> Job:
    service = JobService(store)
    worker = Worker(service, settings, threading.Event())
    claimed = service.claim(worker.worker_id, ["finetune"])
    assert claimed is not None
    assert claimed.id == job_id
    worker.execute(claimed)
    return service.get(job_id, None)


def running(spec: Path) -> list[int]:
    """Processes whose command line names this run's spec file (torchrun and its ranks)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(spec).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return found


@long_only  # two processes each load torch, transformers and TRL: over 30 s on two cores
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_processes_train_and_register_one_model(store: Store, tmp_path: Path) -> None:
    settings, project, job_id = start(store, tmp_path, CONFIG)
    service = JobService(store)
    job = execute(store, settings, job_id)

    assert job.status == JobStatus.succeeded, job.error
    with store.session() as session:
        rows = session.scalars(select(Finetune).where(Finetune.project_id == project)).all()
    assert [r.model_alias for r in rows] == ["two"]
    models = Catalog(store, settings, SecretBox.from_settings(settings)).models(project)
    assert [alias for alias in models if alias == "two" or "-ft-" in alias] == ["two"]
    metrics = rows[0].metrics
    assert metrics["processes"] == 2
    assert metrics["steps"] == 3
    assert metrics["eval_loss"] > 0
    assert rows[0].config["num_processes"] == 2
    assert (Path(rows[0].artifacts["adapter"]) / "adapter_model.safetensors").is_file()
    lines = [json.loads(log.line) for log in service.logs(job_id, None) if log.line.startswith("{")]
    assert [line["step"] for line in lines if line["event"] == "train"] == [1, 2, 3]  # rank 0's only
    run = Path(rows[0].artifacts["run_dir"])
    assert sorted(p.name for p in (run / "launch").glob("rank-*.json")) == ["rank-0.json"]
    assert job.state is not None
    assert Path(job.state["checkpoint"]).name == "checkpoint-3"  # rank 0 reported the saves
    shutil.rmtree(run)


@long_only
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_cancel_stops_both_ranks_and_registers_nothing(store: Store, tmp_path: Path) -> None:
    settings, project, job_id = start(store, tmp_path, {**CONFIG, "max_steps": 500, "save_steps": 100})
    service = JobService(store)

    def cancel_once_training() -> None:
        while not any('"event": "train"' in log.line for log in service.logs(job_id, None)):
            threading.Event().wait(0.05)
        service.cancel(job_id, None)

    canceller = threading.Thread(target=cancel_once_training, daemon=True)
    canceller.start()
    job = execute(store, settings, job_id)
    canceller.join(timeout=10)

    assert job.status == JobStatus.cancelled
    with store.session() as session:
        assert session.scalars(select(Finetune).where(Finetune.job_id == job_id)).all() == []
    models = Catalog(store, settings, SecretBox.from_settings(settings)).models(project)
    assert "two" not in models
    launch = run_dir(settings, job_id) / "launch"
    outcomes = {p.name: json.loads(p.read_text()) for p in launch.glob("rank-*.json")}
    assert sorted(outcomes) == ["rank-0.json", "rank-1.json"]  # both ranks stopped, at the same step
    steps = {o["interrupted"].split()[3] for o in outcomes.values()}
    assert len(steps) == 1
    checkpoint = run_dir(settings, job_id) / f"checkpoint-{steps.pop().rstrip(';')}"
    assert (checkpoint / "trainer_state.json").is_file()  # resumable
    assert running(launch / "spec.json") == []


KILLED_PARENT = """
import sys
sys.path.insert(0, {here!r})
from pathlib import Path
from finetune.tiny import chat_records
from fmops.finetune.config import FinetuneConfig, Method
from fmops.finetune.data import split_records
from fmops.finetune.launch import train_in_processes
train_in_processes(processes=2, base_weights={base!r}, config=FinetuneConfig.from_dict({config!r}),
                   splits=split_records(Method.sft, "chat", [chat_records(16)]), output_dir=Path({out!r}),
                   on_event=lambda e: print("STEP", e.step, flush=True))
"""


@long_only
def test_ranks_end_when_the_process_that_started_them_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed job worker leaves no ranks training on (they would race its resumed attempt)."""
    base = make_tiny_model(tmp_path / "base")
    out = tmp_path / "run"
    config = {**CONFIG, "max_steps": 500, "save_steps": 100}
    code = KILLED_PARENT.format(
        here=str(Path(__file__).parent.parent), base=str(base), config=config, out=str(out)
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    for line in parent.stdout:  # training has started in both ranks
        if line.startswith("STEP"):
            break
    spec = out / "launch" / "spec.json"
    assert len(running(spec)) == 3  # torchrun and two ranks
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60
    while running(spec) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(spec) == []


RAY_STYLE_WORKER = """
import os, sys
import torch.distributed as dist
from fmops.finetune.launch import run_worker
import json
spec = json.loads(open({spec!r}).read())
dist.init_process_group("gloo")  # as Ray Train's TorchTrainer does before it calls the worker function
result = run_worker(spec)
print("RESULT", json.dumps(result))
dist.destroy_process_group()
"""


@long_only
def test_run_worker_in_a_process_group_set_up_by_someone_else(tmp_path: Path) -> None:
    """What a Ray Train worker does (Ray is not installed here): the rank variables set and the gloo
    process group started before `run_worker(spec)` is called, once per worker."""
    from fmops.finetune.config import FinetuneConfig, Method
    from fmops.finetune.data import split_records
    from fmops.finetune.launch import make_spec

    base = make_tiny_model(tmp_path / "base")
    out = tmp_path / "run"
    config = {k: v for k, v in CONFIG.items() if k != "num_processes"}
    spec = make_spec(
        base_weights=str(base),
        config=FinetuneConfig.from_dict(config),
        splits=split_records(Method.sft, "chat", [chat_records(16, validation=4)]),
        output_dir=out,
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workers = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        code = RAY_STYLE_WORKER.format(spec=str(spec_file))
        workers.append(
            subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        )
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    results = [
        json.loads(line.split(" ", 1)[1])
        for o in outputs
        for line in o.splitlines()
        if line.startswith("RESULT")
    ]
    assert results[1] is None  # rank 1 returns nothing; rank 0 the run's result
    assert results[0]["metrics"]["processes"] == 2
    assert results[0]["metrics"]["steps"] == 3
    assert (Path(results[0]["adapter_dir"]) / "adapter_model.safetensors").is_file()
    assert json.loads((out / "launch" / "rank-0.json").read_text())["result"] == results[0]
