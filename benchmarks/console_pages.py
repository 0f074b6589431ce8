"""Console and chat pages over 1,000,000 spans: server response time and first contentful paint, in ms.

Builds (once, cached under /tmp) an fmops home whose SQLite database holds 1,000,000 spans of the
last 30 days (benchmarks/trace_query.py's generator, 80% in the default project) with feedback and
judge scores (benchmarks/stats_query.py's), stored in time order as a live system writes them. The
load marks its hours for the stats roll-ups as the trace writer does, and the search index is built
(a deployment's background indexer would have). Then starts a real `fmops up` on it, waits until the
server's own roll-up loop has rolled up every marked hour (no `fmops stats --rollup` by hand),
signs in with the admin key and, for every page registered in `fmops.web.pages` (so pages added
later are measured too) plus the chat at `/`, takes the median of a few loads of:
  - the server's response time (httpx, the whole HTML body), and
  - the first contentful paint in Chromium (Playwright, `first-contentful-paint` entry);
and the dashboard's data route for 24 h, 7 d and 30 d. Pages over 500 ms are named at the end.

    .venv/bin/python benchmarks/console_pages.py [--spans 1000000] [--home /tmp/fmops-console-bench]
        [--loads 5] [--rebuild] [--build-only]

Raw figures: benchmarks/results/console_pages.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import stats_query
import trace_query
from _harness import BIN, free_port, load, process, save_result, wait_http

from fmops.settings import Settings
from fmops.store import Store

BUDGET_MS = 500.0
CHROMIUM = os.environ.get("FMOPS_TEST_CHROMIUM", "/usr/bin/chromium")
STAMP = "bench.json"


def build(home: Path, spans: int) -> None:
    """An fmops home (database, admin key) with `spans` spans ending now; the admin's project gets 80%."""
    from fmops.server.runner import prepare
    from fmops.store.models import Project

    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    store, _ = prepare(Settings(home=home, database_url=f"sqlite:///{home / 'fmops.db'}"))
    with store.session() as session:
        project = session.query(Project).filter(Project.name == "default").one()
        project_id = str(project.id)
    store.dispose()
    # The generator spreads spans over the 30 days before its NOW, across its PROJECTS.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    trace_query.NOW = now
    trace_query.PROJECTS = [project_id, "b" * 32]
    raw_path = home / "raw.db"
    raw = Store(f"sqlite:///{raw_path}")
    from fmops.store import upgrade

    upgrade(raw)
    began = time.perf_counter()
    print(f"filling {raw_path} with {spans:,} spans")
    trace_query.fill(raw, spans)
    print(f"  {stats_query.add_scores(raw):,} scores; {time.perf_counter() - began:.0f} s")
    raw.dispose()
    stats_query.time_ordered_copy(raw_path, home / "fmops.db")
    raw_path.unlink()
    from fmops.tracing.search_index import index_all

    store = Store(f"sqlite:///{home / 'fmops.db'}")
    print(f"  indexed {index_all(store):,} spans for free-text search")
    store.dispose()
    (home / STAMP).write_text(json.dumps({"now": now.isoformat(), "spans": spans}))
    print(f"  built {home} in {time.perf_counter() - began:.0f} s")


def fresh_enough(home: Path, spans: int) -> bool:
    """A cached home is reused for a day: after that its last 24 h would be empty."""
    try:
        stamp = json.loads((home / STAMP).read_text())
    except (OSError, ValueError):
        return False
    age = datetime.now(UTC) - datetime.fromisoformat(stamp["now"])
    return bool(stamp["spans"] == spans and age < timedelta(hours=20) and (home / "admin.key").exists())


def page_paths() -> list[str]:
    """The chat, the console's home and every registered console page (an admin sees them all)."""
    import fmops.server.app  # noqa: F401  (imports every web router, which registers its page)
    from fmops.auth import Role
    from fmops.web.pages import pages_for

    paths = ["/", "/console"]
    for _, pages in pages_for(Role.admin):
        paths += [p.path for p in pages if p.path not in paths]
    return paths


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def server_times(client: httpx.Client, path: str, loads: int, **headers: str) -> tuple[int, float]:
    client.get(path, headers=headers)  # warm: the first load pays for imports and the page cache
    status, times = 0, []
    for _ in range(loads):
        began = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append(time.perf_counter() - began)
        status = response.status_code
    return status, median_ms(times)


def paint_times(url: str, key: str, paths: list[str], loads: int) -> dict[str, float | None]:
    """Median first contentful paint of each path in headless Chromium, signed in with `key`."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}: first paint not measured")
        return dict.fromkeys(paths)
    paints: dict[str, float | None] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(f"{url}/login")
        page.fill("#key-form input[name=api_key]", key)
        page.click("#key-form button[type=submit]")
        page.wait_for_load_state("domcontentloaded")
        for path in paths:
            found = []
            for n in range(loads + 1):
                page.goto(url + path, wait_until="load")
                fcp = page.evaluate(
                    """() => new Promise(done => {
                        const read = () => performance.getEntriesByName('first-contentful-paint')[0];
                        if (read()) return done(read().startTime);
                        new PerformanceObserver(() => done(read() ? read().startTime : null))
                            .observe({type: 'paint', buffered: true});
                        setTimeout(() => done(null), 3000);
                    })"""
                )
                if n and fcp is not None:  # the first load warms the asset cache
                    found.append(float(fcp))
            paints[path] = statistics.median(found) if found else None
        browser.close()
    return paints


def dashboard_times(url: str, key: str) -> dict[str, tuple[float, float, float]]:
    """Per range, one load of the dashboard: paint, charts drawn, breakdown filled (ms from navigation)."""
    from playwright.sync_api import sync_playwright

    times: dict[str, tuple[float, float, float]] = {}
    if not Path(CHROMIUM).exists():
        return times
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(180_000)
        page.goto(f"{url}/login")
        page.fill("#key-form input[name=api_key]", key)
        page.click("#key-form button[type=submit]")
        page.wait_for_load_state("domcontentloaded")
        for span in ("1h", "24h", "7d", "30d"):
            page.goto(f"{url}/console/dashboards?range={span}&by=model")
            page.wait_for_selector("[data-dashboard][data-state=ready]", state="attached")
            marks = ("first-contentful-paint", "fmops:charts-drawn", "fmops:dashboard-ready")
            fcp, charts, ready = (
                float(page.evaluate(f"performance.getEntriesByName('{mark}')[0].startTime")) for mark in marks
            )
            times[span] = (fcp, charts, ready)
        browser.close()
    return times


def wait_for_rollups(home: Path, timeout: float = 900) -> tuple[float, int]:
    """Until the server's roll-up loop has rolled up every marked hour that is due: (seconds, hours)."""
    from fmops.stats.rollup import due_hours

    store = Store(f"sqlite:///{home / 'fmops.db'}")
    began = time.perf_counter()
    first = len(due_hours(store))
    while (left := len(due_hours(store))) and time.perf_counter() - began < timeout:
        time.sleep(1)
    store.dispose()
    seconds = time.perf_counter() - began
    state = "all rolled up" if not left else f"{left:,} still dirty after {timeout:.0f} s"
    print(f"server's roll-up loop: {first:,} marked project-hours, {state} in {seconds:.0f} s")
    return seconds, first


def measure(home: Path, loads: int) -> dict[str, object]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
    env |= {"FMOPS_HOME": str(home), "FMOPS_PORT": str(port), "FMOPS_WORKERS": "0"}
    env["FMOPS_STATS_ROLLUP_INTERVAL_SECONDS"] = "2"  # the loop's first round soon after start
    key = (home / "admin.key").read_text().strip()
    paths = page_paths()
    with process([str(BIN / "fmops"), "up"], env=env, log=home / "server.log"):
        wait_http(url + "/readyz")
        rollup_seconds, hours = wait_for_rollups(home)
        with httpx.Client(base_url=url, timeout=120) as client:
            signed = client.post("/login", data={"api_key": key}, follow_redirects=False)
            assert signed.status_code == 303, signed.text
            rows = [(path, *server_times(client, path, loads)) for path in paths]
            data = []
            for span in ("24h", "7d", "30d"):
                for route in (
                    f"/console/dashboards/data?range={span}",
                    f"/console/dashboards/groups?range={span}&by=model",
                ):
                    status, ms = server_times(client, route, max(1, loads // 2), accept="application/json")
                    data.append((route, status, ms))
        paints = paint_times(url, key, paths, loads)
        drawn = dashboard_times(url, key)
    print(f"\n{len(paths)} pages, median of {loads} loads, SQLite with the spans above:")
    print(f"  {'page':<34} {'status':>6} {'server ms':>10} {'first paint ms':>15}")
    slow = []
    for path, status, ms in rows:
        fcp = paints.get(path)
        shown = f"{fcp:15.0f}" if fcp is not None else f"{'-':>15}"
        print(f"  {path:<34} {status:>6} {ms:10.1f} {shown}")
        if ms > BUDGET_MS or (fcp or 0) > BUDGET_MS or status != 200:
            slow.append(path)
    print("\ndashboard data (fetched after the page paints):")
    for route, status, ms in data:
        print(f"  {route:<48} {status:>6} {ms:10.1f}")
    print("\ndashboard in Chromium, grouped by model: first paint, charts drawn, breakdown in (ms):")
    for span, (fcp, charts, ready) in drawn.items():
        print(f"  {span:<6} {fcp:8.0f} {charts:10.0f} {ready:10.0f}")
    print()
    if slow:
        print(f"over {BUDGET_MS:.0f} ms (or not 200): {', '.join(slow)}")
    else:
        print(f"every page answered and painted within {BUDGET_MS:.0f} ms")
    return {
        "rollups_by_the_server": {"marked_project_hours": hours, "seconds_until_rolled_up": rollup_seconds},
        "pages": {
            path: {"status": status, "server_ms": ms, "first_paint_ms": paints.get(path)}
            for path, status, ms in rows
        },
        "dashboard_data": {route: {"status": status, "server_ms": ms} for route, status, ms in data},
        "dashboard_in_chromium_ms": {
            span: {"first_paint": fcp, "charts_drawn": charts, "breakdown_in": ready}
            for span, (fcp, charts, ready) in drawn.items()
        },
        "over_budget": slow,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=Path("/tmp/fmops-console-bench"))
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true", help="build the database even if cached")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    load_before = load()
    if args.rebuild or not fresh_enough(args.home, args.spans):
        build(args.home, args.spans)
    else:
        print(f"reusing {args.home} ({args.spans:,} spans)")
    if not args.build_only:
        results = measure(args.home, args.loads)
        save_result(
            "console_pages", {"spans": args.spans, "loads": args.loads, **results}, load_before=load_before
        )


if __name__ == "__main__":
    sys.exit(main())
