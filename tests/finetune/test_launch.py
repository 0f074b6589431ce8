"""A fine-tune in two processes (torchrun, gloo on the CPU) through the `finetune` job: the ranks share
the batches, rank 0 alone reports and saves, and the job registers one model."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from finetune.tiny import chat_records, make_tiny_model
from fmops.artifacts import ArtifactStore
from fmops.auth import AuthService
from fmops.catalog import Catalog
from fmops.datasets import DatasetService
from fmops.finetune.launch import main
from fmops.jobs import JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.secrets import SecretBox
from fmops.settings import load_settings
from fmops.store import Store
from fmops.store.models import Finetune
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


@long_only  # two processes each load torch, transformers and TRL: about a minute on two cores
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_processes_train_and_register_one_model(store: Store, tmp_path: Path) -> None:
    settings = load_settings(
        {"home": tmp_path / "home", "database_url": store.url, "job_heartbeat_seconds": 0.1}
    )
    base = make_tiny_model(settings.home / "models" / "base")
    project = AuthService(store).create_project("ft").id
    DatasetService(store, ArtifactStore.from_settings(settings)).create_version(
        project_id=project, name="tickets", kind="chat", batches=[chat_records(16, validation=4)]
    )
    service = JobService(store)
    params = {"base": str(base), "dataset": "tickets", "config": CONFIG, "name": "two"}
    job_id = service.submit("finetune", params, project_id=project).id
    worker = Worker(service, settings, threading.Event())
    claimed = service.claim(worker.worker_id, ["finetune"])
    assert claimed is not None
    worker.execute(claimed)
    job = service.get(job_id, None)

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
