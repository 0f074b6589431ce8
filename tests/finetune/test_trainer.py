"""Training runs on a tiny random Llama: progress events, checkpoints, stop, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from finetune.tiny import chat_records, make_tiny_model
from fmops.errors import UserError
from fmops.finetune.config import FinetuneConfig, Method
from fmops.finetune.data import split_records
from fmops.finetune.events import ProgressEvent, TrainingInterrupted
from fmops.finetune.trainer import TrainResult, last_checkpoint, train

HERE = Path(__file__).parent
SETTINGS = {
    "max_steps": 8,
    "logging_steps": 1,
    "save_steps": 2,
    "learning_rate": 3e-3,
    "per_device_train_batch_size": 4,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


def run(base: Path, out: Path, settings: dict[str, object] | None = None, **kwargs: Any) -> TrainResult:
    splits = split_records(Method.sft, "chat", [chat_records(32, validation=4)])
    return train(
        base_weights=str(base),
        config=FinetuneConfig.from_dict(settings or SETTINGS),
        splits=splits,
        output_dir=out,
        **kwargs,
    )


def test_train_reports_progress_checkpoints_and_saves_the_adapter(base: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    saved: list[int] = []
    result = run(base, tmp_path, on_event=events.append, on_checkpoint=lambda _p, step: saved.append(step))
    train_events = [e for e in events if e.kind == "train"]
    assert [e.step for e in train_events] == list(range(1, 9))
    assert all(e.loss is not None and e.learning_rate is not None for e in train_events)
    assert all(e.tokens_per_second and e.tokens_per_second > 0 for e in train_events)
    assert train_events[-1].eta_seconds == 0
    assert any(e.kind == "eval" and e.eval_loss is not None for e in events)  # validation split
    assert saved == [2, 4, 6, 8]
    assert train_events[-1].loss < train_events[0].loss  # it learns
    metrics = result.metrics
    assert metrics["steps"] == 8
    assert metrics["train_records"] == 32
    assert metrics["validation_records"] == 4
    assert metrics["trained_tokens"] > 0
    assert metrics["eval_loss"] > 0
    adapter = result.adapter_dir
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 16


def test_stop_request_saves_a_checkpoint_then_interrupts(base: Path, tmp_path: Path) -> None:
    steps: list[int] = []
    # Seen after step 3 was logged, the request stops training at the end of the next step.
    with pytest.raises(TrainingInterrupted, match="after step 4"):
        run(
            base,
            tmp_path,
            {**SETTINGS, "save_steps": 100},
            on_event=lambda e: steps.append(e.step),
            stop_requested=lambda: bool(steps) and steps[-1] >= 3,
        )
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


def test_records_longer_than_max_length(base: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="longer than max_length=10") as caught:
        run(base, tmp_path, {**SETTINGS, "max_length": 10})
    assert caught.value.param == "config.max_length"


CHILD = """
import sys
sys.path.insert(0, {here!r})
from pathlib import Path
from typing import Any
from fmops.finetune.config import FinetuneConfig, Method
from fmops.finetune.data import split_records
from fmops.finetune.trainer import train
from finetune.tiny import chat_records
result = train(base_weights={base!r}, config=FinetuneConfig.from_dict({settings!r}),
               splits=split_records(Method.sft, "chat", [chat_records(32, validation=4)]),
               output_dir=Path({out!r}))
print("RESULT", result.metrics["final_loss"])
"""


def child(base: Path, out: Path, settings: dict[str, object]) -> subprocess.Popen[str]:
    code = CHILD.format(here=str(HERE.parent), base=str(base), settings=settings, out=str(out))
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_same_loss(base: Path, tmp_path: Path) -> None:
    settings = {**SETTINGS, "max_steps": 12, "save_steps": 4}
    killed_dir = tmp_path / "killed"
    killed = child(base, killed_dir, settings)
    deadline = time.monotonic() + 120
    while last_checkpoint(killed_dir) is None:  # the first checkpoint (step 4) is complete
        assert killed.poll() is None, killed.communicate()[0][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    done = last_checkpoint(killed_dir)
    assert done is not None
    assert int(done.name.split("-")[1]) < 12

    resumed = run(base, killed_dir, settings)
    whole = run(base, tmp_path / "whole", settings)
    assert resumed.resumed_from is not None
    assert resumed.resumed_from.startswith("checkpoint-")
    assert whole.resumed_from is None
    assert resumed.metrics["steps"] == whole.metrics["steps"] == 12
    assert resumed.metrics["final_loss"] == pytest.approx(whole.metrics["final_loss"], rel=0.02)
