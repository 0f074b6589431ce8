"""Durable background jobs: a table, local worker processes, and the registry later services plug into."""

from fmops.jobs.context import JobCancelled, JobContext, RetryableJobError
from fmops.jobs.registry import JobKind, get_kind, job_kind, kinds
from fmops.jobs.service import JobService, JobStatus

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobKind",
    "JobService",
    "JobStatus",
    "RetryableJobError",
    "get_kind",
    "job_kind",
    "kinds",
]
