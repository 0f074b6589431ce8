"""Retention on both backends: old spans and their scores go, new ones stay, each project by its own days."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from fmops.jobs import JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.settings import load_settings
from fmops.store import Store, utcnow
from fmops.store.models import Job, Project, Score, Span
from fmops.tracing.retention import KIND, enforce, enqueue_if_due
from support.databases import postgres_database, sqlite_url
from support.server import RunningServer, start_server
from support.stats_data import child, insert_rows, score, span

NOW = utcnow().replace(microsecond=0)
DAY = timedelta(days=1)


def project(store: Store, name: str, days: int | None, created: datetime = NOW) -> str:
    with store.session() as session:
        row = Project(name=name, retention_days=days, created_at=created)
        session.add(row)
    return row.id


def span_ids(store: Store) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(Span.span_id)))


def score_traces(store: Store) -> list[str]:
    with store.session() as session:
        return sorted(session.scalars(select(Score.trace_id)))


def test_old_spans_and_their_scores_go_and_new_ones_stay(store: Store) -> None:
    default = project(store, "default", None)  # the setting's 30 days
    short = project(store, "short", 7)
    old = span(default, NOW - 40 * DAY)
    young = span(default, NOW - 20 * DAY)
    # A long trace across the cutoff: its old root goes, its score stays with the young child.
    long_root = span(default, NOW - 31 * DAY)
    long_child = child(long_root, start_time=NOW - 29 * DAY)
    short_old = span(short, NOW - 10 * DAY)
    short_old_child = child(short_old, start_time=NOW - 10 * DAY)
    short_young = span(short, NOW - 5 * DAY)
    rows = [old, young, long_root, long_child, short_old, short_old_child, short_young]
    rows += [span(default, NOW - (41 + n) * DAY) for n in range(5)]  # enough for several chunks
    scores = [score(r, "thumbs", 1, source="human") for r in (old, young, long_root, short_old, short_young)]
    insert_rows(store, rows, scores)
    fractions: list[float] = []

    done = enforce(store, default_days=30, now=NOW, chunk=2, progress=lambda f, _: fractions.append(f))

    assert span_ids(store) == {r["span_id"] for r in (young, long_child, short_young)}
    assert score_traces(store) == sorted(r["trace_id"] for r in (young, long_root, short_young))
    assert (done.spans_deleted, done.scores_deleted, done.projects) == (len(rows) - 3, 2, 2)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert len(fractions) >= 4, "deleted in chunks of 2, reporting each"
    again = enforce(store, default_days=30, now=NOW)
    assert (again.spans_deleted, again.scores_deleted) == (0, 0)


def test_zero_days_keeps_traces_forever(store: Store) -> None:
    forever = project(store, "forever", None)
    kept = project(store, "kept", 36_500)
    insert_rows(store, [span(forever, NOW - 9000 * DAY), span(kept, NOW - 400 * DAY)])
    done = enforce(store, default_days=0, now=NOW)
    assert (done.spans_deleted, done.projects) == (0, 1)
    assert len(span_ids(store)) == 2


def test_the_job_runs_in_a_worker_and_reports(store: Store, tmp_path: Path) -> None:
    """The `traces.retention` kind, claimed and run by the real worker code (in this process)."""
    home = project(store, "default", None)
    insert_rows(store, [span(home, NOW - 3 * DAY), span(home, NOW - 2 * DAY), span(home, NOW)])
    jobs = JobService(store)
    job = jobs.submit(KIND, {"default_days": 1}, project_id=home)
    settings = load_settings({"home": tmp_path, "database_url": store.url, "job_heartbeat_seconds": 0.2})
    worker = Worker(jobs, settings, threading.Event())
    claimed = jobs.claim(worker.worker_id, [KIND])
    assert claimed is not None
    assert claimed.id == job.id
    worker.execute(claimed)
    finished = jobs.get(job.id, home)
    assert finished.status == JobStatus.succeeded, finished.error
    assert finished.result is not None
    # days_dropped: on PostgreSQL, empty past days of the template database may go too.
    assert {k: v for k, v in finished.result.items() if k != "days_dropped"} == {
        "spans_deleted": 2,
        "scores_deleted": 0,
        "projects": 1,
    }
    assert finished.progress == 1.0
    assert len(span_ids(store)) == 1


def test_params_are_checked_like_any_job_kind() -> None:
    from fmops.errors import UserError
    from fmops.jobs import get_kind

    kind = get_kind(KIND)  # registered through the `fmops.jobs` entry point
    assert kind.min_role.value == "admin"
    for bad in ({"default_days": -1}, {"default_days": "30"}, {"days": 3}):
        with pytest.raises(UserError, match="invalid params"):
            kind.parse(bad)


def test_the_schedule_lives_in_the_database(store: Store) -> None:
    hour = timedelta(hours=1)
    assert enqueue_if_due(store, interval=hour, default_days=30, now=NOW) is None, "no project yet"
    project(store, "default", None, created=NOW)
    assert enqueue_if_due(store, interval=hour, default_days=30, now=NOW + 0.5 * hour) is None
    first = enqueue_if_due(store, interval=hour, default_days=30, now=NOW + 1.5 * hour)
    assert first is not None
    assert first.params == {"default_days": 30}
    # Queued (then running): never a second one, however late it gets.
    assert enqueue_if_due(store, interval=hour, default_days=30, now=NOW + 5 * hour) is None
    with store.session() as session:
        row = session.get_one(Job, first.id)
        row.status, row.created_at = JobStatus.succeeded, NOW + 1.5 * hour
    assert enqueue_if_due(store, interval=hour, default_days=30, now=NOW + 2 * hour) is None
    assert enqueue_if_due(store, interval=hour, default_days=30, now=NOW + 2.6 * hour) is not None


def test_replicas_queue_one_job_at_a_time(store: Store) -> None:
    project(store, "default", None, created=NOW - 2 * DAY)
    replicas = [Store(store.url) for _ in range(6)]
    start = threading.Barrier(len(replicas))
    queued: list[Any] = []

    def race(replica: Store) -> None:
        start.wait()
        queued.append(enqueue_if_due(replica, interval=timedelta(hours=1), default_days=30))

    threads = [threading.Thread(target=race, args=(r,)) for r in replicas]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for replica in replicas:
            replica.dispose()
    assert sum(job is not None for job in queued) == 1
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.kind == KIND)) == 1


# --- a real server: its scheduler queues the job, its worker runs it ------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def retention_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Store]]:
    home = tmp_path_factory.mktemp("retention")
    env = {"FMOPS_RETENTION_INTERVAL_SECONDS": "1", "FMOPS_WORKERS": "1", "FMOPS_TRACE_RETENTION_DAYS": "30"}
    if request.param == "sqlite":
        url = sqlite_url(home)
        with start_server(home, env | {"FMOPS_DATABASE_URL": url}) as running:
            yield running, Store(url)
    else:
        with postgres_database() as url, start_server(home, env | {"FMOPS_DATABASE_URL": url}) as running:
            store = Store(url)
            yield running, store
            store.dispose()


def test_the_server_enforces_each_projects_days(retention_server: tuple[RunningServer, Store]) -> None:
    server, store = retention_server
    with server.client() as api:
        project_id = api.get("/api/me").json()["project_id"]
        changed = api.patch("/api/projects/current", json={"retention_days": 7})
        assert changed.status_code == 200, changed.text
        assert changed.json()["retention_days"] == 7
        stale = [span(project_id, utcnow() - 10 * DAY) for _ in range(3)]
        fresh = span(project_id, utcnow() - 3 * DAY)
        insert_rows(store, [*stale, fresh], [score(stale[0], "thumbs", 1, source="human")])
        deadline = time.monotonic() + 30
        while span_ids(store) != {fresh["span_id"]}:
            assert time.monotonic() < deadline, f"stale spans still there: {span_ids(store)}"
            time.sleep(0.2)
        assert score_traces(store) == []
        runs = _retention_jobs(api)
        assert runs
        assert all(j["kind"] == KIND for j in runs)
        assert any(j["status"] == "succeeded" and j["result"]["spans_deleted"] == 3 for j in runs), runs


def _retention_jobs(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/api/jobs", params={"kind": KIND, "limit": 500})
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["data"]
    return jobs
