"""`fmops prompts try`: run inputs through prompt versions x models side by side (the playground).

It asks a running server (`POST /api/playground`), so the calls go through the gateway the way
production calls do: the server's models, limits, cost accounting and traces.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import orjson
import typer
from rich.table import Table
from rich.text import Text

from fmops.cli.common import console, resolve_api_key, server_url
from fmops.errors import UserError

MAX_SHOWN = 2_000  # characters of an output shown in a cell; --json has them whole


def _pairs(values: list[str], option: str, *, json_values: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        if json_values:  # temperature=0 is the number 0; a word that is not JSON stays text
            try:
                found[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                found[key] = value
        else:
            found[key] = value
    return found


def _inputs(variables: dict[str, Any], path: Path | None, messages: list[str]) -> list[dict[str, Any]]:
    """One input per line of the JSONL file (each line's variables over --var), or one from --var."""
    rows: list[dict[str, Any]] = [{}]
    if path is not None:
        try:
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            rows = [orjson.loads(line) for line in lines]
        except (OSError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--vars-file") from None
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise typer.BadParameter(
                f"{path}: each line must be a JSON object of variables", param_hint="--vars-file"
            )
    chat = [{"role": "user", "content": m} for m in messages]
    return [{"variables": {**variables, **row}, "messages": chat} for row in rows]


def _targets(
    name: str, versions: list[int], labels: list[str], models: list[str], params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every version (or label) with every model: the grid's columns."""
    refs: list[dict[str, Any]] = [{"version": v} for v in versions] + [{"label": label} for label in labels]
    chosen: list[str | None] = [*models] or [None]  # None: each version's own model
    combos = itertools.product(refs or [{}], chosen)
    return [{"prompt": name, **ref, **({"model": m} if m else {}), "params": params} for ref, m in combos]


def _heading(target: dict[str, Any]) -> str:
    return f"v{target['version']} · {target['model']}"


def _cell(cell: dict[str, Any]) -> Text:
    if cell.get("error"):
        return Text(f"error: {cell['error']}", style="red")
    output = cell.get("output") or ""
    if len(output) > MAX_SHOWN:
        output = output[:MAX_SHOWN] + "…"
    cost = cell.get("cost")
    tokens = f"{cell.get('input_tokens') or 0}→{cell.get('output_tokens') or 0} tok"
    facts = f"{cell.get('latency_ms') or 0:.0f} ms · {tokens}"
    if cost:
        facts += f" · {cost:.6g}"
    text = Text(output)
    text.append(f"\n{facts}", style="dim")
    return text


def _show(result: dict[str, Any], inputs: list[dict[str, Any]]) -> None:
    targets = result["targets"]
    table = Table(title="Playground", title_justify="left", show_lines=True)
    table.add_column("input")
    for target in targets:
        table.add_column(Text(_heading(target)))
    by_input: dict[int, dict[int, dict[str, Any]]] = {}
    for cell in result["cells"]:
        by_input.setdefault(cell["input"], {})[cell["target"]] = cell
    for i, given in enumerate(inputs):
        variables = given["variables"].items()
        described = "\n".join(f"{k}={v}" for k, v in variables) if variables else f"#{i + 1}"
        row = by_input.get(i, {})
        table.add_row(
            Text(described), *(_cell(row[j]) if j in row else Text("-") for j in range(len(targets)))
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `try` to the `fmops prompts` group."""

    @app.command("try")
    def try_prompt(
        name: str = typer.Argument(..., help="Prompt name"),
        version: list[int] = typer.Option(
            [], "--version", "-v", min=1, help="A version to run (repeat for more)"
        ),
        label: list[str] = typer.Option([], "--label", "-l", help="A label to run (repeat for more)"),
        model: list[str] = typer.Option(
            [], "--model", help="A model to run each version on (default: the version's)"
        ),
        var: list[str] = typer.Option([], "--var", help="A variable: KEY=VALUE (repeat for more)"),
        vars_file: Path | None = typer.Option(
            None,
            "--vars-file",
            help="JSONL: one input per line, an object of variables",
            exists=True,
            dir_okay=False,
        ),
        message: list[str] = typer.Option(
            [], "--message", "-m", help="A user message appended to each input"
        ),
        param: list[str] = typer.Option(
            [], "--param", help="A chat parameter: KEY=VALUE, e.g. temperature=0"
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON"),
        url: str | None = typer.Option(None, "--url", help="Server URL; default from FMOPS_HOST/FMOPS_PORT"),
        api_key: str | None = typer.Option(
            None, "--api-key", envvar="FMOPS_API_KEY", help="An engineer's key"
        ),
    ) -> None:
        """Run a prompt's versions x models on some inputs, side by side, through a running server
        (exit status 1 when a cell failed; the others are shown all the same)."""
        base = server_url(url)
        inputs = _inputs(_pairs(var, "--var", json_values=False), vars_file, message)
        body = {
            "inputs": inputs,
            "targets": _targets(name, version, label, model, _pairs(param, "--param", json_values=True)),
        }
        headers = {"Authorization": f"Bearer {resolve_api_key(api_key)}"}
        try:
            # Cells run a few at a time on the server, each possibly on a slow local model.
            resp = httpx.post(
                base + "/api/playground", json=body, headers=headers, timeout=httpx.Timeout(10.0, read=3600.0)
            )
        except httpx.ConnectError:
            raise UserError(f"cannot reach the server at {base}; is `fmops up` running?") from None
        if resp.status_code >= 400:
            try:
                detail = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                detail = resp.text[:500]
            raise UserError(f"the server answered {resp.status_code}: {detail}")
        result = resp.json()
        if as_json:
            print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
            return
        _show(result, inputs)
        failed = sum(1 for c in result["cells"] if c.get("error"))
        if failed:
            raise typer.Exit(1)
