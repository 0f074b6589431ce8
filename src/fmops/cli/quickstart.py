"""`fmops quickstart`: the whole loop on the embedded defaults, with a real model and real numbers.

It drives a running server (the one `make up` starts, or `--url`) through the public API; with none
running it starts `fmops up` itself for the duration. Progress goes to stderr, so `--json` output
on stdout stays parseable.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from fmops.cli.common import err_console, resolve_api_key, server_url, settings
from fmops.errors import UserError


class RichReporter:
    """The stages as Rich progress lines on stderr, each with its own bar and last detail."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> RichReporter:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def stage(self, name: str, title: str) -> None:
        self.task = self.bars.add_task(f"[bold]{name:<9}[/] {title}", total=None, detail="")

    def progress(self, done: int, total: int | None, detail: str = "") -> None:
        if self.task is not None:
            self.bars.update(self.task, completed=done, total=total, detail=detail)

    def note(self, text: str) -> None:
        self.bars.console.print(text, soft_wrap=True)

    def finish(self, name: str, seconds: float, summary: str) -> None:
        if self.task is not None:
            task = self.bars.tasks[self.task]
            self.bars.update(
                self.task, total=task.total or 1, completed=task.total or 1, detail=f"{seconds:.0f} s"
            )
        self.bars.console.print(f"  [green]✓[/] {name}: {summary}", soft_wrap=True, highlight=False)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url.rstrip("/") + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    """The server to drive: the one given or configured if it answers, else one started here."""
    s = settings()
    base = server_url(url)
    if _healthy(base):
        yield base
        return
    if url:
        raise UserError(f"no fmops server answers at {url} (GET /readyz); start one with `make up`")
    port = s.port if _free(s.port) else 0
    if port == 0:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
    log = (s.home / "quickstart-server.log").open("ab")
    command = [sys.executable, "-c", "from fmops.cli import main; main()", "up", "--port", str(port)]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    started = f"http://127.0.0.1:{port}"
    err_console.print(f"no server at {base}: started `fmops up` on {started} for this run (log: {log.name})")
    try:
        deadline = time.monotonic() + 180
        while not _healthy(started):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"`fmops up` did not start; see {log.name}")
            time.sleep(0.5)
        yield started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ci(pair: Any) -> str:
    return "" if not pair else f" [{pair[0]:.0%}, {pair[1]:.0%}]"


def _table(result: dict[str, Any]) -> Table:
    table = Table(title="Before / after on the held-out tickets", title_justify="left")
    for column in ("target", "model", "exact match (95% CI)", "valid JSON", "category", "priority"):
        table.add_column(column)
    models = {"base": result["base_model"], "finetuned": result["finetuned_model"]}
    for name, row in result["targets"].items():
        table.add_row(
            name,
            str(models.get(name, "")),
            _pct(row["exact_match"]) + _ci(row.get("exact_match_ci")),
            _pct(row["valid_json"]),
            _pct(row["category"]),
            _pct(row["priority"]),
        )
    return table


def _print_summary(console: Console, result: dict[str, Any]) -> None:
    console.print(_table(result))
    test = result.get("comparison") or {}
    if test:
        console.print(
            f"paired test ({test.get('test')}, n={test.get('n')}): exact-match difference "
            f"{test.get('mean_diff', 0):+.0%}, p = {test.get('p_value')}",
            highlight=False,
        )
    experiment = result.get("experiment") or {}
    console.print(f"A/B on {experiment.get('endpoint')}: {experiment.get('verdict')}", soft_wrap=True)
    console.print(f"promoted: {'yes' if result['promoted'] else 'no'}")
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result["stages"].items())
    console.print(f"time per stage: {times} (total {sum(result['stages'].values()):.0f} s)")
    console.print(f"the loop, each step a link: {result['console_url']}", soft_wrap=True)


def quickstart(
    url: str | None = typer.Option(
        None, "--url", help="Server to drive; default FMOPS_URL, else FMOPS_HOST/PORT"
    ),
    api_key: str | None = typer.Option(None, "--api-key", envvar="FMOPS_API_KEY", help="Default: admin.key"),
    fast: bool = typer.Option(
        False, "--fast", help="A small run (the test suite's): every stage, fewer tickets"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the final table as JSON on stdout"),
) -> None:
    """Run the whole loop on ticket triage: traffic, feedback, data, fine-tune, eval, A/B test, promotion."""
    from fmops.quickstart.api import Api
    from fmops.quickstart.stages import FAST, FULL, Loop

    sizes = FAST if fast else FULL
    with _server(url) as base:
        api = Api(base, resolve_api_key(api_key))
        try:
            with RichReporter(err_console) as reporter:
                outcome = Loop(api, sizes, reporter).run()
        finally:
            api.close()
    result = outcome.as_json()
    if as_json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_summary(Console(), result)
