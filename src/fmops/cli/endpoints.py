"""`fmops endpoints`: what consumers call as `model="<name>"`, managed locally by the operator.

A change made here is served at once by every running server on the same database: each one
checks the project's registry generation on every endpoint call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape

from fmops.cli import endpoints_experiments
from fmops.cli.common import (
    actor,
    console,
    fmt,
    local_platform,
    print_rows,
    project_id_of,
    project_option,
    spec_mapping,
)
from fmops.endpoints.schemas import AccessSpec, EndpointSpec, EndpointUpdate, M, validated
from fmops.endpoints.service import EndpointService, EndpointView
from fmops.errors import UserError
from fmops.fewshot.schemas import FewshotSpec
from fmops.prompts.service import PromptService

app = typer.Typer(
    help="Endpoints: a prompt label + model + guardrails + variants, called as `model=NAME` "
    "(create, list, show, update, set-weights, delete).",
    no_args_is_help=True,
)
JSON = typer.Option(False, "--json", help="Print JSON")


def _service() -> EndpointService:
    platform = local_platform()
    return EndpointService(platform.store, platform.catalog, PromptService(platform.store, platform.catalog))


def _document(path: Path) -> dict[str, Any]:
    return spec_mapping(path, "an endpoint file holds one mapping (name, prompt, model, ...)")


def _parsed(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return validated(model, data)
    except UserError as exc:
        raise UserError(f"{source}: {exc.message}", param=exc.param) from None


def _describe(view: EndpointView, as_json: bool) -> None:
    data = view.public()
    if as_json:
        console.print_json(orjson.dumps(data, default=str).decode())
        return
    config = view.config
    lines: list[tuple[str, Any]] = [
        ("name", view.name),
        ("description", view.description),
        ("enabled", view.enabled),
        ("prompt", _served(config.prompt, config.version, config.label)),
        ("model", config.model or "the prompt version's"),
        ("params", orjson.dumps(config.params).decode() if config.params else None),
        ("sticky", config.sticky),
        ("cache", f"{config.cache.ttl} s" if config.cache else "off"),
        ("fallbacks", ", ".join(config.fallbacks) or None),
        ("access", access_text(config.access)),
        ("fewshot", fewshot_text(config.fewshot)),
        ("experiment", view.experiment_started_at and f"since {fmt(view.experiment_started_at)}"),
    ]
    for label, value in lines:
        console.print(f"[bold]{label:>11}[/bold] {escape(fmt(value))}", highlight=False, soft_wrap=True)
    if config.guardrails:
        rows = [
            (g.label, g.on, g.scorer, g.expect, orjson.dumps(g.config).decode()) for g in config.guardrails
        ]
        print_rows(
            "Guardrails",
            ["name", "on", "scorer", "blocks when", "config"],
            _expectations(rows),
            as_json=False,
        )
    if config.variants:
        total = sum(v.weight for v in config.variants) or 1.0
        variant_rows = [
            (
                v.name,
                f"{v.weight:g} ({v.weight / total:.0%})",
                _served(config.prompt, v.version, v.label) if (v.version or v.label) else "as the endpoint",
                v.model or "as the endpoint",
                orjson.dumps(v.params).decode() if v.params else None,
            )
            for v in config.variants
        ]
        print_rows("Variants", ["name", "weight", "prompt", "model", "params"], variant_rows, as_json=False)


def access_text(access: AccessSpec | None) -> str:
    """Who may call an endpoint, in words."""
    if access is None:
        return "everyone"
    who = [f"role {r.value}" for r in access.roles] + [f"user {u}" for u in access.users]
    return ", ".join(who) + " (and engineers, admins)"


def _access(values: list[str]) -> dict[str, list[str]] | None:
    """`--access role:consumer --access user:alice` as the endpoint's `access:`; `everyone`: None."""
    if values == ["everyone"]:
        return None
    found: dict[str, list[str]] = {"roles": [], "users": []}
    for value in values:
        kind, sep, name = value.partition(":")
        if not sep or not name or kind not in ("role", "user"):
            raise typer.BadParameter(
                f"{value!r} is not role:ROLE, user:NAME or everyone (alone), e.g. role:consumer",
                param_hint="--access",
            )
        found[kind + "s"].append(name)
    return found


def _fewshot(
    current: FewshotSpec | None, dataset: str | None, k: int | None, min_similarity: float | None
) -> dict[str, Any] | None:
    """The endpoint's new `fewshot:` from the options (`--fewshot off`: none); others keep theirs."""
    if dataset == "off":
        if k is not None or min_similarity is not None:
            raise UserError("--fewshot off takes no --fewshot-k or --fewshot-min-similarity")
        return None
    if dataset is None and current is None:
        raise UserError("the endpoint has no few-shot examples yet: give --fewshot DATASET@VERSION too")
    found: dict[str, Any] = current.model_dump() if current is not None else {}
    for key, value in (("dataset", dataset), ("k", k), ("min_similarity", min_similarity)):
        if value is not None:
            found[key] = value
    return found


def fewshot_text(spec: FewshotSpec | None) -> str | None:
    """An endpoint's few-shot option, in words."""
    if spec is None:
        return None
    floor = f", similarity at least {spec.min_similarity:g}" if spec.min_similarity > -1 else ""
    return f"{spec.k} most similar examples of {spec.dataset}{floor}"


def _expectations(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(*r[:3], "it passes" if r[3] == "fail" else "it fails", r[4]) for r in rows]


def _served(prompt: str | None, version: int | None, label: str | None) -> str | None:
    if prompt is None:
        return None
    return f"{prompt} version {version}" if version is not None else f"{prompt} label {label}"


@app.command("create")
def create(
    file: Path = typer.Argument(..., help="The endpoint spec, YAML or JSON; - for stdin"),
    project: str = project_option(),
) -> None:
    """Create an endpoint from a spec file; it serves at once."""
    spec = _parsed(EndpointSpec, _document(file), str(file))
    view = _service().create(project_id_of(project), spec, actor=actor())
    console.print(f"created endpoint {escape(view.name)}", highlight=False)


@app.command("list")
def list_endpoints(project: str = project_option(), as_json: bool = JSON) -> None:
    """A project's endpoints."""
    views = _service().list(project_id_of(project))
    if as_json:
        console.print_json(orjson.dumps([v.public() for v in views], default=str).decode())
        return
    rows = [
        (
            v.name,
            v.enabled,
            _served(v.config.prompt, v.config.version, v.config.label),
            v.config.model or "the prompt's",
            ", ".join(f"{x.name}={x.weight:g}" for x in v.config.variants) or None,
            len(v.config.guardrails),
            v.updated_at,
        )
        for v in views
    ]
    columns = ["name", "enabled", "prompt", "model", "variants", "guardrails", "updated"]
    print_rows("Endpoints", columns, rows, as_json=False)


@app.command("show")
def show(name: str = typer.Argument(...), project: str = project_option(), as_json: bool = JSON) -> None:
    """One endpoint: what it serves, its guardrails and variants."""
    _describe(_service().get(project_id_of(project), name), as_json)


@app.command("update")
def update(
    name: str = typer.Argument(...),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="Fields to change, YAML or JSON (fields left out keep their value)"
    ),
    enabled: bool | None = typer.Option(None, "--enable/--disable", help="Serve it, or stop serving it"),
    description: str | None = typer.Option(None, "--description"),
    access: list[str] | None = typer.Option(
        None,
        "--access",
        help="Who may call it: role:ROLE or user:NAME (repeat; replaces the list), or everyone",
    ),
    fewshot: str | None = typer.Option(
        None,
        "--fewshot",
        help="Insert the most similar examples of DATASET@VERSION into each call; off: stop",
    ),
    fewshot_k: int | None = typer.Option(None, "--fewshot-k", min=1, max=20, help="Examples per call (3)"),
    fewshot_min: float | None = typer.Option(
        None, "--fewshot-min-similarity", min=-1, max=1, help="Leave out examples less similar than this (0)"
    ),
    project: str = project_option(),
) -> None:
    """Change an endpoint; changing its variants starts a new experiment."""
    fields: dict[str, Any] = _document(file) if file is not None else {}
    source = str(file) if file is not None else "options"
    if fields.get("name", name) != name:
        raise UserError(f"{source}: an endpoint cannot be renamed (it is {name!r}); create a new one")
    fields.pop("name", None)
    if enabled is not None:
        fields["enabled"] = enabled
    if description is not None:
        fields["description"] = description
    if access:
        fields["access"] = _access(access)
    if fewshot is not None or fewshot_k is not None or fewshot_min is not None:
        current = _service().get(project_id_of(project), name).config.fewshot
        fields["fewshot"] = _fewshot(current, fewshot, fewshot_k, fewshot_min)
        if fewshot not in (None, "off"):
            from fmops.cli.data_index import index  # a large version's index: here, with a progress bar

            index(fewshot, project)
    if not fields:
        raise UserError(
            "nothing to change: give --file, --enable/--disable, --description, --access or --fewshot"
        )
    changes = _parsed(EndpointUpdate, fields, source)
    _describe(_service().update(project_id_of(project), name, changes, actor=actor()), as_json=False)


@app.command("set-weights")
def set_weights(
    name: str = typer.Argument(...),
    weights: list[str] = typer.Argument(..., help="VARIANT=WEIGHT pairs, e.g. a=1 b=3"),
    project: str = project_option(),
) -> None:
    """Shift traffic between variants (a new experiment starts)."""
    parsed: dict[str, float] = {}
    for pair in weights:
        variant, sep, value = pair.partition("=")
        try:
            parsed[variant] = float(value)
        except ValueError:
            sep = ""
        if not sep or not variant:
            raise typer.BadParameter(f"{pair!r} is not VARIANT=WEIGHT (e.g. b=3)", param_hint="WEIGHTS")
    view = _service().set_weights(project_id_of(project), name, parsed, actor=actor())
    shares = ", ".join(f"{v.name}={v.weight:g}" for v in view.config.variants)
    console.print(f"endpoint {escape(view.name)}: weights {escape(shares)}", highlight=False)


@app.command("delete")
def delete(name: str = typer.Argument(...), project: str = project_option()) -> None:
    """Delete an endpoint; its traces stay."""
    view = _service().delete(project_id_of(project), name, actor=actor())
    console.print(f"deleted endpoint {escape(view.name)}", highlight=False)


endpoints_experiments.register(app)
