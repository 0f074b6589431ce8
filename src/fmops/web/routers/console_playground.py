"""`/console/playground`: one input through several prompt versions × models, side by side.

The grid runs through `fmops.prompts.playground.Playground` (as `/api/playground` does), so every
cell is a real gateway call with its own trace, latency, tokens and cost. The page can be opened
preselected (`?prompt=support&versions=1,2&models=a,b`) or prefilled from a stored trace
(`?trace_id=...`, the traces explorer's "open in playground").
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.errors import NotFound, UserError
from fmops.platform import Platform, PlatformDep
from fmops.prompts.playground import MAX_TARGETS, PlaygroundRequest
from fmops.prompts.schemas import NAME_PATTERN
from fmops.tracing.query import SpanNode, TraceQuery
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.pages import console_page
from fmops.web.routers.build_forms import invalid, is_chat_model, number, playground, prompts, texts
from fmops.web.routers.console_models import effective_capabilities
from fmops.web.templating import render

PAGE = console_page("/console/playground", "Playground", "Build", role=Role.engineer, order=30)
router = APIRouter(
    prefix="/console/playground", include_in_schema=False, dependencies=web_gate(Role.engineer)
)

PromptName = Annotated[str | None, Query(max_length=100, pattern=NAME_PATTERN.replace("^", "^$|^", 1))]
DEFAULT_MAX_TOKENS = 128
VAR_PREFIX = "var."


def _csv(raw: str | None, limit: int = MAX_TARGETS) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()][:limit]


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a multimodal content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p)
    return ""


def _first_llm(nodes: list[SpanNode]) -> SpanNode | None:
    for node in nodes:
        if node.span.kind == "llm":
            return node
        found = _first_llm(node.children)
        if found is not None:
            return found
    return None


def _from_trace(platform: Platform, me: Principal, trace_id: str) -> dict[str, Any]:
    """The input a stored call had: its prompt version, model, variables and last user message."""
    roots = TraceQuery(platform.store).get_trace(me.project_id, trace_id)
    node = _first_llm(roots) or roots[0]
    span = node.span
    given = span.input if isinstance(span.input, dict) else {}
    messages = [m for m in given.get("messages") or [] if isinstance(m, dict)]
    variables = given.get("variables") if isinstance(given.get("variables"), dict) else {}
    versions: list[str] = []
    if span.prompt_name and span.prompt_version:
        versions = [str(span.prompt_version)]
        try:  # the rendered prompt came first; what the caller sent follows it
            view = prompts(platform).get(me.project_id, span.prompt_name, version=span.prompt_version)
            messages = messages[len(view.messages) :]
        except NotFound:
            pass
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return {
        "trace_id": trace_id,
        "prompt": span.prompt_name or "",
        "versions": versions,
        "models": [span.model] if span.model else [],
        "variables": {str(k): v if isinstance(v, str) else str(v) for k, v in (variables or {}).items()},
        "message": users[-1] if users else "",
    }


def _context(platform: Platform, me: Principal, chosen: dict[str, Any]) -> dict[str, Any]:
    """The form: prompts, the chosen prompt's versions and variables, the chat models."""
    service = prompts(platform)
    names = [p.name for p in service.list(me.project_id)]
    versions = service.versions(me.project_id, chosen["prompt"]) if chosen["prompt"] in names else []
    picked = [v for v in versions if str(v.version) in chosen["versions"]] or versions[:1]
    variables = list(dict.fromkeys([n for v in picked or versions for n in v.variables]))
    variables += [n for n in chosen["variables"] if n not in variables]
    models = platform.catalog.models(me.project_id)
    chat = sorted(a for a, m in models.items() if is_chat_model(effective_capabilities(m)))
    return {
        **chosen,
        "prompt_names": names,
        "prompt_versions": versions,
        "picked_versions": [str(v.version) for v in picked],
        "variable_names": variables,
        "chat_models": chat,
        "max_targets": MAX_TARGETS,
        "default_max_tokens": DEFAULT_MAX_TOKENS,
    }


@router.get("")
async def playground_page(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    prompt: PromptName = None,
    versions: Annotated[str | None, Query(max_length=200, pattern=r"^[0-9, ]*$")] = None,
    models: Annotated[str | None, Query(max_length=2000)] = None,
    trace_id: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> Response:
    chosen: dict[str, Any] = {
        "trace_id": None,
        "prompt": prompt or "",
        "versions": _csv(versions),
        "models": _csv(models),
        "variables": {},
        "message": "",
    }
    if trace_id:
        chosen = await run_in_threadpool(_from_trace, platform, me, trace_id)
    context = await run_in_threadpool(_context, platform, me, chosen)
    return render(request, "console/playground/index.html", context)


@router.get("/targets")
async def targets_fragment(
    request: Request, platform: PlatformDep, me: WebPrincipal, prompt: PromptName = None
) -> Response:
    """The chosen prompt's versions and variables (the form swaps them in when the prompt changes)."""
    chosen = {"prompt": prompt or "", "versions": [], "models": [], "variables": {}, "message": ""}
    context = await run_in_threadpool(_context, platform, me, chosen)
    return render(request, "console/playground/_targets.html", context)


def _request(values: dict[str, str], versions: list[str], models: list[str]) -> PlaygroundRequest:
    """The grid the form asks for: each checked version × each checked model."""
    prompt = values.get("prompt")
    params: dict[str, Any] = {}
    max_tokens = number(values, "max_tokens", low=1, high=8192)
    if max_tokens is not None:
        params["max_tokens"] = int(max_tokens)
    elif prompt is None:  # no version's params to fall back on: keep a bare test call short
        params["max_tokens"] = DEFAULT_MAX_TOKENS
    temperature = number(values, "temperature", low=0, high=2)
    if temperature is not None:
        params["temperature"] = temperature
    if prompt is None and not models:
        raise UserError("choose a prompt, or at least one model to send the message to", param="models")
    # Oldest first, so "1 vs 2" reads left to right.
    chosen_versions: list[int | None] = [*sorted({int(v) for v in versions if v.isdigit()})] or [None]
    chosen_models: list[str | None] = list(models) or [None]
    targets = [
        {"prompt": prompt, "version": v, "model": m, "params": params}
        for v in (chosen_versions if prompt else [None])
        for m in chosen_models
    ]
    if len(targets) > MAX_TARGETS:
        raise UserError(
            f"{len(targets)} columns (versions × models); at most {MAX_TARGETS}: choose fewer",
            param="targets",
        )
    variables = {k.removeprefix(VAR_PREFIX): v for k, v in values.items() if k.startswith(VAR_PREFIX)}
    messages = [{"role": "user", "content": values["message"]}] if "message" in values else []
    try:
        return PlaygroundRequest.model_validate(
            {"inputs": [{"variables": variables, "messages": messages}], "targets": targets}
        )
    except ValidationError as exc:
        raise invalid(exc, "the playground") from None


@router.post("/run")
async def run_grid(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    form = await request.form()
    versions = [str(v) for v in form.getlist("versions")]
    models = [str(m) for m in form.getlist("models") if str(m).strip()]
    grid = _request(texts(form), versions, models)
    result = await playground(platform).run(me, grid)
    columns = list(zip(result.targets, result.cells, strict=True))  # one input: a cell per target
    return render(request, "console/playground/_results.html", {"columns": columns})
