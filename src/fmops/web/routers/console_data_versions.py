"""`/console/data/{name}`: a dataset's versions as a lineage tree, a version's rows (search and paging),
its curation report and lineage, and the diff between two versions.

Rows are read a page at a time (`DatasetService.page`, `read_page` with row numbers), which decodes only
the row groups that hold the page: a page deep in a million rows costs one or two row groups, not a
scan. A search reads row groups until it has a page of matches.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import IO, Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.datasets.imports import ImportResult, import_file
from fmops.datasets.records import RecordKind
from fmops.datasets.service import NAME_PATTERN, DatasetService, VersionInfo, check_name
from fmops.errors import NotFound, UserError
from fmops.platform import Platform, PlatformDep
from fmops.store.models import Job
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import is_htmx
from fmops.web.pages import current_page
from fmops.web.routers import console_data_view as view
from fmops.web.routers.console_traces_view import pretty
from fmops.web.templating import render

router = APIRouter(prefix="/console/data", include_in_schema=False, dependencies=web_gate(Role.engineer))
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]
PAGE_SIZE = 20
MAX_PAGE_SIZE = 200
MAX_SEARCH = 500
DIFF_EXAMPLES = 20
FINETUNE_JOBS = 500  # newest fine-tune jobs looked through for the ones that used a version
UPLOAD_CHUNK = 1 << 20
HELPERS = {
    "page_size": PAGE_SIZE,
    "step_name": view.step_name,
    "counts_text": view.counts_text,
    "source_title": view.source_title,
    "pretty": pretty,
}


def datasets(platform: Platform) -> DatasetService:
    return platform.datasets


FILE_FORMATS = ("jsonl", "csv", "parquet")  # a folder (a saved HF dataset) is not uploaded: the CLI reads it
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def import_upload(
    platform: Platform,
    me: Principal,
    stream: IO[bytes],
    filename: str,
    name: str,
    kind: RecordKind | None,
    fmt: str | None,
    skip_bad_rows: bool,
) -> ImportResult:
    """The uploaded file, copied to a private temporary folder under a safe form of its own name (whose
    suffix tells its format), imported as `fmops data import` does; the copy is removed whatever happens."""
    check_name(name)
    if fmt is not None and fmt not in FILE_FORMATS:
        raise UserError(f"format must be one of {', '.join(FILE_FORMATS)}, not {fmt!r}", param="format")
    safe = _UNSAFE.sub("_", filename)[-100:].lstrip(".") or "upload"
    with tempfile.TemporaryDirectory(prefix="fmops-upload-") as folder:
        path = FilePath(folder) / safe
        with path.open("wb") as copy:
            while chunk := stream.read(UPLOAD_CHUNK):
                copy.write(chunk)
        return import_file(
            datasets(platform),
            project_id=me.project_id,
            path=path,
            name=name,
            kind=kind,
            fmt=fmt,
            on_error="skip" if skip_bad_rows else "fail",
            created_by_key_id=me.key_id,
            file_name=filename,
        )


# --- the dataset page ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeRow:
    info: VersionInfo
    depth: int  # under its parent when the parent is a version of this dataset


def lineage_tree(found: list[VersionInfo]) -> list[TreeRow]:
    """A dataset's versions, each under the version it was derived from (newest branch on top)."""
    ids = {v.id for v in found}
    children: dict[str | None, list[VersionInfo]] = {}
    for v in found:
        children.setdefault(v.parent_id if v.parent_id in ids else None, []).append(v)
    rows: list[TreeRow] = []
    pending = [(v, 0) for v in sorted(children.get(None, []), key=lambda v: v.version)]
    while pending:  # depth first; the newest root and child first
        v, depth = pending.pop()
        rows.append(TreeRow(v, depth))
        pending.extend((c, depth + 1) for c in sorted(children.get(v.id, []), key=lambda c: c.version))
    return rows


def _parents(service: DatasetService, me: Principal, found: list[VersionInfo]) -> dict[str, VersionInfo]:
    """The parents of these versions by id: this dataset's own, and other datasets' looked up."""
    known = {v.id: v for v in found}
    for parent_id in {v.parent_id for v in found if v.parent_id and v.parent_id not in known}:
        try:
            known[parent_id] = service.get(me.project_id, parent_id)
        except NotFound:  # a deleted dataset's version: shown as its id
            continue
    return known


def _dataset(platform: Platform, me: Principal, name: str) -> dict[str, Any]:
    service = datasets(platform)
    found = service.list_versions(me.project_id, name)  # newest first; a 404 for an unknown dataset
    if not found:
        raise NotFound(f"dataset {name!r} has no versions", param="name")
    newest = found[0]
    parent = next((v for v in found if v.id == newest.parent_id), found[1] if len(found) > 1 else newest)
    return {
        **HELPERS,
        "name": name,
        "dataset": service.dataset(me.project_id, name),
        "versions": found,
        "tree": lineage_tree(found),
        "parents": _parents(service, me, found),
        "newest": newest,
        "default_a": parent.version,
    }


@router.get("/{name}")
async def dataset_page(request: Request, platform: PlatformDep, me: WebPrincipal, name: Name) -> Response:
    context = await run_in_threadpool(_dataset, platform, me, name)
    return render(request, "console/data/dataset.html", context)


# --- a version: rows, report, lineage -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowsQuery:
    q: str
    offset: int
    limit: int

    def url(self, name: str, version: int, **change: Any) -> str:
        """The version page showing these rows (only the parameters that differ from the defaults)."""
        values = {"q": self.q, "offset": self.offset, "limit": self.limit, **change}
        params = {k: v for k, v in values.items() if v and not (k == "limit" and v == PAGE_SIZE)}
        return f"/console/data/{name}/versions/{version}" + (f"?{urlencode(params)}" if params else "")


def _rows(platform: Platform, info: VersionInfo, query: RowsQuery) -> dict[str, Any]:
    page = datasets(platform).page(info, query.offset, query.limit, query.q or None)
    step = query.limit
    return {
        "info": info,
        "query": query,
        "deferred": False,
        # (position in the list from 1, row number from 1, the record laid out)
        "records": [
            (query.offset + i + 1, number + 1, view.mark(view.show(info.kind, record), query.q))
            for i, (number, record) in enumerate(page.rows)
        ],
        "next": query.url(info.name, info.version, offset=query.offset + step) if page.has_more else None,
        "previous": query.url(info.name, info.version, offset=max(query.offset - step, 0))
        if query.offset
        else None,
    }


def _finetunes(platform: Platform, me: Principal, info: VersionInfo) -> list[Job]:
    """Fine-tune jobs that used this version: lineage forward to the models trained on it.

    Any job kind starting with `finetune` whose params name the version (its id or `name@version`), or
    whose result does (a job given the bare dataset name records the version it resolved).
    """
    names = {info.id, info.ref}
    query = (
        select(Job)
        .where(Job.project_id == me.project_id, Job.kind.like("finetune%"))
        .order_by(Job.created_at.desc())
        .limit(FINETUNE_JOBS)
    )
    with platform.store.session() as session:
        jobs = list(session.scalars(query))
    return [
        j for j in jobs if view.finetune_mentions(j.params, names) or view.finetune_mentions(j.result, names)
    ]


def _job(platform: Platform, me: Principal, job_id: Any) -> Job | None:
    if not isinstance(job_id, str) or not job_id.isalnum():
        return None
    with platform.store.session() as session:
        job = session.get(Job, job_id)
    return job if job is not None and job.project_id == me.project_id else None


def _source(platform: Platform, me: Principal, info: VersionInfo) -> view.Source:
    source = view.describe_source(info.source)
    if source.type == "curation":
        job = _job(platform, me, info.source.get("job_id"))
        facts = [f for f in source.facts if f[0] != "job_id"] if job is not None else source.facts
        return dataclasses.replace(source, job=job, facts=facts)
    if source.link and current_page(source.link.split("?", 1)[0]) is None:
        return dataclasses.replace(source, link=None, link_text="")  # no console page for it (yet)
    return source


def _version_page(
    platform: Platform, me: Principal, name: str, version: int, query: RowsQuery
) -> dict[str, Any]:
    service = datasets(platform)
    info = service.resolve(me.project_id, f"{name}@{version}")
    chain = service.lineage(me.project_id, info.id)  # this version, its parent, ... to the root
    reasons, report_rest = view.read_report(info.kind, info.report, info.counts)
    # A search reads until it has a page of matches (seconds for a rare term in a million rows): a page
    # opened with one paints first and fetches its rows after; a plain page of rows costs a row group.
    rows = {"info": info, "query": query, "deferred": True} if query.q else _rows(platform, info, query)
    return {
        **HELPERS,
        **rows,
        "parent": chain[1] if len(chain) > 1 else None,
        "lineage": [(v, _source(platform, me, v)) for v in chain],
        "children": service.children(me.project_id, info.id),
        "reasons": reasons,
        "report_rest": report_rest,
        "finetunes": _finetunes(platform, me, info),
    }


Search = Annotated[str, Query(max_length=MAX_SEARCH)]
Offset = Annotated[int, Query(ge=0, le=2**53)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Row = Annotated[int | None, Query(ge=1, le=2**53)]


@router.get("/{name}/versions/{version}")
async def version_page(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    name: Name,
    version: Version,
    q: Search = "",
    offset: Offset = 0,
    row: Row = None,
    limit: Limit = PAGE_SIZE,
) -> Response:
    """`row` (from 1, what the jump form sends) or `offset` (rows skipped, what the pager's links carry)."""
    query = RowsQuery(q=q.strip(), offset=row - 1 if row is not None else offset, limit=limit)
    if is_htmx(request) and not request.headers.get("hx-history-restore-request"):
        # The search form or the pager: only the rows, and the URL to show.
        info = await run_in_threadpool(datasets(platform).resolve, me.project_id, f"{name}@{version}")
        context = await run_in_threadpool(_rows, platform, info, query)
        response = render(request, "console/data/_rows.html", {**HELPERS, **context})
        url = query.url(name, version)
        if not request.headers.get("hx-current-url", "").endswith(url):  # not the page's own deferred rows
            response.headers["hx-push-url"] = url
        return response
    context = await run_in_threadpool(_version_page, platform, me, name, version, query)
    return render(request, "console/data/version.html", context)


# --- the diff of two versions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShownDiff:
    added: int
    removed: int
    unchanged: int
    added_examples: list[view.Shown]
    removed_examples: list[view.Shown]


def _diff_versions(platform: Platform, me: Principal, name: str, a: int, b: int) -> dict[str, Any]:
    """The two versions (a 404 for either, before any work) and the dataset's versions for the form."""
    if a == b:
        raise UserError(f"choose two different versions to compare (both are v{a})", param="b")
    service = datasets(platform)
    return {
        "name": name,
        "old": service.resolve(me.project_id, f"{name}@{a}"),
        "new": service.resolve(me.project_id, f"{name}@{b}"),
        "versions": service.list_versions(me.project_id, name),
    }


def _diff(platform: Platform, me: Principal, name: str, a: int, b: int) -> dict[str, Any]:
    found = datasets(platform).diff(me.project_id, f"{name}@{a}", f"{name}@{b}", examples=DIFF_EXAMPLES)
    return {
        "name": name,
        "old": found.a,
        "new": found.b,
        "diff": ShownDiff(
            added=found.added,
            removed=found.removed,
            unchanged=found.unchanged,
            added_examples=[view.show(found.b.kind, r) for r in found.added_examples],
            removed_examples=[view.show(found.a.kind, r) for r in found.removed_examples],
        ),
    }


VersionNumber = Annotated[int, Query(ge=1, le=2**31 - 1)]


@router.get("/{name}/diff")
async def diff_page(
    request: Request, platform: PlatformDep, me: WebPrincipal, name: Name, a: VersionNumber, b: VersionNumber
) -> Response:
    """The page paints at once; the comparison (every row's hash of both versions: seconds at a million
    rows) is fetched by the page after it has painted, from `/diff/rows`."""
    context = await run_in_threadpool(_diff_versions, platform, me, name, a, b)
    return render(request, "console/data/diff.html", context)


@router.get("/{name}/diff/rows")
async def diff_rows(
    request: Request, platform: PlatformDep, me: WebPrincipal, name: Name, a: VersionNumber, b: VersionNumber
) -> Response:
    if a == b:
        raise UserError(f"choose two different versions to compare (both are v{a})", param="b")
    context = await run_in_threadpool(_diff, platform, me, name, a, b)
    return render(request, "console/data/_diff_rows.html", context)
