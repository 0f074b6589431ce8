"""One fine-tune in several processes: torchrun on one host, or the workers of a Ray Train job.

`train_in_processes()` takes `trainer.train()`'s arguments and gives its result, but runs the
training as `torchrun --standalone --nproc-per-node N -m fmops.finetune.launch SPEC.json`: every
process (rank) loads the base, the Trainer shares each batch out among them and averages the
gradients (gloo on CPUs, NCCL on GPUs). Rank 0 alone reports progress (JSON lines on its stdout,
which become the caller's callbacks), writes the adapter and the result; so the job registers one
model, once. A stop request (cancel, shutdown) is a file the ranks look for after every step; they
agree on it (an all-reduce), so all stop after the same step, with its checkpoint saved.

`run_worker(spec)` is what each rank runs. On the Ray executor (`FMOPS_EXECUTOR=ray`),
`train_on_executor()` runs it as `executor_worker` in the workers of Ray Train's TorchTrainer, which
sets up the process group; rank 0's reports and the job's stop then travel through the executor's
channel (an actor) instead of stdout and the stop file, and `output_dir` must be storage every node
sees.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fmops.errors import UserError
from fmops.executors import Channel, Executor
from fmops.finetune.config import FinetuneConfig
from fmops.finetune.data import Splits
from fmops.finetune.events import ProgressEvent, TrainingInterrupted

if TYPE_CHECKING:
    from fmops.finetune.trainer import TrainResult

__all__ = [
    "STOP_FILE",
    "executor_worker",
    "main",
    "make_spec",
    "run_worker",
    "train_in_processes",
    "train_on_executor",
]

STOP_FILE = "STOP"  # in output_dir: the ranks stop after the current step once it exists
PREFIX = "FMOPS_LAUNCH "  # rank 0's report lines on stdout
LAUNCH_DIR = "launch"  # in output_dir: the spec, each rank's outcome, the processes' output


def make_spec(
    *,
    base_weights: str,
    config: FinetuneConfig,
    splits: Splits,
    output_dir: Path,
    resume: bool = True,
    local_files_only: bool = True,
) -> dict[str, Any]:
    """Everything a rank needs to train, as JSON: the user's settings (not the defaults, which the
    rank fills in itself) and the rows."""
    settings: dict[str, Any] = dict(config.training)
    if config.lora:
        settings["lora"] = dict(config.lora)
    if config.num_threads is not None:
        settings["num_threads"] = config.num_threads
    return {
        "base_weights": base_weights,
        "method": str(config.method),
        "config": settings,
        "splits": {"train": splits.train, "validation": splits.validation, "skipped": splits.skipped},
        "output_dir": str(output_dir),
        "resume": resume,
        "local_files_only": local_files_only,
    }


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _agreed(local: Callable[[], bool]) -> Callable[[], bool]:
    """A stop request every rank acts on at the same step (a rank that stopped alone would leave the
    others waiting for it in the next all-reduce of gradients)."""

    def stop() -> bool:
        import torch
        import torch.distributed as dist

        flag = local()
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return flag
        device = "cuda" if "nccl" in str(dist.get_backend()) else "cpu"
        votes = torch.tensor([1 if flag else 0], device=device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return bool(votes.item())

    return stop


def _report(kind: str, **fields: Any) -> None:
    print(PREFIX + json.dumps({"type": kind, **fields}), flush=True)


def _write_outcome(output_dir: Path, outcome: dict[str, Any]) -> None:
    folder = output_dir / LAUNCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".rank-{_rank()}.json.tmp"
    partial.write_text(json.dumps(outcome), encoding="utf-8")
    partial.rename(folder / f"rank-{_rank()}.json")


def run_worker(
    spec: dict[str, Any],
    report: Callable[..., None] = _report,
    stop_requested: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """Train as one rank of a multi-process run; rank 0 reports and returns the result (others None).

    Its outcome is also written to `output_dir/launch/rank-<rank>.json`: the result, an interruption
    or the user's error, for the process that started the run. `report(kind, **fields)` carries rank
    0's progress (default: lines on stdout); `stop_requested` the job's stop (default: the stop file).
    """
    from fmops.finetune.trainer import train

    output_dir = Path(spec["output_dir"])
    lead = _rank() == 0
    try:
        config = FinetuneConfig.from_dict(spec["config"], spec["method"])
        raw = spec["splits"]
        splits = Splits(list(raw["train"]), list(raw["validation"]), dict(raw.get("skipped") or {}))
        result = train(
            base_weights=spec["base_weights"],
            config=config,
            splits=splits,
            output_dir=output_dir,
            resume=bool(spec.get("resume", True)),
            on_event=(lambda e: report("event", event=e.to_dict())) if lead else None,
            on_checkpoint=(lambda p, step: report("checkpoint", path=str(p), step=step)) if lead else None,
            on_note=(lambda text: report("note", text=text)) if lead else None,
            stop_requested=_agreed(stop_requested or (output_dir / STOP_FILE).exists),
            local_files_only=bool(spec.get("local_files_only", True)),
        )
    except TrainingInterrupted as exc:
        _write_outcome(output_dir, {"interrupted": str(exc)})
        return None
    except UserError as exc:
        _write_outcome(output_dir, {"error": exc.message, "param": exc.param})
        raise
    if not lead:
        return None
    outcome = {
        "adapter_dir": str(result.adapter_dir),
        "metrics": result.metrics,
        "resumed_from": result.resumed_from,
    }
    _write_outcome(output_dir, {"result": outcome})
    return outcome


def main(argv: list[str] | None = None) -> int:
    """`python -m fmops.finetune.launch SPEC.json`, once per rank (torchrun starts them)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: torchrun --nproc-per-node N -m fmops.finetune.launch SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    try:
        run_worker(spec)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _parent_death_signal() -> Callable[[], None] | None:
    """For the child, before exec: SIGTERM when the process that started it dies (a SIGKILLed job
    worker), so torchrun stops its ranks instead of training on unwatched. Resolved here, in the
    parent: the child, forked from a threaded process, only makes the call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None

    def arm() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return arm


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-size:]
    except OSError:
        return ""


def train_in_processes(
    *,
    processes: int,
    base_weights: str,
    config: FinetuneConfig,
    splits: Splits,
    output_dir: Path,
    resume: bool = True,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    on_note: Callable[[str], None] | None = None,
    local_files_only: bool = True,
    threads_per_process: int | None = None,
) -> TrainResult:
    """`trainer.train()` in `processes` ranks under torchrun; returns rank 0's `TrainResult`."""
    folder = output_dir / LAUNCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob("rank-*.json"), output_dir / STOP_FILE]:
        stale.unlink(missing_ok=True)  # from an earlier, interrupted attempt
    spec_file = folder / "spec.json"
    spec = make_spec(
        base_weights=base_weights,
        config=config,
        splits=splits,
        output_dir=output_dir,
        resume=resume,
        local_files_only=local_files_only,
    )
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    threads = config.num_threads or threads_per_process or max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "fmops.finetune.launch",
        str(spec_file),
    ]
    output_log = folder / "output.log"
    events: list[ProgressEvent] = []
    dispatch = _dispatcher(events, on_event, on_checkpoint, on_note)
    with output_log.open("w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=env,
            preexec_fn=_parent_death_signal(),
        )
        assert proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            stop_sent = False
            while True:
                if not stop_sent and stop_requested is not None and stop_requested():
                    (output_dir / STOP_FILE).touch()
                    stop_sent = True
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    continue
                if line is None:
                    break
                if not line.startswith(PREFIX):
                    log_file.write(line)
                    continue
                dispatch(json.loads(line[len(PREFIX) :]))
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the caller failed or was interrupted: stop the ranks too
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    failed = None
    if code != 0:
        failed = (
            f"training in {processes} processes failed (torchrun exit code {code}); its output"
            f" ({output_log}) ends with:\n{_tail(output_log)}"
        )
    return _outcome(folder, events, failed or f"training in {processes} processes left no result")


def _dispatcher(
    events: list[ProgressEvent],
    on_event: Callable[[ProgressEvent], None] | None,
    on_checkpoint: Callable[[Path, int], None] | None,
    on_note: Callable[[str], None] | None,
) -> Callable[[dict[str, Any]], None]:
    """Rank 0's reports (`run_worker`'s `report`) turned into the caller's callbacks."""

    def dispatch(message: dict[str, Any]) -> None:
        if message["type"] == "event":
            event = ProgressEvent(**message["event"])
            events.append(event)
            if on_event is not None:
                on_event(event)
        elif message["type"] == "checkpoint" and on_checkpoint is not None:
            on_checkpoint(Path(message["path"]), int(message["step"]))
        elif message["type"] == "note" and on_note is not None:
            on_note(str(message["text"]))

    return dispatch


def _outcome(folder: Path, events: list[ProgressEvent], failed: str) -> TrainResult:
    """Rank 0's result from the outcome files the ranks wrote; `failed` says why when there is none."""
    from fmops.finetune.trainer import TrainResult

    outcomes = {}
    for path in sorted(folder.glob("rank-*.json")):
        outcomes[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    errors = [o for o in outcomes.values() if "error" in o]
    if errors:
        raise UserError(errors[0]["error"], param=errors[0].get("param"))
    lead = outcomes.get("rank-0", {})
    if "interrupted" in lead:
        raise TrainingInterrupted(lead["interrupted"])
    if "result" not in lead:
        raise RuntimeError(failed)
    result = lead["result"]
    return TrainResult(Path(result["adapter_dir"]), result["metrics"], events, result["resumed_from"])


def executor_worker(spec: dict[str, Any], channel: Channel) -> None:
    """One rank under an executor's trainer (Ray Train's TorchTrainer): the same `run_worker`, its
    reports and the job's stop carried by the executor's channel instead of stdout and a file."""

    def report(kind: str, **fields: Any) -> None:
        channel.send({"type": kind, **fields})

    run_worker(spec, report, channel.stopped)


def train_on_executor(
    executor: Executor,
    *,
    workers: int,
    use_gpu: bool,
    base_weights: str,
    config: FinetuneConfig,
    splits: Splits,
    output_dir: Path,
    resume: bool = True,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    on_note: Callable[[str], None] | None = None,
    local_files_only: bool = True,
) -> TrainResult:
    """`trainer.train()` in `workers` ranks of the executor's trainer (Ray Train on a cluster):
    rank 0's `TrainResult`. `output_dir` (and `base_weights`) must be on storage every node sees."""
    folder = output_dir / LAUNCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("rank-*.json"):
        stale.unlink()  # from an earlier, interrupted attempt
    spec = make_spec(
        base_weights=base_weights,
        config=config,
        splits=splits,
        output_dir=output_dir,
        resume=resume,
        local_files_only=local_files_only,
    )
    events: list[ProgressEvent] = []
    failed = None
    try:
        executor.train(
            executor_worker,
            spec,
            workers=workers,
            use_gpu=use_gpu,
            storage=folder,
            on_message=_dispatcher(events, on_event, on_checkpoint, on_note),
            stop_requested=stop_requested or (lambda: False),
        )
    except Exception as exc:  # the ranks' outcome files say more (the user's error) when they wrote one
        failed = f"training on the {executor.name} executor failed: {type(exc).__name__}: {exc}"
    return _outcome(folder, events, failed or f"training on the {executor.name} executor left no result")


if __name__ == "__main__":
    raise SystemExit(main())
