"""One thread per loaded local model: requests queue first come, first served; streams are bridged
to asyncio token by token; a closed stream, a cancel or a timeout stops the work at the next token.

Shared by the local engines (`llamacpp`, `transformers`, `local-embeddings`). Heavy libraries are
imported lazily through `require`, so importing this module costs nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import importlib.util
import logging
import queue
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Hashable
from contextlib import suppress
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar, cast

from fmops.providers.base import ProviderError, ProviderTimeout

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'fmops[local]'"

R = TypeVar("R")
T = TypeVar("T")
P = TypeVar("P")


def require(module: str, package: str, provider: str) -> ModuleType:
    """Import an optional engine library, or fail with an error that names the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ProviderError(
            f"the {provider} provider needs {package}, which is not installed: run `{INSTALL_HINT}`"
            f" (or `make install`) ({exc})",
            status=500,
        ) from exc


# ---------------------------------------------------------------------------------------------
# One model, one thread, a FIFO queue of jobs
# ---------------------------------------------------------------------------------------------


@dataclass
class Job(Generic[T]):
    """One queued piece of work: its result arrives in `future`; `cancelled` is read per token."""

    future: concurrent.futures.Future[T] = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop the work: skipped if still queued, stopped at the next token if running."""
        self.cancelled.set()
        self.future.cancel()


_Work = Callable[[R, threading.Event], Any]
_DONE = object()


class EngineGone(Exception):
    """The event loop that awaited a stream is closed: the work stops."""


class EngineThread(Generic[R]):
    """A loaded resource (a model) owned by one dedicated thread that runs jobs one at a time, in order.

    The resource is loaded on that thread by its first job (or `warm_up`), so a slow load never
    blocks the event loop; a failed load fails the jobs waiting for it and is tried again by the next.
    Engines are shared per process through `acquire`/`release`: one model file is loaded once, however
    many providers point at it.
    """

    _shared: ClassVar[dict[Hashable, tuple[EngineThread[Any], int]]] = {}
    _all: ClassVar[weakref.WeakSet[EngineThread[Any]]] = weakref.WeakSet()
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str, load: Callable[[], R], unload: Callable[[R], None] | None = None) -> None:
        self.name = name
        self._load = load
        self._unload = unload
        self._resource: R | None = None
        self._queue: queue.SimpleQueue[tuple[Job[Any], _Work[R]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._current: Job[Any] | None = None
        self.loads = 0  # how many times the resource was loaded (1 in a healthy process)
        self.jobs_done = 0
        EngineThread._all.add(self)

    # -- shared engines ------------------------------------------------------------------------

    @classmethod
    def acquire(
        cls, key: Hashable, name: str, load: Callable[[], R], unload: Callable[[R], None] | None = None
    ) -> EngineThread[R]:
        """The process-wide engine for `key`, created on first use; pair each call with `release`."""
        with cls._shared_lock:
            engine, users = cls._shared.get(key, (None, 0))
            if engine is None:
                engine = EngineThread(name, load, unload)
            cls._shared[key] = (engine, users + 1)
            return cast(EngineThread[R], engine)

    @classmethod
    def release(cls, key: Hashable) -> None:
        """Drop one user of a shared engine; the last one stops its thread and frees the model."""
        with cls._shared_lock:
            engine, users = cls._shared.get(key, (None, 0))
            if engine is None:
                return
            if users > 1:
                cls._shared[key] = (engine, users - 1)
                return
            del cls._shared[key]
        engine.stop()

    # -- jobs ----------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._resource is not None

    @property
    def busy(self) -> bool:
        """Whether a job is running on the thread now."""
        return self._current is not None

    def submit(self, work: Callable[[R, threading.Event], T]) -> Job[T]:
        """Queue `work(resource, cancelled)` behind the jobs already waiting."""
        job: Job[T] = Job()
        with self._lock:
            if self._stopped:
                raise ProviderError(f"the {self.name} engine was shut down", status=503, retryable=True)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"fmops-{self.name}", daemon=True)
                self._thread.start()
            self._queue.put((job, work))
        return job

    async def call(self, work: Callable[[R, threading.Event], T], *, timeout: float) -> T:
        """Run `work` on the engine thread and await its result (queue wait included in `timeout`)."""
        job = self.submit(work)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)
        except TimeoutError:
            raise ProviderTimeout(f"the {self.name} engine did not answer within {timeout:g} s") from None
        finally:
            job.cancel()  # a no-op once done; stops the work when the caller went away

    async def stream(
        self, work: Callable[[R, threading.Event, Callable[[P], None]], None], *, timeout: float
    ) -> AsyncGenerator[P, None]:
        """Run `work(resource, cancelled, emit)` on the engine thread and yield what it emits.

        `timeout` bounds each wait for the next item (the first one includes the queue wait).
        Closing the iterator raises `cancelled`, which the work checks before every token.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def post(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the event loop is closed: nobody listens any more
                raise EngineGone from None

        def done(_: object) -> None:
            with suppress(EngineGone):
                post(_DONE)

        job = self.submit(lambda resource, cancelled: work(resource, cancelled, post))
        job.future.add_done_callback(done)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(items.get(), timeout)
                except TimeoutError:
                    raise ProviderTimeout(f"the {self.name} engine sent nothing for {timeout:g} s") from None
                if item is _DONE:
                    if not job.future.cancelled():
                        job.future.result()  # raises what the work raised
                    return
                yield cast(P, item)
        finally:
            job.cancel()

    async def warm_up(self, *, timeout: float) -> None:
        """Load the resource now instead of at the first request."""
        await self.call(lambda resource, cancelled: None, timeout=timeout)

    def stop(self, *, cancel_running: bool = False) -> None:
        """Finish (or cancel) the running job, cancel the queued ones, free the resource, end the thread."""
        with self._lock:
            self._stopped = True
            thread = self._thread
            current = self._current
        if cancel_running and current is not None:
            current.cancel()
        if thread is None:
            return
        self._queue.put(None)
        if thread is not threading.current_thread():
            thread.join(timeout=30)

    @classmethod
    def stop_all(cls) -> None:
        """Stop every engine (at interpreter exit: a model freed under a running thread crashes)."""
        for engine in list(cls._all):
            engine.stop(cancel_running=True)

    def _finished(self) -> None:
        # Before the result is set: whoever awaits it may look at `busy` at once.
        self._current = None
        self.jobs_done += 1

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                break
            job, work = entry
            if not job.future.set_running_or_notify_cancel():
                continue
            self._current = job
            try:
                if self._resource is None:
                    self._resource = self._load()
                    self.loads += 1
                result = work(self._resource, job.cancelled)
            except BaseException as exc:  # the thread must survive whatever one job does
                self._finished()
                job.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                self._finished()
                job.future.set_result(result)
        while True:  # shut down: nothing queued behind the stop runs
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is not None:
                entry[0].future.cancel()
        if self._resource is not None and self._unload is not None:
            try:
                self._unload(self._resource)
            except Exception:
                log.exception("could not unload the %s engine", self.name)
        self._resource = None


atexit.register(EngineThread.stop_all)
