"""Executors: where a job's heavy work runs. `local` runs it in the job's own process; `ray` on a Ray
cluster (Ray Data for batches, Ray tasks for shards, Ray Train for fine-tunes).

An executor runs what a service hands it (functions and plain data) and knows nothing of curation,
evals or fine-tuning; the services choose which executor from `Settings.executor`.
"""

from __future__ import annotations

from fmops.executors.base import Channel, Executor, LocalExecutor, TrainLoop
from fmops.settings import Settings

__all__ = ["Channel", "Executor", "LocalExecutor", "TrainLoop", "make_executor"]


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "ray":
        from fmops.executors.ray_cluster import RayExecutor

        return RayExecutor(settings.ray_address)
    return LocalExecutor()
