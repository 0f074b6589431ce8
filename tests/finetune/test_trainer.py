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


def test_long_records_are_left_out_and_counted(base: Path, tmp_path: Path) -> None:
    """Rows longer than max_length are left out, not truncated (that would cut the answer taught),
    and the caller is told how many; with max_length unset, the base model's context is the limit."""
    long = {
        "messages": [
            {"role": "user", "content": "x" * 600},  # the tiny base's context is 512 tokens (characters)
            {"role": "assistant", "content": "y"},
        ]
    }
    splits = split_records(Method.sft, "chat", [chat_records(8), [long] * 3])
    notes: list[str] = []
    result = train(
        base_weights=str(base),
        config=FinetuneConfig.from_dict({**SETTINGS, "max_steps": 1, "max_length": None}),
        splits=splits,
        output_dir=tmp_path,
        on_note=notes.append,
    )
    assert result.metrics["train_records"] == 8
    assert result.metrics["skipped_records"] == {"longer than max_length=512": 3}
    assert notes[0].startswith("left out 3 records longer than 512 tokens")
    assert notes[1].startswith("no validation records")


def test_max_length_beyond_the_context_is_refused(base: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="longer than the base model's context of 512 tokens") as caught:
        run(base, tmp_path, {**SETTINGS, "max_length": 4096})
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


OOM_CHILD = """
import resource, sys
sys.path.insert(0, {here!r})
from pathlib import Path
import torch, transformers, trl, peft, datasets  # mapped before the limit
from fmops.errors import UserError
from fmops.finetune.config import FinetuneConfig, Method
from fmops.finetune.data import split_records
from fmops.finetune.trainer import train
chat = [{{"role": "user", "content": "x" * 480}}, {{"role": "assistant", "content": "y"}}]
rows = [{{"messages": chat}}] * 256
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
# Room to load the tiny base and set up (about 100 MB), not for a batch of 256 x 500 tokens (over 1 GB).
resource.setrlimit(resource.RLIMIT_AS, (size + 400 * 2**20, resource.RLIM_INFINITY))
settings = {{"max_steps": 1, "per_device_train_batch_size": 256, "num_threads": 1, "save_strategy": "no"}}
try:
    train(base_weights={base!r}, config=FinetuneConfig.from_dict(settings),
          splits=split_records(Method.sft, "chat", [rows]), output_dir=Path({out!r}))
except UserError as exc:
    print("USERERROR", exc.param, exc.message)
    print("CAUSE", type(exc.__cause__).__name__, exc.__cause__)
"""


@pytest.mark.slow
def test_out_of_memory_names_the_settings_to_lower(base: Path, tmp_path: Path) -> None:
    """A real allocation failure (the address space capped in a child process) fails the run with the
    settings that lower memory, not a traceback from deep inside torch."""
    code = OOM_CHILD.format(here=str(HERE.parent), base=str(base), out=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    lines = done.stdout.splitlines()
    error = next((line for line in lines if line.startswith("USERERROR ")), None)
    assert error is not None, done.stdout[-2000:] + done.stderr[-3000:]
    assert error.startswith("USERERROR config.per_device_train_batch_size out of memory while training")
    for setting in ("per_device_train_batch_size", "max_length", "gradient_checkpointing: true"):
        assert setting in error
    cause = next(line for line in lines if line.startswith("CAUSE "))
    assert "can't allocate memory" in cause or "MemoryError" in cause
