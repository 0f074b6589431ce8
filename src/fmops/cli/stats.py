"""`fmops stats`: the dashboard in a terminal, a breakdown table under sparklines of the range."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import typer
from rich import box
from rich.table import Table
from rich.text import Text

from fmops.cli.common import console, local_platform
from fmops.cli.traces import parse_since
from fmops.stats import Bucket, Dimension, Metrics, StatsFilters, StatsService
from fmops.stats.rollup import roll_up_all
from fmops.stats.service import MAX_BREAKDOWN_ROWS
from fmops.store import utcnow

BARS = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 72  # what fits beside a label on an 80-column terminal


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value, scaled from 0 to the largest; blank where there is no value."""
    top = max((v for v in values if v is not None), default=0.0)
    if top <= 0:
        return "".join(" " if v is None else BARS[0] for v in values)
    steps = len(BARS) - 1
    return "".join(" " if v is None else BARS[round(v / top * steps)] for v in values)


def _spark_bucket(filters: StatsFilters) -> Bucket:
    """The finest bucket whose sparkline fits the terminal; days for anything longer."""
    for bucket in Bucket:
        if filters.seconds / bucket.seconds <= SPARK_POINTS:
            return bucket
    return Bucket.day


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _cost(value: float) -> str:
    return f"{value:.4f}" if value < 100 else f"{value:,.2f}"


def _scores(metrics: Metrics) -> str:
    return " ".join(f"{name}={stat.mean:.2f}" for name, stat in sorted(metrics.scores.items())) or "-"


def _label(group: dict[str, Any]) -> str:
    if "prompt_name" in group:
        name, version = group["prompt_name"], group["prompt_version"]
        return "(none)" if name is None else f"{name} v{version}" if version is not None else name
    value = next(iter(group.values()))
    return "(none)" if value is None else str(value)


Cell = Callable[[Metrics], str | None]  # None: nothing to show for this row
# Two tables, each fitting an 80-column terminal: traffic, then (when there is any) quality.
TRAFFIC: list[tuple[str, Cell]] = [
    ("requests", lambda m: f"{m.volume:,}"),
    ("errors", lambda m: _share(m.error_rate)),
    ("p50 ms", lambda m: _number(m.latency_p50_ms)),
    ("p95 ms", lambda m: _number(m.latency_p95_ms)),
    ("p99 ms", lambda m: _number(m.latency_p99_ms)),
    ("tokens", lambda m: f"{m.input_tokens + m.output_tokens:,}"),
    ("cost", lambda m: _cost(m.cost)),
]
QUALITY: list[tuple[str, Cell]] = [
    ("ttft p95 ms", lambda m: None if m.ttft_p95_ms is None else _number(m.ttft_p95_ms)),
    ("feedback", lambda m: _share(m.feedback_rate) if m.feedback_count else None),
    ("thumbs up", lambda m: _share(m.feedback_positive_share) if m.thumbs_count else None),
    ("scores", lambda m: _scores(m) if m.scores else None),
]


def _table(
    title: str, label: str, columns: list[tuple[str, Cell]], rows: list[tuple[Text, Metrics]]
) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(label, overflow="fold")
    for header, _ in columns:
        table.add_column(header, justify="left" if header == "scores" else "right")
    for name, metrics in rows:
        table.add_row(name, *(cell(metrics) or "-" for _, cell in columns))
    return table


def _print_tables(by: Dimension, rows: list[tuple[Text, Metrics]]) -> None:
    console.print(_table(f"by {by.value}", by.value, TRAFFIC, rows))
    # Quality columns only where some row has a value: TTFT needs streamed calls, feedback people.
    quality = [c for c in QUALITY if any(c[1](m) is not None for _, m in rows)]
    if quality:
        console.print(_table(f"feedback and scores by {by.value}", by.value, quality, rows))


def stats(
    since: str = typer.Option("24h", "--since", help="How far back, e.g. 1h, 24h, 7d"),
    by: Dimension = typer.Option(Dimension.model, "--by", help="What the table groups by"),
    project: str | None = typer.Option(None, "--project", help="Only this project (default: every project)"),
    model: str | None = typer.Option(None, "--model"),
    endpoint: str | None = typer.Option(None, "--endpoint"),
    provider: str | None = typer.Option(None, "--provider"),
    user: str | None = typer.Option(None, "--user"),
    limit: int = typer.Option(20, "--limit", min=1, max=MAX_BREAKDOWN_ROWS, help="Most rows in the table"),
    as_json: bool = typer.Option(False, "--json", help="The time series and the breakdown as JSON"),
    rollup: bool = typer.Option(
        False, "--rollup", help="Roll up every past hour not rolled up yet (once, after an upgrade), and exit"
    ),
) -> None:
    """Requests, errors, latency, tokens, cost, feedback and scores: over time, and by model (or --by)."""
    platform = local_platform()
    if rollup:  # stats roll-ups: the server's loop keeps them current from then on
        began = time.perf_counter()
        hours = roll_up_all(platform.store)
        console.print(f"rolled up {hours:,} hours in {time.perf_counter() - began:.1f} s")
        return
    project_id = None
    if project is not None:
        with platform.store.session() as session:
            project_id = platform.auth.project_by_name(session, project).id
    now = utcnow()
    filters = StatsFilters(
        start=now - parse_since(since), end=now, model=model, endpoint=endpoint, provider=provider, user=user
    )
    service = StatsService(platform.store)
    series = service.timeseries(project_id, filters, _spark_bucket(filters))
    table = service.breakdown(project_id, filters, by, limit=limit)
    if as_json:
        # The API's shapes; imported here, since the web stack loads only for commands that need it.
        from fmops.server.schemas.stats import BreakdownRowPublic, MetricsPublic, PointPublic

        body = {
            "bucket": series.bucket,
            "points": [PointPublic.of(p.metrics, time=p.time).model_dump(mode="json") for p in series.points],
            "by": by,
            "rows": [
                BreakdownRowPublic.of(r.metrics, group=r.group).model_dump(mode="json") for r in table.rows
            ],
            "total": MetricsPublic.of(table.total).model_dump(mode="json"),
        }
        console.print(orjson.dumps(body).decode(), markup=False, highlight=False, soft_wrap=True)
        return
    points = [p.metrics for p in series.points][-SPARK_POINTS:]
    total = series.total
    console.print(Text(f"last {since}, one bar per {series.bucket.value}", style="bold"))
    lines: list[tuple[str, list[float | None], str]] = [
        ("requests", [float(m.volume) for m in points], f"{total.volume:,} total"),
        ("errors", [float(m.errors) for m in points], f"{_share(total.error_rate)} of requests"),
        ("p95 ms", [m.latency_p95_ms for m in points], f"{_number(total.latency_p95_ms)} over the range"),
    ]
    for label, values, summary in lines:
        line = Text(f"{label:<9}")
        line.append(sparkline(values), style="cyan")
        line.append(f"  {summary}")
        console.print(line, highlight=False, soft_wrap=True)
    rows = [(Text(_label(r.group)), r.metrics) for r in table.rows]
    if table.groups > len(table.rows):
        rows.append((Text(f"({table.groups - len(table.rows)} more)", style="dim"), Metrics()))
    rows.append((Text("total", style="bold"), table.total))
    _print_tables(by, rows)
