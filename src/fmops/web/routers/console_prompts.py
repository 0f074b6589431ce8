"""`/console/prompts`: the prompt registry: list, versions, labels (promote, unlabel), diff, editor.

Every action calls `PromptService` as the REST router does (`/api/prompts`); the editor pushes the
YAML a person writes, so a syntax error shows the service's 400 with its line and column.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.catalog import DEFAULT_CHAT_MODEL
from fmops.errors import NotFound, UserError
from fmops.platform import Platform, PlatformDep
from fmops.prompts.files import dump_yaml, load_specs, spec_document
from fmops.prompts.schemas import LABEL_PATTERN, NAME_PATTERN, PromptVersionView
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go, is_htmx
from fmops.web.pages import console_page
from fmops.web.routers.build_forms import is_chat_model, number, prompts, texts
from fmops.web.routers.console_models import effective_capabilities
from fmops.web.templating import render

PAGE = console_page("/console/prompts", "Prompts", "Build", role=Role.engineer, order=20)
router = APIRouter(prefix="/console/prompts", include_in_schema=False, dependencies=web_gate(Role.engineer))

Name = Annotated[str, Path(pattern=NAME_PATTERN)]
Ref = Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9._-]*$")]
SUGGESTED_LABELS = ("production", "staging")
NEW_PROMPT = """\
name: my-prompt
description: What this prompt is for
model: {model}
params:
  max_tokens: 200
  temperature: 0.2
messages:
  - role: system
    content: You are a concise, friendly assistant.
  - role: user
    content: "{{{{ question }}}}"
message: First version
"""


def _editor_yaml(view: PromptVersionView, description: str | None) -> str:
    """The newest version as a spec to edit: without its labels (a push would move them) or message."""
    document = spec_document(view, description)
    document.pop("labels", None)
    document.pop("message", None)
    return dump_yaml(document)


def _diff_lines(text: str) -> list[tuple[str, str]]:
    """A unified diff's lines, each with the class that colours it."""
    lines = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append((kind, line))
    return lines


def _diff(platform: Platform, me: Principal, name: str, a: str, b: str) -> dict[str, Any]:
    old, new, text = prompts(platform).compare(me.project_id, name, a, b)
    return {"a": a, "b": b, "old": old, "new": new, "lines": _diff_lines(text)}


def _detail(platform: Platform, me: Principal, name: str, a: str | None, b: str | None) -> dict[str, Any]:
    service = prompts(platform)
    versions = service.versions(me.project_id, name)  # newest first; a 404 for an unknown prompt
    summary = next((p for p in service.list(me.project_id) if p.name == name), None)
    if summary is None:  # deleted between the two reads
        raise NotFound(f"no prompt {name!r} in this project", param="name")
    newest = versions[0]
    if a is None or b is None:
        a, b = str(versions[1].version if len(versions) > 1 else newest.version), str(newest.version)
    labels = sorted(summary.labels)
    return {
        "summary": summary,
        "versions": versions,
        "newest": newest,
        "labels": labels,
        "label_choices": sorted(set(labels) | set(SUGGESTED_LABELS)),
        "diff": _diff(platform, me, name, a, b),
        "editor": _editor_yaml(newest, summary.description),
    }


@router.get("")
async def prompts_page(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    listing = await run_in_threadpool(prompts(platform).list, me.project_id)
    models = await run_in_threadpool(platform.catalog.models, me.project_id)
    chat = sorted(a for a, m in models.items() if is_chat_model(effective_capabilities(m)))
    example_model = DEFAULT_CHAT_MODEL if DEFAULT_CHAT_MODEL in chat else (chat or ["my-model"])[0]
    example = NEW_PROMPT.format(model=example_model)
    return render(request, "console/prompts/index.html", {"prompts": listing, "editor": example})


@router.post("")
async def push_prompt(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    """Push the editor's YAML: a new version (or the newest one again when nothing changed)."""
    values = texts(await request.form())
    if "spec" not in values:
        raise UserError("the prompt YAML is empty: write a prompt (name, messages, ...)", param="spec")
    specs = load_specs(values["spec"], "the prompt YAML")
    if len(specs) != 1:
        raise UserError(f"the editor pushes one prompt at a time, not {len(specs)}", param="spec")
    spec = specs[0]
    if "message" in values and spec.message is None:
        spec = spec.model_copy(update={"message": values["message"][:2000]})
    view, created = await run_in_threadpool(
        prompts(platform).push, me.project_id, spec, author=me.user_name, author_key_id=me.key_id
    )
    outcome = "pushed" if created else "unchanged"
    return go(request, f"{PAGE.path}/{view.name}?{outcome}={view.version}")


@router.get("/{name}")
async def prompt_page(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    name: Name,
    a: Ref = None,
    b: Ref = None,
    pushed: Annotated[int | None, Query(ge=1)] = None,
    unchanged: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    context = await run_in_threadpool(_detail, platform, me, name, a or None, b or None)
    if pushed is not None:
        context["notice"] = f"Pushed version {pushed}."
    elif unchanged is not None:
        context["notice"] = f"Nothing changed: the content is the same as version {unchanged}."
    return render(request, "console/prompts/detail.html", context)


@router.get("/{name}/diff")
async def prompt_diff(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    name: Name,
    a: Annotated[str, Query(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")],
    b: Annotated[str, Query(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")],
) -> Response:
    if not is_htmx(request):  # a shared link: the whole page with this diff
        return go(request, f"{PAGE.path}/{name}?a={a}&b={b}#diff")
    diff = await run_in_threadpool(_diff, platform, me, name, a, b)
    return render(request, "console/prompts/_diff.html", {"diff": diff, "name": name})


async def _versions_fragment(
    request: Request, platform: Platform, me: Principal, name: str, flash: str
) -> Response:
    if not is_htmx(request):
        return go(request, f"{PAGE.path}/{name}")
    context = await run_in_threadpool(_detail, platform, me, name, None, None)
    context["flash"] = flash
    return render(request, "console/prompts/_versions.html", context)


@router.post("/{name}/labels")
async def set_label(request: Request, platform: PlatformDep, me: WebPrincipal, name: Name) -> Response:
    """Point a label at a version (promote): endpoints serving the label switch at once."""
    values = texts(await request.form())
    label = values.get("label", "")
    version = number(values, "version", low=1, high=2**31 - 1)
    if not label:
        raise UserError("name the label to move (production, staging, ...)", param="label")
    if version is None or version != int(version):
        raise UserError("choose the version the label should point at", param="version")
    view = await run_in_threadpool(
        prompts(platform).set_label, me.project_id, name, label, int(version), actor=me.user_name
    )
    flash = f"Label {label} now points at version {view.version} of {name}."
    return await _versions_fragment(request, platform, me, name, flash)


@router.delete("/{name}/labels/{label}")
async def remove_label(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    name: Name,
    label: Annotated[str, Path(pattern=LABEL_PATTERN)],
) -> Response:
    version = await run_in_threadpool(
        prompts(platform).remove_label, me.project_id, name, label, actor=me.user_name
    )
    flash = f"Removed label {label} (it pointed at version {version})."
    return await _versions_fragment(request, platform, me, name, flash)
