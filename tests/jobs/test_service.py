"""The job table's protocol on both backends, without processes: claim, heartbeat, reap, finish, list."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from fmops.auth import AuthService
from fmops.errors import Conflict, NotFound, UserError
from fmops.jobs import JobService, JobStatus
from fmops.store import Store, utcnow
from fmops.store.models import Job, JobLog

STALE = timedelta(seconds=30)


@pytest.fixture
def jobs(store: Store) -> JobService:
    return JobService(store, max_attempts=3)


@pytest.fixture
def project(store: Store) -> str:
    return AuthService(store).create_project("jobs-a").id


@pytest.fixture
def other_project(store: Store) -> str:
    return AuthService(store).create_project("jobs-b").id


def make_stale(store: Store, job_id: str, seconds: float = 120) -> None:
    """Move a running job's heartbeat into the past, as if its worker had gone silent."""
    with store.session() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=seconds))
        )


def log_lines(store: Store, job_id: str) -> list[JobLog]:
    return JobService(store).logs(job_id, None)


# --- claim ----------------------------------------------------------------------------------------


def test_one_job_is_claimed_by_exactly_one_worker(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {"n": 1}, project_id=project)

    first = jobs.claim("w1", ["k.a"])
    second = jobs.claim("w2", ["k.a"])

    assert first is not None
    assert (first.id, first.kind, first.project_id, first.params, first.attempt) == (
        job.id,
        "k.a",
        project,
        {"n": 1},
        1,
    )
    assert second is None
    row = jobs.get(job.id, project)
    assert row.status == JobStatus.running
    assert row.worker_id == "w1"
    assert row.attempts == 1
    assert row.started_at is not None
    assert row.heartbeat_at is not None


def test_two_jobs_two_claims_get_one_each_then_none(jobs: JobService, project: str) -> None:
    a = jobs.submit("k.a", {}, project_id=project)
    b = jobs.submit("k.a", {}, project_id=project)

    first = jobs.claim("w1", ["k.a"])
    second = jobs.claim("w2", ["k.a"])
    third = jobs.claim("w3", ["k.a"])

    assert first is not None
    assert second is not None
    assert first.id == a.id, "the oldest queued job is claimed first"
    assert second.id == b.id
    assert third is None


def test_concurrent_claims_never_hand_out_a_job_twice(jobs: JobService, project: str) -> None:
    submitted = {jobs.submit("k.a", {"i": i}, project_id=project).id for i in range(6)}
    claimed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(name: str) -> None:
        try:
            start.wait()
            while (got := jobs.claim(name, ["k.a"])) is not None:
                with lock:
                    claimed.append(got.id)
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert sorted(claimed) == sorted(submitted), "every job claimed exactly once"
    owners = {jobs.get(j, None).worker_id for j in submitted}
    assert None not in owners


def test_claim_takes_only_the_kinds_the_worker_knows(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.known", {}, project_id=project)

    assert jobs.claim("w1", []) is None
    assert jobs.claim("w1", ["k.other"]) is None
    assert jobs.get(job.id, project).status == JobStatus.queued

    got = jobs.claim("w1", ["k.other", "k.known"])
    assert got is not None
    assert got.id == job.id


def test_claim_skips_jobs_that_are_not_queued(jobs: JobService, project: str) -> None:
    cancelled = jobs.submit("k.a", {}, project_id=project)
    jobs.cancel(cancelled.id, project)
    assert jobs.claim("w1", ["k.a"]) is None


def test_claim_hands_the_checkpoint_to_the_next_attempt(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    got = jobs.claim("w1", ["k.a"])
    assert got is not None
    assert got.state is None
    jobs.save_state(job.id, {"done": 4})
    assert jobs.requeue(job.id, "w1", reason="transient", count_attempt=True)

    again = jobs.claim("w2", ["k.a"])
    assert again is not None
    assert again.state == {"done": 4}
    assert again.attempt == 2


# --- heartbeat ------------------------------------------------------------------------------------


def test_heartbeat_reports_cancel_and_refuses_other_workers(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    assert jobs.heartbeat(job.id, "w1") is None, "a queued job has no worker to beat for"
    assert jobs.claim("w1", ["k.a"]) is not None
    before = jobs.get(job.id, project).heartbeat_at
    time.sleep(0.01)

    assert jobs.heartbeat(job.id, "w1") is False
    assert jobs.heartbeat(job.id, "intruder") is None
    after = jobs.get(job.id, project).heartbeat_at
    assert before is not None
    assert after is not None
    assert after > before

    cancelled = jobs.cancel(job.id, project)
    assert cancelled.status == JobStatus.running, "a running job is asked to stop, not stopped"
    assert cancelled.cancel_requested is True
    assert jobs.heartbeat(job.id, "w1") is True

    assert jobs.finish(job.id, "w1", JobStatus.cancelled, message="cancelled")
    assert jobs.heartbeat(job.id, "w1") is None, "a finished job is no longer anyone's"


def test_heartbeat_of_unknown_job_is_none(jobs: JobService) -> None:
    assert jobs.heartbeat("0" * 32, "w1") is None


# --- reaping --------------------------------------------------------------------------------------


def test_reap_leaves_fresh_jobs_alone(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    assert jobs.claim("w1", ["k.a"]) is not None
    assert jobs.reap_stale(STALE) == []
    assert jobs.get(job.id, project).status == JobStatus.running


def test_reap_requeues_a_silent_job(store: Store, jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    assert jobs.claim("w1", ["k.a"]) is not None
    make_stale(store, job.id)

    assert jobs.reap_stale(STALE) == [(job.id, JobStatus.queued)]

    row = jobs.get(job.id, project)
    assert row.status == JobStatus.queued
    assert row.worker_id is None
    assert row.message is not None
    assert "w1 stopped responding" in row.message
    assert [(line.level, line.line) for line in log_lines(store, job.id)] == [("warning", row.message)]
    again = jobs.claim("w2", ["k.a"])
    assert again is not None
    assert again.attempt == 2


def test_reap_fails_a_job_out_of_attempts(store: Store, project: str) -> None:
    jobs = JobService(store, max_attempts=2)
    job = jobs.submit("k.a", {}, project_id=project)
    for attempt in (1, 2):
        got = jobs.claim(f"w{attempt}", ["k.a"])
        assert got is not None
        assert got.attempt == attempt
        make_stale(store, job.id)
        expected = JobStatus.queued if attempt == 1 else JobStatus.failed
        assert jobs.reap_stale(STALE) == [(job.id, expected)]

    row = jobs.get(job.id, project)
    assert row.status == JobStatus.failed
    assert row.finished_at is not None
    assert row.error == "worker w2 stopped responding; gave up after 2 attempts"
    assert jobs.claim("w3", ["k.a"]) is None


def test_reap_cancels_a_silent_job_whose_cancel_was_requested(
    store: Store, jobs: JobService, project: str
) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    assert jobs.claim("w1", ["k.a"]) is not None
    jobs.cancel(job.id, project)
    make_stale(store, job.id)

    assert jobs.reap_stale(STALE) == [(job.id, JobStatus.cancelled)]
    row = jobs.get(job.id, project)
    assert row.status == JobStatus.cancelled
    assert row.finished_at is not None
    assert jobs.claim("w2", ["k.a"]) is None


def test_finish_is_refused_after_the_job_was_reaped(store: Store, jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    assert jobs.claim("w1", ["k.a"]) is not None
    make_stale(store, job.id)
    jobs.reap_stale(STALE)

    assert jobs.finish(job.id, "w1", JobStatus.succeeded, result={"late": True}) is False
    assert jobs.requeue(job.id, "w1", reason="late", count_attempt=False) is False
    row = jobs.get(job.id, project)
    assert row.status == JobStatus.queued
    assert row.result is None

    # The new owner's outcome is the one recorded.
    assert jobs.claim("w2", ["k.a"]) is not None
    assert jobs.finish(job.id, "w1", JobStatus.failed, error="stale worker") is False
    assert jobs.finish(job.id, "w2", JobStatus.succeeded, result={"ok": 1}) is True
    row = jobs.get(job.id, project)
    assert (row.status, row.result, row.error, row.progress) == (JobStatus.succeeded, {"ok": 1}, None, 1.0)


# --- finish, requeue, progress -------------------------------------------------------------------


def test_finish_records_outcome_once(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    assert jobs.claim("w1", ["k.a"]) is not None
    assert jobs.finish(job.id, "w1", JobStatus.failed, error="ValueError: boom") is True
    assert jobs.finish(job.id, "w1", JobStatus.succeeded) is False
    row = jobs.get(job.id, project)
    assert (row.status, row.error) == (JobStatus.failed, "ValueError: boom")
    assert row.finished_at is not None


def test_requeue_without_counting_gives_the_attempt_back(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    assert jobs.claim("w1", ["k.a"]) is not None
    assert jobs.requeue(job.id, "w1", reason="interrupted by shutdown", count_attempt=False)
    row = jobs.get(job.id, project)
    assert (row.status, row.attempts, row.worker_id, row.message) == (
        JobStatus.queued,
        0,
        None,
        "interrupted by shutdown",
    )


def test_requeue_fails_the_job_when_attempts_are_spent(store: Store, project: str) -> None:
    jobs = JobService(store, max_attempts=2)
    job = jobs.submit("k.a", {}, project_id=project)
    for worker in ("w1", "w2"):
        assert jobs.claim(worker, ["k.a"]) is not None
        assert jobs.requeue(job.id, worker, reason="transient failure", count_attempt=True)
    row = jobs.get(job.id, project)
    assert row.status == JobStatus.failed
    assert row.error == "transient failure; gave up after 2 attempts"


def test_progress_is_recorded_only_while_running(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    jobs.set_progress(job.id, 0.5, "ignored while queued")
    assert jobs.get(job.id, project).progress == 0.0
    assert jobs.claim("w1", ["k.a"]) is not None
    jobs.set_progress(job.id, 0.25, "a quarter")
    row = jobs.get(job.id, project)
    assert (row.progress, row.message) == (0.25, "a quarter")


# --- what users do -------------------------------------------------------------------------------


def test_cancel_queued_is_immediate_and_finished_is_a_conflict(jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    cancelled = jobs.cancel(job.id, project)
    assert cancelled.status == JobStatus.cancelled
    assert cancelled.finished_at is not None
    with pytest.raises(Conflict, match="already cancelled"):
        jobs.cancel(job.id, project)


def test_other_projects_jobs_are_not_found(jobs: JobService, project: str, other_project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    with pytest.raises(NotFound):
        jobs.get(job.id, other_project)
    with pytest.raises(NotFound):
        jobs.logs(job.id, other_project)
    with pytest.raises(NotFound):
        jobs.cancel(job.id, other_project)
    assert jobs.find(project_id=other_project) == []
    assert jobs.get(job.id, project).status == JobStatus.queued, "a refused cancel changes nothing"


def test_list_pages_by_cursor_newest_first(jobs: JobService, project: str, other_project: str) -> None:
    ids = [jobs.submit("k.a", {"i": i}, project_id=project).id for i in range(7)]
    jobs.submit("k.a", {}, project_id=other_project)

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = [j.id for j in jobs.find(project_id=project, limit=3, before=cursor)]
        pages.append(page)
        if len(page) < 3:
            break
        cursor = page[-1]

    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [i for p in pages for i in p]
    assert seen == sorted(ids, reverse=True), "ids sort by creation; pages neither skip nor repeat"
    assert len(jobs.find(project_id=None, limit=500)) == 8, "the operator's view spans projects"


def test_list_filters_by_status_and_kind(jobs: JobService, project: str) -> None:
    a = jobs.submit("k.a", {}, project_id=project)
    b = jobs.submit("k.b", {}, project_id=project)
    jobs.cancel(b.id, project)

    assert [j.id for j in jobs.find(project_id=project, kind="k.a")] == [a.id]
    assert [j.id for j in jobs.find(project_id=project, status=JobStatus.cancelled)] == [b.id]
    assert jobs.find(project_id=project, status=JobStatus.running) == []
    for bad in (0, 501):
        with pytest.raises(UserError, match="limit"):
            jobs.find(project_id=project, limit=bad)


def test_logs_page_after_an_id_and_truncate_long_lines(store: Store, jobs: JobService, project: str) -> None:
    job = jobs.submit("k.a", {}, project_id=project)
    for i in range(5):
        jobs.append_log(job.id, f"line {i}", "info")
    jobs.append_log(job.id, "x" * 10_000, "error")

    first = jobs.logs(job.id, project, limit=2)
    assert [line.line for line in first] == ["line 0", "line 1"]
    rest = jobs.logs(job.id, project, after=first[-1].id)
    assert [line.line for line in rest[:3]] == ["line 2", "line 3", "line 4"]
    assert rest[-1].level == "error"
    assert len(rest[-1].line) == 4000
    assert jobs.logs(job.id, project, after=rest[-1].id) == []
