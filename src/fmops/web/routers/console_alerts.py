"""`/console/alerts`: the project's alert rules (create, enable or disable, delete) and their recent events.

Rules are kept by `AlertService`, validated by the same `AlertRuleCreate` schema as the REST API's;
a form's text fields are turned into that schema's types here, and its errors into one message.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from fmops.alerts import AlertMetric, AlertRuleCreate, AlertRuleUpdate, AlertService
from fmops.auth import Principal, Role
from fmops.errors import UserError
from fmops.platform import Platform, PlatformDep
from fmops.store.models import AlertRule
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.pages import console_page
from fmops.web.templating import render

PAGE = console_page("/console/alerts", "Alerts", "Observe", role=Role.engineer, order=30)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
RuleId = Path(min_length=1, max_length=32, pattern="^[0-9a-f]+$")

EVENTS_SHOWN = 50
WINDOWS = {60: "1 min", 300: "5 min", 900: "15 min", 3600: "1 hour", 21_600: "6 hours", 86_400: "24 hours"}
METRICS = {
    AlertMetric.error_rate: "error rate (0–1)",
    AlertMetric.latency_p95_ms: "latency p95 (ms)",
    AlertMetric.latency_p50_ms: "latency p50 (ms)",
    AlertMetric.latency_p99_ms: "latency p99 (ms)",
    AlertMetric.ttft_p50_ms: "TTFT p50 (ms)",
    AlertMetric.ttft_p95_ms: "TTFT p95 (ms)",
    AlertMetric.volume: "requests",
    AlertMetric.errors: "errors",
    AlertMetric.input_tokens: "input tokens",
    AlertMetric.output_tokens: "output tokens",
    AlertMetric.cost: "cost",
    AlertMetric.cost_per_hour: "cost per hour",
    AlertMetric.feedback_rate: "feedback rate (0–1)",
    AlertMetric.feedback_positive_share: "thumbs up share (0–1)",
    AlertMetric.score_mean: "score mean (name the score)",
    AlertMetric.guardrail_block_rate: "guardrail block rate (0–1)",
}
FILTER_FIELDS = ("model", "endpoint", "variant", "score", "policy")


def _service(platform: Platform) -> AlertService:
    return AlertService(platform.store, platform.settings)


def _number(form: dict[str, str], name: str, kind: type[int] | type[float], default: str) -> int | float:
    text = form.get(name, "").strip() or default
    try:
        return kind(text)
    except ValueError:
        raise UserError(f"{name.replace('_', ' ')} must be a number, not {text[:40]!r}", param=name) from None


def rule_from_form(form: dict[str, str]) -> AlertRuleCreate:
    """The form's strings as the API's rule body; a schema error becomes one readable 400."""
    filters = {
        name: form[f"filter_{name}"].strip()
        for name in FILTER_FIELDS
        if form.get(f"filter_{name}", "").strip()
    }
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "metric": form.get("metric", ""),
        "operator": form.get("operator", ""),
        "threshold": _number(form, "threshold", float, ""),
        "window_seconds": _number(form, "window_seconds", int, "300"),
        "min_count": _number(form, "min_count", int, "1"),
        "filters": filters,
        "webhook_url": form.get("webhook_url", "").strip() or None,
        "enabled": form.get("enabled") is not None,
    }
    try:
        return AlertRuleCreate.model_validate(body)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:3]:
            where = " ".join(str(part) for part in error["loc"]).replace("_", " ") or "rule"
            message = str(error["msg"])
            if error["loc"] == ("name",) and error["type"] == "string_pattern_mismatch":
                message = "use letters, digits, spaces and . _ - (starting with a letter or digit)"
            problems.append(f"{where}: {message}")
        first = str(exc.errors()[0]["loc"][0]) if exc.errors() else None
        raise UserError("; ".join(problems), param=first) from None


def condition(rule: AlertRule) -> str:
    window = WINDOWS.get(rule.window_seconds, f"{rule.window_seconds} s")
    return f"{rule.metric} {rule.operator} {rule.threshold:g} over {window}"


async def _rules_section(
    request: Request, platform: Platform, principal: Principal, message: str | None = None
) -> Response:
    rules = await run_in_threadpool(_service(platform).rules, principal.project_id)
    context = {"rules": rules, "message": message, **_form_context()}
    return render(request, "console/alerts/rules.html", context)


def _form_context() -> dict[str, Any]:
    return {
        "metrics": METRICS,
        "windows": WINDOWS,
        "operators": (">", ">=", "<", "<="),
        "condition": condition,
    }


def _done(request: Request) -> bool:
    """A plain form post (no JavaScript) goes back to the page; HTMX gets the section's new HTML."""
    return request.headers.get("hx-request") != "true"


@router.get("")
async def alerts_page(request: Request, platform: PlatformDep, principal: WebPrincipal) -> Response:
    service = _service(platform)
    rules = await run_in_threadpool(service.rules, principal.project_id)
    events = await run_in_threadpool(service.events, principal.project_id, limit=EVENTS_SHOWN)
    names = {rule.id: rule.name for rule in rules}
    interval = platform.settings.alert_interval_seconds
    context = {"rules": rules, "events": events, "names": names, "message": None, "interval": interval}
    context |= _form_context()
    return render(request, "console/alerts/index.html", context)


@router.post("")
async def create_rule(request: Request, platform: PlatformDep, principal: WebPrincipal) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    body = rule_from_form(form)
    await run_in_threadpool(_service(platform).create, principal.project_id, body, key_id=principal.key_id)
    if _done(request):
        return RedirectResponse(PAGE.path, status_code=303)
    return await _rules_section(request, platform, principal, f"Created the rule {body.name}.")


@router.post("/{rule_id}/enabled")
async def set_enabled(
    request: Request, platform: PlatformDep, principal: WebPrincipal, rule_id: str = RuleId
) -> Response:
    form = await request.form()
    enabled = form.get("enabled") == "true"
    change = AlertRuleUpdate(enabled=enabled)
    rule = await run_in_threadpool(
        _service(platform).update, principal.project_id, rule_id, change, key_id=principal.key_id
    )
    if _done(request):
        return RedirectResponse(PAGE.path, status_code=303)
    state = "enabled" if enabled else "disabled"
    return await _rules_section(request, platform, principal, f"The rule {rule.name} is {state}.")


@router.post("/{rule_id}/delete")
async def delete_rule(
    request: Request, platform: PlatformDep, principal: WebPrincipal, rule_id: str = RuleId
) -> Response:
    service = _service(platform)
    rule = await run_in_threadpool(service.get, principal.project_id, rule_id)
    await run_in_threadpool(service.delete, principal.project_id, rule_id)
    if _done(request):
        return RedirectResponse(PAGE.path, status_code=303)
    return await _rules_section(request, platform, principal, f"Deleted the rule {rule.name}.")
