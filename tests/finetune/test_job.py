"""The `finetune` job through the real worker code on both databases, with a tiny random base model:
a dataset version in, a catalog model with its lineage out; cancel and wrong data register nothing;
a job interrupted by shutdown resumes from its checkpoint."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from finetune.tiny import chat_records, make_tiny_model
from fmops.artifacts import ArtifactStore
from fmops.auth import AuthService
from fmops.catalog import Catalog
from fmops.datasets import DatasetService
from fmops.jobs import JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.secrets import SecretBox
from fmops.settings import Settings, load_settings
from fmops.store import Store
from fmops.store.models import Finetune, Job

CONFIG = {
    "max_steps": 6,
    "logging_steps": 2,
    "save_steps": 2,
    "learning_rate": 3e-3,
    "per_device_train_batch_size": 4,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture
def settings(store: Store, tmp_path: Path) -> Settings:
    return load_settings({"home": tmp_path / "home", "database_url": store.url, "job_heartbeat_seconds": 0.1})


@pytest.fixture
def base(settings: Settings, tiny: Path) -> Path:
    """Local bases live under $FMOPS_HOME/models, as local models added over the API do."""
    return Path(shutil.copytree(tiny, settings.home / "models" / "base"))


@pytest.fixture
def project(store: Store) -> str:
    return AuthService(store).create_project("ft").id


@pytest.fixture
def dataset(store: Store, settings: Settings, project: str) -> str:
    service = DatasetService(store, ArtifactStore.from_settings(settings))
    version = service.create_version(
        project_id=project, name="tickets", kind="chat", batches=[chat_records(24, validation=4)]
    )
    return version.id


def execute(store: Store, settings: Settings, job_id: str, stop: threading.Event | None = None) -> Job:
    service = JobService(store)
    worker = Worker(service, settings, stop or threading.Event())
    claimed = service.claim(worker.worker_id, ["finetune"])
    assert claimed is not None
    assert claimed.id == job_id
    worker.execute(claimed)
    return service.get(job_id, None)


def submit(store: Store, project: str, params: dict[str, Any]) -> str:
    return JobService(store).submit("finetune", params, project_id=project).id


def lineage(store: Store, job_id: str) -> Finetune | None:
    with store.session() as session:
        return session.scalar(select(Finetune).where(Finetune.job_id == job_id))


def test_job_registers_the_model_with_its_lineage(
    store: Store, settings: Settings, project: str, dataset: str, base: Path
) -> None:
    job_id = submit(store, project, {"base": str(base), "dataset": "tickets@1", "config": CONFIG})
    job = execute(store, settings, job_id)
    assert job.status == JobStatus.succeeded, job.error
    alias = f"base-ft-{job_id[-8:]}"
    assert job.result is not None
    assert job.result["model"] == alias
    entry = Catalog(store, settings, SecretBox.from_settings(settings)).get(project, alias)
    assert entry.provider == "transformers"  # a folder base has no GGUF to serve the LoRA over
    adapter = Path(entry.options["adapter"])
    assert (adapter / "adapter_model.safetensors").is_file()
    row = lineage(store, job_id)
    assert row is not None
    assert row.model_id == entry.id
    assert row.dataset_version_id == dataset
    assert row.dataset_ref == "tickets@1"
    assert row.config["max_steps"] == 6
    assert row.config["lora"]["r"] == 16
    assert row.metrics["steps"] == 6
    assert row.metrics["validation_records"] == 4
    assert row.metrics["eval_loss"] > 0
    lines = [json.loads(log.line) for log in JobService(store).logs(job_id, None) if log.line.startswith("{")]
    steps = [line["step"] for line in lines if line["event"] == "train"]
    assert steps == [2, 4, 6]
    assert all("loss" in line and "learning_rate" in line for line in lines if line["event"] == "train")
    assert any(line["event"] == "eval" for line in lines)
    assert lines[0]["event"] == "start"
    assert lines[0]["dataset_version_id"] == dataset


def test_a_cancelled_job_registers_nothing(
    store: Store, settings: Settings, project: str, dataset: str, base: Path
) -> None:
    job_id = submit(
        store, project, {"base": str(base), "dataset": "tickets", "config": {**CONFIG, "max_steps": 500}}
    )
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
    assert lineage(store, job_id) is None
    models = Catalog(store, settings, SecretBox.from_settings(settings)).models(project)
    assert not [alias for alias in models if "-ft-" in alias]


def test_shutdown_mid_run_is_resumed_from_the_checkpoint(
    store: Store, settings: Settings, project: str, dataset: str, base: Path
) -> None:
    job_id = submit(
        store, project, {"base": str(base), "dataset": "tickets", "config": CONFIG, "name": "mine"}
    )
    service = JobService(store)
    stop = threading.Event()

    def shut_down_once_training() -> None:
        while not any('"event": "train"' in log.line for log in service.logs(job_id, None)):
            threading.Event().wait(0.05)
        stop.set()

    threading.Thread(target=shut_down_once_training, daemon=True).start()
    job = execute(store, settings, job_id, stop)
    assert job.status == JobStatus.queued  # put back, not failed
    assert job.state is not None
    assert Path(job.state["checkpoint"]).is_dir()
    job = execute(store, settings, job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert any(log.line.startswith("resumed from checkpoint-") for log in service.logs(job_id, None))
    row = lineage(store, job_id)
    assert row is not None
    assert row.model_alias == "mine"
    assert row.metrics["steps"] == 6


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"method": "dpo"}, "trains on preference records"),
        ({"dataset": "nope"}, "nope"),
        ({"base": "/no/such/folder"}, "must live under"),
        ({"base": "missing/model.gguf"}, "neither a model folder nor a .gguf file"),
        ({"base": "nobody-here/no-such-model"}, "must already be downloaded"),
        ({"config": {**CONFIG, "max_length": 4096}}, "longer than the base model's context of 512"),
        ({"base": "smollm2-135m-instruct", "config": {"bogus": 1}}, "config.bogus"),
    ],
)
def test_bad_input_fails_the_job_with_a_clear_error(
    store: Store,
    settings: Settings,
    project: str,
    dataset: str,
    base: Path,
    params: dict[str, Any],
    words: str,
) -> None:
    job_id = submit(store, project, {"base": str(base), "dataset": "tickets", "config": CONFIG, **params})
    job = execute(store, settings, job_id)
    assert job.status == JobStatus.failed
    assert words in (job.error or "")
    assert lineage(store, job_id) is None
