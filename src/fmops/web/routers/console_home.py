"""`/console`: the frame's landing page, a map of the console's sections for the caller's role."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fmops.auth import Role
from fmops.web.deps import web_gate
from fmops.web.templating import render

# Annotators too: their map holds only their queues (pages_for filters by role).
router = APIRouter(prefix="/console", include_in_schema=False, dependencies=web_gate(Role.annotator))


@router.get("")
async def console_home(request: Request) -> Response:
    return render(request, "console/home.html")
