"""`fmops eval cache`: how big the eval response cache is, and pruning it now.

The server prunes it on its own every `eval_cache_prune_interval_seconds` (by `eval_cache_days` and
`eval_cache_max_entries`); these commands act on the database directly, as its operator.
"""

from __future__ import annotations

from typing import Any

import orjson
import typer

from fmops.cli.common import console, fmt, local_platform, settings

app = typer.Typer(help="The eval response cache: its size, and pruning it (the server also prunes it).")


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


@app.command("stats")
def cache_stats(as_json: bool = typer.Option(False, "--json", help="Print it as JSON")) -> None:
    """Entries, projects, oldest and newest entry, bytes of stored answers; and the bounds in force."""
    from dataclasses import asdict

    from fmops.evals.cache import stats

    found = stats(local_platform().store)
    s = settings()
    bounds = {"days": s.eval_cache_days, "max_entries": s.eval_cache_max_entries}
    if as_json:
        _print_json({**asdict(found), "bounds": bounds})
        return
    console.print(
        f"{found.entries:,} cached answers of {found.projects} project(s), "
        f"{found.response_bytes / 1e6:.1f} MB of answers; "
        f"oldest {fmt(found.oldest)}, newest {fmt(found.newest)}",
        highlight=False,
    )
    days = f"{bounds['days']:g} days" if bounds["days"] else "forever"
    most = f"{bounds['max_entries']:,}" if bounds["max_entries"] else "no limit"
    console.print(
        f"kept: {days}, at most {most} entries (FMOPS_EVAL_CACHE_DAYS, FMOPS_EVAL_CACHE_MAX_ENTRIES)"
    )


@app.command("prune")
def cache_prune(
    older_than: float | None = typer.Option(
        None, "--older-than", min=0, help="Delete answers older than this many days (default: the setting)"
    ),
    max_entries: int | None = typer.Option(
        None, "--max-entries", min=0, help="Then keep at most this many, newest first (default: the setting)"
    ),
    everything: bool = typer.Option(False, "--all", help="Delete every cached answer"),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON"),
) -> None:
    """Delete old cached answers now (0 for an option turns that bound off); re-runs then call again."""
    from fmops.evals.cache import clear, prune

    s = settings()
    days = s.eval_cache_days if older_than is None else older_than
    most = s.eval_cache_max_entries if max_entries is None else max_entries
    store = local_platform().store
    if everything:
        result = {"expired": 0, "over_size": 0, "deleted": clear(store)}
    else:
        done = prune(store, days=days, max_entries=most)
        result = {"expired": done.expired, "over_size": done.over_size, "deleted": done.deleted}
    if as_json:
        _print_json(result)
        return
    detail = ""
    if not everything:
        detail = (
            f" ({result['expired']:,} older than {days:g} days,"
            f" {result['over_size']:,} beyond the newest {most:,})"
        )
    console.print(f"deleted {result['deleted']:,} cached answers{detail}", highlight=False)
