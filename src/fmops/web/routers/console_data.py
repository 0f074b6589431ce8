"""`/console/data`: the datasets of a project and a form that imports a file as a new version.

The import calls the same datasets service as `fmops data import` and `POST /api/datasets/import`
(format and shape detected, rows checked), and shows what it detected and which rows it refused.
A dataset's and a version's pages live in `console_data_versions` (its own router, same prefix).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.datasets.records import RecordKind
from fmops.errors import UserError
from fmops.platform import Platform, PlatformDep
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import is_htmx
from fmops.web.pages import console_page
from fmops.web.routers import console_data_versions as versions
from fmops.web.routers.console_data_versions import datasets
from fmops.web.templating import render

PAGE = console_page("/console/data", "Datasets", "Data", role=Role.engineer, order=10)
router = APIRouter(prefix="/console/data", include_in_schema=False, dependencies=web_gate(Role.engineer))
KINDS = tuple(k.value for k in RecordKind)
FORM_OVERHEAD = 16 * 1024  # multipart boundaries and the form's small fields


def _listing(platform: Platform, me: Principal) -> dict[str, Any]:
    return {
        "datasets": datasets(platform).list_datasets(me.project_id),
        "kinds": KINDS,
        "formats": versions.FILE_FORMATS,
        # What the body limit leaves for the file once the form's other fields are counted.
        "max_upload": max(platform.settings.max_body_bytes - FORM_OVERHEAD, 0),
    }


@router.get("")
async def data_page(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    context = await run_in_threadpool(_listing, platform, me)
    return render(request, "console/data/index.html", context)


@router.post("/import")
async def import_upload(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    file: Annotated[UploadFile, File()],
    name: Annotated[str, Form(max_length=100)] = "",
    kind: Annotated[str, Form(max_length=20)] = "",
    fmt: Annotated[str, Form(alias="format", max_length=20)] = "",
    on_error: Annotated[str, Form(max_length=10)] = "refuse",
) -> Response:
    """Import the uploaded file as a new version; the answer shows what was detected and refused rows."""
    if kind and kind not in KINDS:
        raise UserError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", param="kind")
    if on_error not in ("skip", "refuse"):
        raise UserError(f"on_error must be skip or refuse, not {on_error!r}", param="on_error")
    filename = (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    if not filename:
        raise UserError("choose a file to import", param="file")
    name = name.strip() or filename.split(".", 1)[0]
    result = await run_in_threadpool(
        versions.import_upload,
        platform,
        me,
        file.file,
        filename,
        name,
        RecordKind(kind) if kind else None,
        fmt or None,
        on_error == "skip",
    )
    context: dict[str, Any] = {"result": result, **await run_in_threadpool(_listing, platform, me)}
    if is_htmx(request):  # the result, and the datasets table again (out of band) with the new version
        return render(request, "console/data/_import_result.html", {**context, "oob": True})
    return render(request, "console/data/index.html", context)
