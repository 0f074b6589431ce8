"""The executor interface and the local one: everything in this process, in order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Channel(Protocol):
    """What a training worker uses to reach the job: messages out, a stop request in."""

    def send(self, message: dict[str, Any]) -> None: ...

    def stopped(self) -> bool: ...


# loop(config, channel): one training worker's whole run (each rank calls it once).
TrainLoop = Callable[[dict[str, Any], Channel], Any]


def _nothing() -> None:
    return None


class Executor(ABC):
    name: ClassVar[str]
    remote: ClassVar[bool]  # True: the work runs in other processes, maybe on other machines

    @abstractmethod
    def map(self, fn: Callable[[T], R], items: Iterable[T], *, window: int = 16) -> Iterator[R]:
        """`fn` over `items`, results in the items' order as they come; at most `window` items are
        read ahead of the result being yielded (items stream; they are never all held at once)."""

    @abstractmethod
    def tasks(
        self,
        fn: Callable[..., R],
        calls: Sequence[tuple[Any, ...]],
        *,
        watch: Callable[[], None] = _nothing,
        every: float = 0.5,
    ) -> list[R]:
        """`fn(*call)` for every call, side by side; results in the calls' order. `watch` runs every
        `every` seconds while they do: an exception it raises stops them all and is raised here."""

    @abstractmethod
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
        """`loop(config, channel)` in `workers` training processes that form one torch process group
        (rank variables set); each message a worker sends reaches `on_message` in this process, and
        `channel.stopped()` turns true once `stop_requested()` does. `storage`: where the cluster may
        keep its own run files (a folder every node sees)."""


class _LocalChannel:
    def __init__(self, on_message: Callable[[dict[str, Any]], None], stop: Callable[[], bool]) -> None:
        self._on_message = on_message
        self._stop = stop

    def send(self, message: dict[str, Any]) -> None:
        self._on_message(message)

    def stopped(self) -> bool:
        return self._stop()


class LocalExecutor(Executor):
    name = "local"
    remote = False

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, window: int = 16) -> Iterator[R]:
        return map(fn, items)

    def tasks(
        self,
        fn: Callable[..., R],
        calls: Sequence[tuple[Any, ...]],
        *,
        watch: Callable[[], None] = _nothing,
        every: float = 0.5,
    ) -> list[R]:
        results = []
        for call in calls:
            watch()
            results.append(fn(*call))
        return results

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
        if workers != 1:
            raise ValueError("the local executor trains in one process (torchrun runs several)")
        loop(config, _LocalChannel(on_message, stop_requested))
