"""Prometheus metrics of the gateway at `GET /metrics`.

The endpoint needs an engineer (or admin) key: the model names, volumes and costs it shows are the
project's business. Point Prometheus at it with `authorization: {credentials: <key>}` (bearer) in
the scrape config.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from fmops.auth import Role
from fmops.errors import NotFound
from fmops.platform import PlatformDep
from fmops.server.deps import gate
from fmops.tracing.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, errors, latency and TTFT, tokens, cost, trace queue",
    dependencies=gate(Role.engineer),
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
)
async def metrics(platform: PlatformDep) -> Response:
    if platform.metrics is None:  # a platform built for a CLI command (serving=False) keeps none
        raise NotFound("this process keeps no metrics")
    return Response(platform.metrics.exposition(), media_type=CONTENT_TYPE)
