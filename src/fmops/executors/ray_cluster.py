"""The Ray executor: batches through Ray Data, shards as Ray tasks, fine-tunes under Ray Train.

The job's process is the Ray driver: it joins the cluster at `FMOPS_RAY_ADDRESS` (`ray://head:10001`
through Ray Client, or the GCS address `head:6379` / `auto` from a pod of the cluster), or starts a
one-machine cluster when none is given. Functions and data travel by Ray's pickling, so every node
runs the same fmops version (the image the cluster was started from), and whatever a function reads
by path or URL (the artifact store, the database) must be reachable from every node.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from fmops.errors import ConfigError
from fmops.executors.base import Executor, TrainLoop, _nothing

T = TypeVar("T")
R = TypeVar("R")
POLL_S = 0.25


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - the extra is installed wherever the tests run
        raise ConfigError(
            "FMOPS_EXECUTOR=ray needs Ray: pip install 'fmops[ray]' (and the same on the cluster)"
        ) from None
    return ray


class _Mailbox:
    """An actor between the driver and the training workers: messages one way, a stop the other."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.stop = False

    def put(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def take(self) -> list[dict[str, Any]]:
        taken, self.messages = self.messages, []
        return taken

    def request_stop(self) -> None:
        self.stop = True

    def stopped(self) -> bool:
        return self.stop


class _WorkerChannel:
    def __init__(self, mailbox: Any) -> None:
        self._mailbox = mailbox

    def send(self, message: dict[str, Any]) -> None:
        # Actor calls from one caller run in the order made: messages arrive in order.
        self._mailbox.put.remote(message)

    def stopped(self) -> bool:
        return bool(_ray().get(self._mailbox.stopped.remote()))


def _train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: rank variables as torchrun sets them, then the loop."""
    from ray import train

    context = train.get_context()
    os.environ["RANK"] = str(context.get_world_rank())
    os.environ["LOCAL_RANK"] = str(context.get_local_rank())
    os.environ["WORLD_SIZE"] = str(context.get_world_size())
    config["loop"](config["config"], _WorkerChannel(config["mailbox"]))


def _apply(fn: Callable[[Any], Any], row: dict[str, Any]) -> dict[str, Any]:
    # Items and results cross as pickles: records keep their exact Python shape (Arrow would widen
    # every record to one schema, adding nulls for fields a record lacks).
    item = pickle.loads(row["item"])  # noqa: S301 (pickled by the driver, this job's own process)
    return {"index": row["index"], "result": pickle.dumps(fn(item))}


class RayExecutor(Executor):
    name = "ray"
    remote = True

    def __init__(self, address: str | None) -> None:
        self.address = address

    def connect(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, namespace="fmops", log_to_driver=False, configure_logging=False)
        return ray

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, window: int = 16) -> Iterator[R]:
        ray = self.connect()
        data = ray.data
        context = data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the job's own progress says how far it is
        source = iter(items)
        start = 0
        while chunk := list(islice(source, window)):
            rows = [{"index": start + i, "item": pickle.dumps(item)} for i, item in enumerate(chunk)]
            start += len(chunk)
            dataset = data.from_items(rows, override_num_blocks=len(rows))  # one block an item: parallel
            out = dataset.map(lambda row: _apply(fn, row))
            done = sorted(out.take_all(), key=lambda row: int(row["index"]))
            for row in done:
                yield pickle.loads(row["result"])  # noqa: S301 (from the map above, on our cluster)

    def tasks(
        self,
        fn: Callable[..., R],
        calls: Sequence[tuple[Any, ...]],
        *,
        watch: Callable[[], None] = _nothing,
        every: float = 0.5,
    ) -> list[R]:
        ray = self.connect()
        remote = ray.remote(max_retries=0)(fn)
        refs = [remote.remote(*call) for call in calls]
        pending = list(refs)
        try:
            while pending:
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=every)
                watch()
            return list(ray.get(refs))
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise

    def train(
        self,
        loop: TrainLoop,
        config: dict[str, Any],
        *,
        workers: int,
        use_gpu: bool,
        storage: Path,
        on_message: Callable[[dict[str, Any]], None],
        stop_requested: Callable[[], bool],
    ) -> None:
        ray = self.connect()
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        mailbox = ray.remote(num_cpus=0)(_Mailbox).remote()
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={"loop": loop, "config": config, "mailbox": mailbox},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            run_config=RunConfig(storage_path=str(storage), name="ray-train"),
        )
        failure: list[BaseException] = []

        def fit() -> None:
            try:
                trainer.fit()
            except BaseException as exc:  # carried to the caller's thread
                failure.append(exc)

        runner = threading.Thread(target=fit, name="fmops-ray-train", daemon=True)
        runner.start()
        stop_sent = False
        try:
            while runner.is_alive():
                runner.join(POLL_S)
                if not stop_sent and stop_requested():
                    mailbox.request_stop.remote()
                    stop_sent = True
                for message in ray.get(mailbox.take.remote()):
                    on_message(message)
            for message in ray.get(mailbox.take.remote()):
                on_message(message)
        except BaseException:
            mailbox.request_stop.remote()  # the workers stop after their step; fit() then returns
            runner.join(60)
            raise
        finally:
            ray.kill(mailbox)
        if failure:
            raise failure[0]
