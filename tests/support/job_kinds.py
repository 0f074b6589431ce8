"""Job kinds used by the tests, loaded into test servers through FMOPS_PLUGINS."""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, Field

from fmops.jobs import JobContext, RetryableJobError, job_kind


class CountParams(BaseModel):
    steps: int = Field(5, ge=1, le=10_000)
    step_seconds: float = Field(0.1, ge=0, le=10)


@job_kind("test.count", params=CountParams, description="Counts to `steps`, checkpointing each step")
def count(ctx: JobContext, params: CountParams) -> dict[str, Any]:
    start = int(ctx.state.get("done", 0))
    if start:
        ctx.log(f"resuming at step {start}")
    for step in range(start, params.steps):
        ctx.sleep(params.step_seconds)
        ctx.checkpoint({"done": step + 1, "pid": os.getpid()})
        ctx.progress((step + 1) / params.steps, f"step {step + 1}/{params.steps}")
    return {"counted": params.steps, "resumed_from": start}


@job_kind("test.fail", description="Always fails")
def fail(ctx: JobContext, params: None) -> None:
    raise ValueError("this job always fails")


@job_kind("test.flaky", description="Fails transiently on the first attempt")
def flaky(ctx: JobContext, params: None) -> dict[str, Any]:
    if not ctx.state.get("tried"):
        ctx.checkpoint({"tried": True})
        raise RetryableJobError("first attempt fails")
    return {"ok": True}


@job_kind("test.die", description="Kills its worker process on the first attempt")
def die(ctx: JobContext, params: None) -> dict[str, Any]:
    if not ctx.state.get("died"):
        ctx.checkpoint({"died": True})
        os._exit(9)
    return {"survived": True}


@job_kind("test.stubborn", description="Ignores cancellation (sleeps without checking)")
def stubborn(ctx: JobContext, params: None) -> None:
    time.sleep(3600)
