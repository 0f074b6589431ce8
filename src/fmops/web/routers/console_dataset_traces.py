""" "Add to dataset" on a trace's page: a new version of a chat dataset, its latest version plus this
trace's example (the corrected answer where a person corrected it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Role
from fmops.datasets.from_traces import TraceDatasets
from fmops.platform import PlatformDep
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.templating import render

router = APIRouter(prefix="/console/traces", include_in_schema=False, dependencies=web_gate(Role.engineer))
TraceId = Path(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z]+$")


@router.post("/{trace_id}/dataset")
async def add_to_dataset(
    request: Request,
    platform: PlatformDep,
    principal: WebPrincipal,
    name: Annotated[str, Form(max_length=200)],
    trace_id: str = TraceId,
) -> Response:
    builder = TraceDatasets(platform.store, platform.datasets)
    version = await run_in_threadpool(
        builder.add_trace,
        project_id=principal.project_id,
        name=name.strip(),
        trace_id=trace_id,
        created_by_key_id=principal.key_id,
    )
    return render(
        request, "console/traces/dataset.html", {"trace_id": trace_id, "added": version}, status=201
    )
