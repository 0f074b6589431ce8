"""`/console/models`: the project's model catalog, adding a model, testing one with a prompt, and a
fine-tuned model's loop (`/console/models/{alias}/loop`).

Everything goes through the catalog and the gateway as the REST API does (`/api/models`, the
playground): a test call is a real, traced gateway call with the caller's limits and budget.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from fmops.auth import Role
from fmops.catalog import ModelEntry, ModelSpec
from fmops.errors import UserError
from fmops.finetune.loop import finetuned_aliases, loop_path, model_loop
from fmops.platform import Platform, PlatformDep
from fmops.prompts.playground import PlaygroundRequest
from fmops.providers.registry import get_provider_class, providers
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go, is_htmx
from fmops.web.pages import console_page
from fmops.web.routers.build_forms import invalid, is_chat_model, number, playground, texts
from fmops.web.templating import render

PAGE = console_page("/console/models", "Models", "Build", role=Role.engineer, order=10)
router = APIRouter(prefix="/console/models", include_in_schema=False, dependencies=web_gate(Role.engineer))

CAPABILITIES = ("streaming", "tools", "json_schema")  # what the add form lets an engineer declare
TEST_MAX_TOKENS = 64


def effective_capabilities(entry: ModelEntry) -> dict[str, bool]:
    """What the gateway will assume: the provider's defaults with the entry's own over them."""
    try:
        base = asdict(get_provider_class(entry.provider).capabilities)
    except UserError:  # a provider whose plugin is no longer installed
        base = {}
    base.pop("local", None)
    return {**base, **{k: bool(v) for k, v in entry.capabilities.items()}}


def _rows(platform: Platform, project_id: str) -> list[dict[str, Any]]:
    models = platform.catalog.models(project_id)
    finetuned = finetuned_aliases(platform.store, project_id)
    rows = []
    for entry in sorted(models.values(), key=lambda m: (not m.builtin, m.alias)):
        caps = effective_capabilities(entry)
        cooling = platform.gateway.breaker.cooling_for(entry.connection_id)
        loop = loop_path(entry.alias) if entry.alias in finetuned else None
        rows.append(
            {"entry": entry, "caps": caps, "chat": is_chat_model(caps), "cooling": cooling, "loop": loop}
        )
    return rows


def _context(platform: Platform, project_id: str) -> dict[str, Any]:
    rows = _rows(platform, project_id)
    return {
        "rows": rows,
        "chat_models": [r["entry"].alias for r in rows if r["chat"]],
        "providers": sorted(providers()),
        "capability_names": CAPABILITIES,
        "test_max_tokens": TEST_MAX_TOKENS,
    }


@router.get("")
async def models_page(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    context = await run_in_threadpool(_context, platform, me.project_id)
    return render(request, "console/models/index.html", context)


def _spec(values: dict[str, str], form_caps: list[str]) -> ModelSpec:
    fields: dict[str, Any] = {
        k: values[k] for k in ("alias", "provider", "model", "base_url", "api_key", "license") if k in values
    }
    for name, high in (("input_price", 1_000_000), ("output_price", 1_000_000)):
        value = number(values, name, low=0, high=high)
        if value is not None:
            fields[name] = value
    window = number(values, "context_window", low=1, high=100_000_000)
    if window is not None:
        fields["context_window"] = int(window)
    fields["capabilities"] = {name: True for name in form_caps if name in CAPABILITIES}
    try:
        return ModelSpec.model_validate(fields)
    except ValidationError as exc:
        raise invalid(exc, "the model") from None


@router.post("")
async def add_model(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    form = await request.form()
    spec = _spec(texts(form), [str(v) for v in form.getlist("capabilities")])
    entry = await run_in_threadpool(platform.catalog.add, me.project_id, spec)
    if not is_htmx(request):
        return go(request, PAGE.path)
    context = await run_in_threadpool(_context, platform, me.project_id)
    context["flash"] = f"Added model {entry.alias} ({entry.provider})."
    return render(request, "console/models/_table.html", context)


@router.get("/{alias:path}/loop")
async def loop_page(alias: str, request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    """A fine-tuned model's loop, one card per step (a 404 page for a model no fine-tune produced)."""
    loop = await run_in_threadpool(model_loop, platform.store, me.project_id, alias)
    return render(request, "console/models/loop.html", {"chain": loop})


@router.delete("/{alias:path}")
async def remove_model(alias: str, request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    await run_in_threadpool(platform.catalog.remove, me.project_id, alias)
    context = await run_in_threadpool(_context, platform, me.project_id)
    context["flash"] = f"Removed model {alias}."
    return render(request, "console/models/_table.html", context)


@router.post("/test")
async def test_model(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    """One prompt to one model, through the gateway (limits, budget, a trace) as the playground does."""
    values = texts(await request.form())
    if "model" not in values:
        raise UserError("choose a model to test", param="model")
    if "prompt" not in values:
        raise UserError("write a prompt to send", param="prompt")
    max_tokens = number(values, "max_tokens", low=1, high=4096) or TEST_MAX_TOKENS
    try:
        run = PlaygroundRequest.model_validate(
            {
                "inputs": [{"messages": [{"role": "user", "content": values["prompt"]}]}],
                "targets": [{"model": values["model"], "params": {"max_tokens": int(max_tokens)}}],
            }
        )
    except ValidationError as exc:
        raise invalid(exc, "the test") from None
    result = await playground(platform).run(me, run)
    return render(
        request,
        "console/models/_test_result.html",
        {"cell": result.cells[0], "model": values["model"], "prompt": values["prompt"]},
    )
