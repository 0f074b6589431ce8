"""DPO from feedback, end to end: traces with people's corrections and thumbs become a preference
dataset version, the `finetune` job trains a LoRA adapter on it with `method=dpo` over a tiny random
base, and the adapter prefers the chosen answers more than the base did."""

from __future__ import annotations

import math
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from finetune.tiny import make_tiny_model
from fmops.catalog import Catalog
from fmops.datasets.from_traces import TraceDatasets, parse_filter
from fmops.feedback import FeedbackService, parse_feedback
from fmops.jobs import JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.platform import Platform
from fmops.secrets import SecretBox
from fmops.settings import Settings, load_settings
from fmops.store import Store
from fmops.store.models import Finetune, Job
from support.annotation_world import World, make_world

# Enough to move a tiny model's preferences on four pairs; warm-up off so every step counts.
CONFIG = {
    "max_steps": 8,
    "learning_rate": 1e-2,
    "warmup_steps": 0,
    "per_device_train_batch_size": 4,
    "logging_steps": 1,
    "save_steps": 4,
    "beta": 0.1,
    "num_threads": 1,
}


def label(category: str) -> str:
    return '{"category": "' + category + '"}'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture
def settings(store: Store, tmp_path: Path) -> Settings:
    return load_settings(
        {
            "home": tmp_path / "home",
            "database_url": store.url,
            "job_heartbeat_seconds": 0.1,
            "key_cache_seconds": 0,
        }
    )


@pytest.fixture
def world(store: Store, settings: Settings) -> World:
    return make_world(Platform.build(settings, store))


def give(world: World, trace_id: str, **score: Any) -> None:
    FeedbackService(world.platform.store).record(
        world.principals["engineer"], parse_feedback({"trace_id": trace_id, **score})
    )


def preference_version(world: World) -> Any:
    """Four pairs from feedback: two corrections (the corrected answer over the model's), and two
    inputs answered twice, once liked and once disliked."""
    for question, wrong, right in (
        ("refund #12", "technical", "billing"),
        ("password #3", "shipping", "account"),
    ):
        trace = world.trace(question, label(wrong))
        give(world, trace, kind="correction", corrected_output={"role": "assistant", "content": label(right)})
    for question, up, down in (("parcel #7", "shipping", "other"), ("crash #9", "technical", "billing")):
        give(world, world.trace(question, label(up), ago=1), kind="thumbs", value=1)
        give(world, world.trace(question, label(down), ago=2), kind="thumbs", value=-1)
    version, _ = TraceDatasets(world.platform.store, world.datasets).build(
        project_id=world.principals["engineer"].project_id,
        name="prefs",
        filters=parse_filter({}),
        preference=True,
    )
    assert (version.kind, version.rows) == ("preference", 4)
    return version


def execute(store: Store, settings: Settings, job_id: str) -> Job:
    service = JobService(store)
    worker = Worker(service, settings, threading.Event())
    claimed = service.claim(worker.worker_id, ["finetune"])
    assert claimed is not None
    assert claimed.id == job_id
    worker.execute(claimed)
    return service.get(job_id, None)


def answer_logp(
    model: Any, tokenizer: Any, prompt: list[dict[str, str]], answer: list[dict[str, str]]
) -> float:
    """log p(answer | prompt): the answer's tokens only, as DPO scores them."""
    import torch

    def ids(messages: list[dict[str, str]], **kwargs: Any) -> list[int]:
        out = tokenizer.apply_chat_template(messages, tokenize=True, **kwargs)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    head = ids(prompt, add_generation_prompt=True)
    full = ids(prompt + answer)
    assert full[: len(head)] == head
    tokens = torch.tensor([full])
    with torch.no_grad():
        logps = model(tokens).logits[0, :-1].log_softmax(-1)
    picked = logps.gather(1, tokens[0, 1:, None])[:, 0]
    return float(picked[len(head) - 1 :].sum())


def margins(model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> list[float]:
    return [
        answer_logp(model, tokenizer, p["prompt"], p["chosen"])
        - answer_logp(model, tokenizer, p["prompt"], p["rejected"])
        for p in pairs
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the job's store code runs on both in test_job
def test_dpo_on_pairs_from_feedback_moves_the_preference_margin(
    store: Store, settings: Settings, world: World, tiny: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    version = preference_version(world)
    pairs = [r for batch in world.datasets.iter_records(version) for r in batch]
    project = world.principals["engineer"].project_id
    base = Path(shutil.copytree(tiny, settings.home / "models" / "base"))
    params = {"base": str(base), "dataset": "prefs", "method": "dpo", "config": CONFIG, "name": "prefs-dpo"}
    job_id = JobService(store).submit("finetune", params, project_id=project).id

    job = execute(store, settings, job_id)

    assert job.status == JobStatus.succeeded, job.error
    entry = Catalog(store, settings, SecretBox.from_settings(settings)).get(project, "prefs-dpo")
    with store.session() as session:
        rows = session.scalars(select(Finetune).where(Finetune.job_id == job_id)).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.model_id, row.method) == (entry.id, "dpo")
    assert (row.dataset_version_id, row.dataset_ref) == (version.id, "prefs@1")
    assert row.config["beta"] == 0.1
    metrics = row.metrics
    assert metrics["steps"] == 8
    assert metrics["train_records"] == 4
    assert math.isfinite(metrics["train_loss"])
    preference = metrics["preference"]
    assert preference["last"]["rewards/margins"] > preference["first"]["rewards/margins"]
    assert preference["last"]["rewards/accuracies"] == 1.0
    logs = [log.line for log in JobService(store).logs(job_id, None)]
    assert any(line.startswith("no validation records") for line in logs)  # four pairs: no split

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(base)), entry.options["adapter"]
    )
    model.eval()
    trained = margins(model, tokenizer, pairs)
    with model.disable_adapter():
        before = margins(model, tokenizer, pairs)
    # Each pair's chosen answer gained on its rejected one, by a clear amount on average.
    assert all(t > b for t, b in zip(trained, before, strict=True)), (before, trained)
    assert sum(trained) / 4 - sum(before) / 4 > 1.0, (before, trained)


def test_dpo_with_a_validation_split_reports_validation_rewards(tiny: Path, tmp_path: Path) -> None:
    """Length-grouped batches (the default sampling) work for preference rows in training and in
    evaluation, and the validation pairs give DPO's validation loss and reward margin."""
    from fmops.finetune.config import FinetuneConfig, Method
    from fmops.finetune.data import split_records
    from fmops.finetune.trainer import train

    def pair(question: str, good: str, bad: str, split: str = "train") -> dict[str, Any]:
        return {
            "prompt": [{"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": label(good)}],
            "rejected": [{"role": "assistant", "content": label(bad)}],
            "metadata": {"split": split},
        }

    records = [
        pair("refund #12", "billing", "technical"),
        pair("password #3 please help me log in", "account", "shipping"),
        pair("parcel #7", "shipping", "other"),
        pair("crash #9 when I open the app", "technical", "billing"),
        pair("invoice #4", "billing", "account", "validation"),
        pair("courier #2 never came", "shipping", "technical", "validation"),
    ]
    config = FinetuneConfig.from_dict({**CONFIG, "max_steps": 2, "eval_steps": 2}, Method.dpo)
    assert config.training_values()["train_sampling_strategy"] == "group_by_length"
    result = train(
        base_weights=str(tiny),
        config=config,
        splits=split_records(Method.dpo, "preference", [records]),
        output_dir=tmp_path,
    )
    metrics = result.metrics
    assert (metrics["train_records"], metrics["validation_records"], metrics["steps"]) == (4, 2, 2)
    assert math.isfinite(metrics["eval_loss"])
    assert set(metrics["preference"]["validation"]) == {
        "rewards/margins",
        "rewards/accuracies",
        "rewards/chosen",
        "rewards/rejected",
    }
    assert any(e.kind == "eval" for e in result.events)
