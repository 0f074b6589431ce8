"""Shared pieces of the side-by-side benchmarks: processes pinned to cores, wrk runs, readiness waits, and
`save_result`, which every script calls once to write its raw figures with the commit they measured."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results"


def load() -> dict[str, object]:
    """The machine's load (`uptime` and the 1/5/15-minute averages): figures from a loaded machine
    compare only within one run, so every result carries the load it was measured under."""
    one, five, fifteen = os.getloadavg()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return {"uptime": uptime, "loadavg": [one, five, fifteen], "cores": os.cpu_count()}


def _git(*argv: str) -> str:
    done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def commit() -> dict[str, object]:
    """The commit measured, and whether src/ or benchmarks/ differed from it (then not reproducible)."""
    return {
        "commit": _git("rev-parse", "HEAD"),
        # Result files written by an earlier script of the same run do not make the code dirty.
        "src_dirty": bool(_git("status", "--porcelain", "--", "src", "benchmarks", ":!benchmarks/results")),
    }


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to a result file")


def save_result(name: str, results: object, *, load_before: dict[str, object] | None = None) -> Path:
    """Write `results` (JSON-able; dataclasses are expanded) to benchmarks/results/NAME.json with the
    commit it measured, when, on what, and the machine's load before (when given) and after the run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        **commit(),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_before": load_before,
        "load_after": load(),
        "results": results,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=_plain) + "\n")
    print(f"raw results: {path.relative_to(ROOT)} (commit {str(record['commit'])[:10]})")
    return path


def installed_env(env: dict[str, str]) -> dict[str, str]:
    """`env` as a user's install runs a command: fmops's byte-code compiled and used. pip compiles a
    package's modules when it installs it; an editable install (this checkout) writes them on first
    import, unless PYTHONDONTWRITEBYTECODE is set (as on the machine the benchmarks run on), when every
    start would compile the modules it imports (an eval run: ~120 of fmops's 400) from source again."""
    clean = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    compileall = [sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "fmops")]
    subprocess.run(compileall, env=clean, check=True)
    return clean


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0 to 1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    """Run `argv` on one core (taskset from util-linux); unpinned where taskset is missing."""
    return ["taskset", "-c", str(core), *argv] if shutil.which("taskset") else list(argv)


@contextmanager
def process(
    argv: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(list(argv), env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def wait_http(url: str, timeout: float = 120, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str, body_file: Path, *, connections: int, seconds: int, core: int, headers: dict[str, str]
) -> WrkResult:
    """POST `body_file` to `url` with wrk (Debian package), pinned to `core`."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu), then run again")
    script = body_file.with_suffix(".lua")
    lines = ['wrk.method = "POST"', f'wrk.body = io.open("{body_file}"):read("*a")']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    argv = pinned(
        core, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (
        r"Non-2xx or 3xx responses: (\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
    ):
        found = re.search(pattern, out)
        if found:
            errors += sum(int(g) for g in found.groups())
    return WrkResult(
        rps=rps, p50_ms=_ms(latency["50"]), p99_ms=_ms(latency["99"]), errors=errors, requests=total
    )


def mock_model_and_key(env: dict[str, str], mock_url: str, name: str = "mock") -> str:
    """Register the mock upstream as model `name` (priced, so cost accounting runs) in the fmops home of
    `env`, and create a consumer key whose limits and budget never bind; return the key.

    The gateway benchmarks measure with every limit checked and every call costed, as in production.
    """
    fmops = str(BIN / "fmops")
    add = [fmops, "models", "add", name, "--provider", "openai", "--model", "m1", "--base-url", mock_url]
    run = partial(subprocess.run, env=env, check=True, capture_output=True, text=True)
    run([*add, "--input-price", "0.15", "--output-price", "0.6"])
    key = run([fmops, "keys", "create", "--name", "bench", "--role", "consumer"]).stdout.strip()
    key_id = json.loads(run([fmops, "keys", "list", "--json"]).stdout)[-1]["id"]
    run([fmops, "keys", "limits", key_id, "--rpm", "100000000", "--tpm", "1000000000", "--budget", "1000000"])
    return str(key)
