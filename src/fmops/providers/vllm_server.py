"""A managed `vllm serve` process: launched when fmops up starts (or on first use), restarted with
back-off when it dies, stopped when the gateway that owns it closes.

Only one process per host may manage a given port: the owner holds an exclusive lock on
`<log_dir>/vllm-<port>.lock` (several gateway processes on one host share one vLLM; the others
attach to it and take over if the owner goes away). The server's output goes to
`<log_dir>/vllm-<port>.log`, and its process id to `vllm-<port>.pid`, so a server left behind by a
killed gateway is stopped before a new one is launched on its port.

The command is configurable (`options.command`, default `vllm`): the tests launch a vLLM-shaped
mock with it. It is an operator's option only (see `VLLMProvider.operator_options`): nothing a
user sends over the API is executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from fmops.errors import UserError
from fmops.providers.base import ProviderError

__all__ = ["LaunchSpec", "VLLMServer", "int_option"]

log = logging.getLogger(__name__)

# What `vllm serve` needs to accept POST /v1/load_lora_adapter and /v1/unload_lora_adapter.
RUNTIME_LORA_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
MAX_BACKOFF_SECONDS = 30.0


def int_option(options: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(
            f"options.{name} must be a whole number from {low} to {high}", param=f"options.{name}"
        )
    return value


def _float_option(options: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise UserError(f"options.{name} must be a number from {low} to {high}", param=f"options.{name}")
    return float(value)


@dataclass(frozen=True)
class LaunchSpec:
    """How to launch one vLLM OpenAI server (the catalog entry's options, checked)."""

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    tensor_parallel_size: int = 1
    max_loras: int = 4
    max_lora_rank: int = 16
    command: str = "vllm"
    extra_args: str = ""
    log_dir: str | None = None
    startup_timeout: float = 900.0  # a big model loads, compiles and captures CUDA graphs first
    restart_backoff: float = 1.0  # seconds before the first restart; doubled each crash in a row

    @classmethod
    def from_options(cls, model: str, options: Mapping[str, Any]) -> LaunchSpec:
        """Every launch option checked, each bad one a UserError naming it."""
        for name in ("host", "command", "extra_args", "log_dir"):
            if name in options and not isinstance(options[name], str):
                raise UserError(f"options.{name} must be text", param=f"options.{name}")
        try:
            extra = shlex.split(str(options.get("extra_args", "")))
            command = shlex.split(str(options.get("command", "vllm")))
        except ValueError as exc:
            raise UserError(f"options.command or options.extra_args: {exc}", param="options") from None
        if not command:
            raise UserError("options.command must name the vllm executable", param="options.command")
        for reserved in ("--port", "--host", "--tensor-parallel-size", "--max-loras", "--max-lora-rank"):
            if any(arg == reserved or arg.startswith(reserved + "=") for arg in extra):
                raise UserError(
                    f"options.extra_args sets {reserved}, which fmops sets itself; use its own option",
                    param="options.extra_args",
                )
        return cls(
            model=model,
            host=str(options.get("host", "127.0.0.1")),
            port=int_option(options, "port", 8000, 1, 65535),
            tensor_parallel_size=int_option(options, "tensor_parallel_size", 1, 1, 1024),
            max_loras=int_option(options, "max_loras", 4, 1, 1024),
            max_lora_rank=int_option(options, "max_lora_rank", 16, 1, 4096),
            command=str(options.get("command", "vllm")),
            extra_args=str(options.get("extra_args", "")),
            log_dir=str(options["log_dir"]) if options.get("log_dir") else None,
            startup_timeout=_float_option(options, "startup_timeout", 900.0, 1.0, 7200.0),
            restart_backoff=_float_option(options, "restart_backoff", 1.0, 0.05, 300.0),
        )

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def argv(self) -> list[str]:
        return [
            *shlex.split(self.command),
            "serve",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--tensor-parallel-size",
            str(self.tensor_parallel_size),
            "--enable-lora",
            "--max-loras",
            str(self.max_loras),
            "--max-lora-rank",
            str(self.max_lora_rank),
            *shlex.split(self.extra_args),
        ]

    def folder(self) -> Path:
        folder = Path(self.log_dir) if self.log_dir else Path(tempfile.gettempdir()) / "fmops-vllm"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


class VLLMServer:
    """One supervised `vllm serve` process (or, when another process on this host owns the port's
    lock, the wait for that one's server)."""

    def __init__(self, spec: LaunchSpec, *, on_restart: Callable[[], None] = lambda: None) -> None:
        self.spec = spec
        self.on_restart = on_restart  # a new process has none of the old one's runtime adapters
        folder = spec.folder()
        self.log_path = folder / f"vllm-{spec.port}.log"
        self._pid_path = folder / f"vllm-{spec.port}.pid"
        self._lock_path = folder / f"vllm-{spec.port}.lock"
        self._lock: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._start_lock = asyncio.Lock()

    @property
    def owner(self) -> bool:
        return self._lock is not None

    def _take_lock(self) -> bool:
        handle = self._lock_path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock = handle
        return True

    def _stop_leftover(self) -> None:
        """Stop a server a killed gateway left on this port (its pid file names it)."""
        try:
            pid = int(self._pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if b"serve" in cmdline and str(self.spec.port).encode() in cmdline:
            log.warning("stopping a vLLM server left behind", extra={"pid": pid})
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def _spawn(self) -> None:
        argv = self.spec.argv()
        with self.log_path.open("ab") as out:
            out.write(f"\n--- fmops: starting {shlex.join(argv)} ---\n".encode())
            out.flush()
            try:
                # Its own process group: tensor-parallel workers are stopped with it.
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **RUNTIME_LORA_ENV},
                    start_new_session=True,
                )
            except (FileNotFoundError, PermissionError) as exc:
                raise ProviderError(
                    f"cannot launch vLLM: {exc.strerror} ({argv[0]}); install vllm on this host "
                    "(pip install vllm) or set the model's options.command",
                    status=502,
                ) from None
        self._pid_path.write_text(str(self.proc.pid))
        log.info("vLLM server started", extra={"pid": self.proc.pid, "port": self.spec.port})

    async def _healthy(self, session: aiohttp.ClientSession) -> bool:
        root = self.spec.base_url.removesuffix("/v1")
        try:
            async with session.get(root + "/health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def launch_if_free(self) -> None:
        """Launch the server if no process on this host owns the port (its lock is free)."""
        if self.proc is not None or self._lock is not None or not self._take_lock():
            return
        self._stop_leftover()  # a server a killed gateway left, or the owner that went away
        try:
            self._spawn()
        except ProviderError:
            self._release_lock()  # the next call tries again (vllm installed meanwhile)
            raise
        self._watcher = asyncio.create_task(self._watch())

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    async def ensure_running(self) -> None:
        """Return once the server answers /health; launch it first if this process may own it."""
        async with self._start_lock:
            if self._stopping:
                raise ProviderError("the vLLM server is stopping", status=503, retryable=True)
            self.launch_if_free()
            await self._wait_healthy()

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout
        restarts = self.restarts
        async with aiohttp.ClientSession() as session:
            while True:
                if await self._healthy(session):
                    return
                self.launch_if_free()
                if self.restarts - restarts >= 3:  # it dies as it starts: waiting longer will not help
                    raise ProviderError(
                        f"the vLLM server on port {self.spec.port} exited 3 times while starting: "
                        f"{self._log_tail()}; see {self.log_path}",
                        status=503,
                        retryable=True,
                    )
                if time.monotonic() > deadline:
                    raise ProviderError(
                        f"the vLLM server on port {self.spec.port} did not become healthy within "
                        f"{self.spec.startup_timeout:.0f} s; see {self.log_path}",
                        status=503,
                        retryable=True,
                    )
                await asyncio.sleep(0.2)

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(line.strip() for line in text[-lines:])[-600:]

    async def _watch(self) -> None:
        """Restart the process whenever it exits, waiting longer after each crash in a row."""
        failures = 0
        while not self._stopping:
            proc = self.proc
            assert proc is not None
            started = time.monotonic()
            while proc.poll() is None:
                await asyncio.sleep(0.1)
                if self._stopping:
                    return
            if time.monotonic() - started > 60:
                failures = 0  # it ran for a while: this crash starts a new series
            delay = min(MAX_BACKOFF_SECONDS, self.spec.restart_backoff * 2**failures)
            failures += 1
            log.warning(
                "vLLM server exited; restarting",
                extra={"returncode": proc.returncode, "delay_s": delay, "log": str(self.log_path)},
            )
            self.on_restart()
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                self._spawn()
            except ProviderError:
                log.exception("vLLM server could not be restarted")
                self.proc = None  # the next call launches it again
                self._release_lock()
                return
            self.restarts += 1

    async def stop(self, grace: float = 15.0) -> None:
        """Stop the process (and its group): SIGTERM, then SIGKILL after `grace` seconds."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # any worker of the group left behind
            self._pid_path.unlink(missing_ok=True)
        self._release_lock()
