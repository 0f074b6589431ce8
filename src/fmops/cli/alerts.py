"""`fmops alerts`: threshold rules on the stats series, and what they fired."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from fmops.alerts import AlertMetric, AlertRuleCreate, AlertService
from fmops.auth.service import DEFAULT_PROJECT
from fmops.cli.common import console, local_platform, print_rows
from fmops.errors import NotFound, UserError
from fmops.store.models import AlertRule

app = typer.Typer(
    help="Alerts: rules that post to a webhook when a metric crosses a threshold.", no_args_is_help=True
)

# Words for the comparison, so that `>` needs no quoting in a shell.
OPERATORS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


def _service() -> AlertService:
    platform = local_platform()
    return AlertService(platform.store, platform.settings)


def _project_id(name: str | None) -> str | None:
    if name is None:
        return None
    platform = local_platform()
    with platform.store.session() as session:
        return platform.auth.project_by_name(session, name).id


def _rule(ref: str, project: str | None) -> AlertRule:
    """A rule by id, or by name within the project (default: the default project)."""
    service = _service()
    try:
        return service.get(_project_id(project), ref)
    except NotFound:
        project_id = _project_id(project or DEFAULT_PROJECT)
        assert project_id is not None
        return service.find_by_name(project_id, ref)


def _condition(rule: AlertRule) -> str:
    score = rule.filters.get("score")
    metric = f"{rule.metric}({score})" if score else rule.metric
    return f"{metric} {rule.operator} {rule.threshold:g}"


def _describe_invalid(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


@app.command("list")
def list_rules(
    project: str | None = typer.Option(None, "--project", help="Only this project (default: every project)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every rule, with its state and the value of its last evaluation."""
    names = {p.id: p.name for p, _ in local_platform().auth.list_projects()}
    rows = [
        (
            r.id,
            r.name,
            names.get(r.project_id, r.project_id),
            _condition(r),
            r.window_seconds,
            r.state if r.enabled else "disabled",
            r.last_value,
            r.webhook_url,
        )
        for r in _service().rules(_project_id(project))
    ]
    columns = ["id", "name", "project", "condition", "window s", "state", "last value", "webhook"]
    print_rows("Alert rules", columns, rows, as_json=as_json)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Rule name, unique in its project"),
    metric: AlertMetric = typer.Option(..., "--metric", help="What to watch"),
    operator: str = typer.Option(..., "--op", help="gt, ge, lt or le (or >, >=, <, <= quoted)"),
    threshold: float = typer.Option(
        ..., "--threshold", help="Fractions (error_rate, shares) between 0 and 1"
    ),
    window: int = typer.Option(300, "--window", help="Seconds the metric is computed over"),
    min_count: int = typer.Option(1, "--min-count", help="Fewer samples in the window give no verdict"),
    webhook: str | None = typer.Option(None, "--webhook", help="URL that receives a JSON POST"),
    model: str | None = typer.Option(None, "--model"),
    endpoint: str | None = typer.Option(None, "--endpoint"),
    score: str | None = typer.Option(None, "--score", help="The score name, for --metric score_mean"),
    project: str = typer.Option(DEFAULT_PROJECT, "--project"),
    disabled: bool = typer.Option(False, "--disabled", help="Create it switched off"),
) -> None:
    """Create a rule; the server checks it every FMOPS_ALERT_INTERVAL_SECONDS."""
    if operator not in OPERATORS:
        raise typer.BadParameter(f"{operator!r}: use gt, ge, lt or le", param_hint="--op")
    filters = {
        k: v for k, v in {"model": model, "endpoint": endpoint, "score": score}.items() if v is not None
    }
    try:
        body = AlertRuleCreate(
            name=name,
            metric=metric,
            operator=OPERATORS[operator],
            threshold=threshold,
            window_seconds=window,
            min_count=min_count,
            webhook_url=webhook,
            filters=filters,
            enabled=not disabled,
        )
    except ValidationError as exc:
        raise UserError(_describe_invalid(exc)) from None
    project_id = _project_id(project)
    assert project_id is not None
    rule = _service().create(project_id, body, key_id=None)
    console.print(
        f"created alert rule {rule.name} ({rule.id}): {_condition(rule)} over {rule.window_seconds} s",
        soft_wrap=True,
    )


@app.command("delete")
def delete(
    rule: str = typer.Argument(..., help="Rule id, or name (in --project)"),
    project: str | None = typer.Option(None, "--project", help="Project of a rule given by name"),
) -> None:
    """Delete a rule and its events."""
    found = _rule(rule, project)
    _service().delete(None, found.id)
    console.print(f"deleted alert rule {found.name} ({found.id})", soft_wrap=True)


@app.command("events")
def events(
    rule: str | None = typer.Option(None, "--rule", help="Only this rule (id, or name in --project)"),
    project: str | None = typer.Option(None, "--project", help="Only this project (default: every project)"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fired and resolved events, newest first, with how their webhook delivery went."""
    service = _service()
    rules = {r.id: r.name for r in service.rules(None)}
    rule_id = _rule(rule, project).id if rule is not None else None
    found = service.events(_project_id(project), rule_id=rule_id, limit=limit)
    rows: list[tuple[Any, ...]] = [
        (
            e.created_at,
            rules.get(e.rule_id, e.rule_id),
            e.state,
            e.value,
            e.threshold,
            "yes" if e.delivered else (e.delivery_error or "no webhook"),
        )
        for e in found
    ]
    print_rows(
        "Alert events", ["at", "rule", "state", "value", "threshold", "delivered"], rows, as_json=as_json
    )
