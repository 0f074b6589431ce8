"""`fmops eval`: run a suite as a CI gate, show a run, compare runs or targets, export results.

`fmops eval run SUITE.yaml` checks the suite (every problem at once), records the run, and runs its
job in this process with a progress bar (no server needed). Exit codes, for CI:

  0  the run passed its gate (each scorer's threshold, --fail-under, no significant regression)
  1  the quality gate failed
  2  the suite could not run (a problem in the suite, a missing file, the run failed)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fmops.cli.common import (
    CANNOT_RUN,
    acting_as,
    cannot_run,
    console,
    err_console,
    local_platform,
    settings,
)
from fmops.errors import FmopsError
from fmops.jobs import JobStatus

if TYPE_CHECKING:  # the evals stack (gateway, numpy) loads when an eval command runs, not for `fmops`
    from fmops.evals import EvalService
    from fmops.store.models import EvalRun

app = typer.Typer(help="Evaluate models, prompts and endpoints on your task (suites, runs, CI gates).")
GATE_FAILED = 1
ApiKey = typer.Option(None, "--api-key", envvar="FMOPS_API_KEY", help="Run as this key (default: admin)")


def _service() -> EvalService:
    from fmops.evals.job import service_for

    platform = local_platform()
    return service_for(platform.store, platform.settings, platform.jobs)


class _Suite(NamedTuple):
    text: str  # the suite file, as written
    evals: EvalService
    project_id: str
    key_id: str  # the key the run is recorded as started by


@contextlib.contextmanager
def _load_suite(suite: Path, api_key: str | None) -> Iterator[_Suite]:
    """Read a suite file and find who runs it; in the block, start a run from it. An unreadable
    file, a suite's problems (all of them, listed) or any other refusal exits 2: it cannot run."""
    from fmops.evals import SuiteError

    try:
        text = suite.read_text()
    except OSError as exc:
        raise cannot_run(f"cannot read {suite}: {exc.strerror or exc}") from None
    try:
        yield _Suite(text, _service(), *acting_as(api_key))
    except SuiteError as exc:
        err_console.print(f"[red]error:[/red] {escape(suite.name)} cannot run:", highlight=False)
        for problem in exc.problems:
            err_console.print(f"  - {escape(problem)}", highlight=False, soft_wrap=True)
        raise typer.Exit(CANNOT_RUN) from None
    except FmopsError as exc:
        raise cannot_run(exc.message) from None


@contextlib.contextmanager
def _bar(description: str, total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, moved by the function it yields; none at all when quiet (--json):
    rich's progress module is then not even imported (~7 ms of the run's start)."""
    if quiet:
        yield lambda completed: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(escape(description), total=total)
        yield lambda completed: bar.update(task, completed=completed)


def _execute(evals: EvalService, run: EvalRun, quiet: bool) -> EvalRun:
    """Run the run's job here (or follow the worker that took it) with a progress bar; exit 2
    unless it succeeded."""
    from fmops.evals.job import run_here

    assert run.job_id is not None
    platform = local_platform()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_here, args=(platform.jobs, settings(), run.job_id, stop), daemon=True
    )
    worker.start()
    total = max(1, run.cases * run.targets)
    try:
        with _bar(run.suite_name, total, quiet) as moved:
            while True:
                job = platform.jobs.get(run.job_id, run.project_id)
                moved(round(job.progress * total))
                if JobStatus(job.status).finished:
                    break
                if worker.is_alive():
                    # Back as soon as the job ends here, not up to 0.2 s later; with no bar to move
                    # (--json), the job is read every 2 s, not 5 times a second.
                    worker.join(2.0 if quiet else 0.2)
                else:
                    time.sleep(0.2)  # a worker elsewhere took the job: follow it
    except KeyboardInterrupt:
        stop.set()
        with contextlib.suppress(FmopsError):  # it may have just ended
            platform.jobs.cancel(run.job_id, run.project_id)
        err_console.print(f"stopped; the results so far are kept: fmops eval resume {run.id}")
        raise typer.Exit(130) from None
    worker.join(timeout=30)
    finished = evals.get_run(run.project_id, run.id)
    if finished.status != "succeeded":
        raise cannot_run(f"run {finished.id} {finished.status}: {finished.error or 'no detail'}")
    return finished


@app.command("run")
def run(
    suite: Path = typer.Argument(..., help="The suite: a YAML file (name, cases, targets, scorers)"),
    fail_under: float | None = typer.Option(
        None, "--fail-under", min=0, max=1, help="Fail when a target's weighted score is under this"
    ),
    compare: str | None = typer.Option(
        None, "--compare", help="A run to compare with: a significant regression fails the gate"
    ),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, max=256, help="Calls in flight"),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON"),
    api_key: str | None = ApiKey,
) -> None:
    """Run a suite as a job here; exit 0 (pass), 1 (quality gate failed) or 2 (could not run)."""
    from fmops.evals import gate

    with _load_suite(suite, api_key) as (text, evals, project_id, key_id):
        if compare is not None:
            evals.get_run(project_id, compare)  # a typo in --compare is found before the run
        started = evals.start(project_id, text, created_by_key_id=key_id, concurrency=concurrency)
    if not as_json:
        err_console.print(f"run {started.id}: {escape(started.suite_name)}", highlight=False)
    finished = _execute(evals, started, quiet=as_json)
    summary = evals.summary(project_id, finished.id)
    comparison = evals.compare(project_id, compare, finished.id) if compare else None
    failures = gate(summary, fail_under=fail_under, comparison=comparison)
    if as_json:
        _print_json(
            {
                "run": _run_json(finished),
                "summary": summary,
                "comparison": comparison,
                "gate": {"passed": not failures, "failures": failures},
                "results": [_result_json(r, finished) for r in evals.rows(finished.id)],
            }
        )
    else:
        _print_summary(finished, summary)
        if comparison is not None:
            _print_comparison(f"against run {compare}", comparison)
        for failure in failures:
            err_console.print(f"[red]gate:[/red] {escape(failure)}", highlight=False, soft_wrap=True)
        console.print("[green]passed[/green]" if not failures else "[red]quality gate failed[/red]")
    if failures:
        raise typer.Exit(GATE_FAILED)


@app.command("resume")
def resume(
    run_id: str = typer.Argument(..., help="A run that stopped (crashed, cancelled, failed)"),
    api_key: str | None = ApiKey,
) -> None:
    """Resume a run here: the results it has are kept, only the rest is called."""
    try:
        evals = _service()
        project_id, _ = acting_as(api_key)
        queued = evals.resume(project_id, run_id)
    except FmopsError as exc:
        raise cannot_run(exc.message) from None
    finished = _execute(evals, queued, quiet=False)
    _print_summary(finished, evals.summary(project_id, finished.id))


@app.command("list")
def list_runs(
    limit: int = typer.Option(20, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
    api_key: str | None = ApiKey,
) -> None:
    """Eval runs, newest first."""
    project_id, _ = acting_as(api_key)
    runs = _service().list_runs(project_id, limit=limit)
    if as_json:
        _print_json([_run_json(r) for r in runs])
        return
    table = Table(title="eval runs", title_justify="left")
    for column in ("id", "suite", "status", "cases", "targets", "created"):
        table.add_column(column, no_wrap=column == "id")
    for r in runs:
        created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(r.id, Text(r.suite_name), r.status, str(r.cases), str(r.targets), created)
    console.print(table)


@app.command("show")
def show(
    run_id: str = typer.Argument(..., help="The run's id"),
    cases: int = typer.Option(0, "--cases", min=0, help="Also list this many results, case by case"),
    failures: bool = typer.Option(False, "--failures", help="List only errors and failed cases"),
    as_json: bool = typer.Option(False, "--json"),
    api_key: str | None = ApiKey,
) -> None:
    """A run's table: per target, its score with a 95% interval, each scorer, errors, latency, cost."""
    project_id, _ = acting_as(api_key)
    evals = _service()
    found = evals.get_run(project_id, run_id)
    summary = evals.summary(project_id, run_id)
    if failures and not cases:
        cases = 50
    rows = evals.rows(run_id) if cases else []
    if failures:
        rows = [r for r in rows if r["status"] == "error" or (r["score"] is not None and r["score"] < 1)]
    rows = rows[:cases]
    if as_json:
        _print_json({"run": _run_json(found), "summary": summary, "results": rows})
        return
    _print_summary(found, summary)
    if rows:
        names = [t["name"] for t in found.definition["suite"]["targets"]]
        table = Table(title="results", title_justify="left")
        for column in ("case", "target", "status", "score", "output", "expected"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(
                str(r["case_index"]),
                Text(names[r["target_index"]]),
                r["status"],
                _num(r["score"]),
                Text(_short(r["output"] if r["status"] == "ok" else r["error"])),
                Text(_short(r["expected"])),
            )
        console.print(table)


@app.command("compare")
def compare_cmd(
    run_a: str = typer.Argument(..., help="A run (alone: its targets against each other)"),
    run_b: str | None = typer.Argument(None, help="A second run, compared with the first target by target"),
    as_json: bool = typer.Option(False, "--json"),
    api_key: str | None = ApiKey,
) -> None:
    """Paired significance tests: two runs target by target, or one run's targets pairwise."""
    project_id, _ = acting_as(api_key)
    rows = _service().compare(project_id, run_a, run_b)
    if as_json:
        _print_json(rows)
        return
    _print_comparison(f"{run_b} against {run_a}" if run_b else f"targets of {run_a}", rows)


@app.command("export")
def export(
    run_id: str = typer.Argument(..., help="The run's id"),
    fmt: str = typer.Option("csv", "--format", help="csv or json"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file (default: stdout)"),
    api_key: str | None = ApiKey,
) -> None:
    """Every result of a run as CSV (a column per scorer) or JSON."""
    project_id, _ = acting_as(api_key)
    text = _service().export(project_id, run_id, fmt)
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        err_console.print(f"wrote {output}", highlight=False)


# --- rendering ------------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def _run_json(run: EvalRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "suite": run.suite_name,
        "status": run.status,
        "job_id": run.job_id,
        "cases": run.cases,
        "targets": run.targets,
        "dataset": (run.definition or {}).get("dataset"),
        "error": run.error,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }


def _result_json(row: dict[str, Any], run: EvalRun) -> dict[str, Any]:
    """One case x target as `--json` prints it: what a CI log or a script needs, not the row's ids."""
    names = [t["name"] for t in run.definition["suite"]["targets"]]
    keep = ("case_index", "status", "score", "scores", "output", "expected", "error", "latency_ms", "cost")
    return {
        "target": names[row["target_index"]],
        **{k: row[k] for k in keep},
        "cached": row["cached"],
        "trace_id": row["trace_id"],
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(agg: dict[str, Any]) -> str:
    if agg.get("mean") is None:
        return "-"
    ci = agg.get("ci")
    return f"{agg['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_summary(run: EvalRun, summary: dict[str, Any]) -> None:
    scorer_names = [s["name"] for s in run.definition["suite"]["scorers"]]
    dataset = (run.definition or {}).get("dataset")
    title = f"run {run.id}: {run.suite_name}" + (f" on {dataset['ref']}" if dataset else "")
    table = Table(title=escape(title), title_justify="left")
    table.add_column("target")
    table.add_column("score [95% CI]")
    for name in scorer_names:
        table.add_column(name)
    for column in ("ok", "errors", "p50 ms", "cost", "cached"):
        table.add_column(column, justify="right")
    for t in summary["targets"]:
        scorer_cells = []
        for name in scorer_names:
            agg = t["scorers"].get(name, {})
            cell = _num(agg.get("mean"))
            if agg.get("threshold") is not None:
                cell += " ✓" if agg.get("passed") else f" ✗ (< {agg['threshold']})"
            scorer_cells.append(cell)
        table.add_row(
            Text(t["name"]),
            _ci(t["score"]),
            *scorer_cells,
            str(t["ok"]),
            str(t["errors"]),
            _num(t["latency_ms"]["p50"], 0),
            f"{t['cost']['total']:.4g}",
            str(t["cached"]),
        )
    console.print(table)
    pair = summary.get("pairwise")
    if pair:
        rate = "-" if pair["a_win_rate"] is None else f"{pair['a_win_rate']:.3f}"
        console.print(
            Text(
                f"pairwise ({pair['judge']} judging, both orders): {pair['a']} wins {pair['a_wins']}, "
                f"{pair['b']} wins {pair['b_wins']}, ties {pair['ties']}, undecided {pair['undecided']}; "
                f"{pair['a']}'s win rate {rate}, sign test p={pair['p_value']:.3g}"
            )
        )


def _print_comparison(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=escape(title), title_justify="left")
    for column in ("a", "b", "n", "mean a", "mean b", "diff [95% CI]", "test", "p", "significant"):
        table.add_column(column)
    for r in rows:
        ci = r.get("ci")
        diff = (
            "-"
            if r.get("diff") is None
            else f"{r['diff']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
        )
        table.add_row(
            Text(str(r.get("a", r.get("target", "")))),
            Text(str(r.get("b", r.get("target", "")))),
            str(r["n"]),
            _num(r.get("mean_a")),
            _num(r.get("mean_b")),
            diff,
            r["test"],
            "-" if r.get("p_value") is None else f"{r['p_value']:.3g}",
            ("regression" if r.get("regression") else "yes") if r.get("significant") else "no",
        )
    console.print(table)


def select(
    suite: Path = typer.Option(..., "--suite", help="A suite: its cases, scorers and first target's prompt"),
    candidates: str = typer.Option(..., "--candidates", help="Model aliases to compare, comma-separated"),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON"),
    api_key: str | None = ApiKey,
) -> None:
    """Rank candidate models on a suite by quality, latency and cost; recommend one with the trade-off."""
    from fmops.evals.select import candidate_suite, rank

    with _load_suite(suite, api_key) as (text, evals, project_id, key_id):
        started = evals.start(
            project_id, candidate_suite(text, candidates.split(",")), created_by_key_id=key_id
        )
    finished = _execute(evals, started, quiet=as_json)
    licences = {alias: entry.license for alias, entry in evals.catalog.models(project_id).items()}
    ranked = rank(evals.summary(project_id, finished.id), evals.compare(project_id, finished.id), licences)
    if as_json:
        _print_json({"run": _run_json(finished), **ranked})
        return
    table = Table(
        title=escape(f"candidates on {finished.suite_name} (run {finished.id})"), title_justify="left"
    )
    for column in ("model", "score [95% CI]", "errors", "p50 ms", "cost per case", "licence", "near best"):
        table.add_column(column)
    for r in ranked["ranking"]:
        table.add_row(
            Text(r["model"]),
            _ci({"mean": r["score"], "ci": r["ci"]}),
            str(r["errors"]),
            _num(r["p50_ms"], 0),
            "-" if r["cost_per_case"] is None else f"{r['cost_per_case']:.6f}",
            Text(r["license"] or "-"),
            "yes" if r.get("within_best_ci") else "no",
        )
    console.print(table)
    recommended = ranked["recommended"] or "none"
    console.print(
        f"recommended: [bold]{escape(recommended)}[/bold]: {escape(ranked['reason'])}", soft_wrap=True
    )


# `fmops eval cache` and `fmops eval harness` live in modules of their own (imported last: they
# import nothing from this one at load time).
from fmops.cli import evals_cache, evals_harness  # noqa: E402

app.add_typer(evals_cache.app, name="cache")
app.command("harness")(evals_harness.harness)
