"""`fmops me`: your own tailoring of the chat, through a running server as your key's user: custom
instructions (sent with every chat conversation as a marked system message) and saved prompts
(called in the chat as `/name`)."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import orjson
import typer
from rich.markup import escape

from fmops.cli.common import console, print_rows, resolve_api_key, server_url
from fmops.errors import NotFound, UserError

HELP = "Your own tailoring of the chat: custom instructions and saved prompts (as your key's user)."
app = typer.Typer(help=HELP, no_args_is_help=True)
instructions_app = typer.Typer(
    help="Custom instructions: what the model should know about you, how it should answer.",
    no_args_is_help=True,
)
prompts_app = typer.Typer(
    help="Saved prompts: templates with {{ variables }}, used as /name.", no_args_is_help=True
)
app.add_typer(instructions_app, name="instructions")
app.add_typer(prompts_app, name="prompts")

URL = typer.Option(None, "--url", help="Server URL; default from FMOPS_URL, or FMOPS_HOST/FMOPS_PORT")
KEY = typer.Option(None, "--api-key", envvar="FMOPS_API_KEY", help="Your key (default: admin.key here)")
JSON = typer.Option(False, "--json", help="Print JSON")


def _call(method: str, path: str, url: str | None, api_key: str | None, body: Any = None) -> Any:
    base = server_url(url)
    headers = {"Authorization": f"Bearer {resolve_api_key(api_key)}"}
    try:
        resp = httpx.request(method, base + path, json=body, headers=headers, timeout=30)
    except httpx.ConnectError:
        raise UserError(f"cannot reach the server at {base}; is `fmops up` running?") from None
    if resp.status_code == 204:
        return None
    if resp.status_code >= 400:
        try:
            detail = str(resp.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            detail = resp.text[:500]
        raise (NotFound if resp.status_code == 404 else UserError)(detail)
    return resp.json()


def _text(value: str) -> str:
    return sys.stdin.read() if value == "-" else value


@instructions_app.command("show")
def instructions_show(url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON) -> None:
    """Your custom instructions."""
    found = _call("GET", "/api/me/instructions", url, api_key)
    if as_json:
        console.print_json(orjson.dumps(found).decode())
        return
    if found["updated_at"] is None:
        console.print("no custom instructions: set them with `fmops me instructions set --about ...`")
        return
    for key, title in (("about", "What the model should know about you"), ("style", "How it should answer")):
        console.print(f"[bold]{title}[/bold]")
        console.print(escape(found[key] or "-"), highlight=False, soft_wrap=True)


@instructions_app.command("set")
def instructions_set(
    about: str | None = typer.Option(
        None, "--about", help="What the model should know about you; - for stdin"
    ),
    style: str | None = typer.Option(None, "--style", help="How the model should answer; - for stdin"),
    url: str | None = URL,
    api_key: str | None = KEY,
) -> None:
    """Set your custom instructions (at most 1,500 characters each); a part not given is kept."""
    if about is None and style is None:
        raise UserError("give --about, --style or both")
    current = _call("GET", "/api/me/instructions", url, api_key)
    body = {
        "about": current["about"] if about is None else _text(about),
        "style": current["style"] if style is None else _text(style),
    }
    _call("PUT", "/api/me/instructions", url, api_key, body)
    console.print(
        "custom instructions saved: every chat conversation sends them (switchable per conversation)"
    )


@instructions_app.command("clear")
def instructions_clear(url: str | None = URL, api_key: str | None = KEY) -> None:
    """Clear your custom instructions."""
    _call("DELETE", "/api/me/instructions", url, api_key)
    console.print("custom instructions cleared")


@prompts_app.command("list")
def prompts_list(url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON) -> None:
    """Your saved prompts, then those others shared with the project."""
    found = _call("GET", "/api/me/prompts", url, api_key)
    rows = [
        (
            f"/{p['name']}",
            ", ".join(p["variables"]) or "-",
            ("shared" if p["shared"] else "private") if p["mine"] else f"shared by {p['author']}",
            p["promoted_to"],
            p["description"] or p["template"][:60],
        )
        for p in found
    ]
    print_rows("Saved prompts", ["name", "variables", "who", "promoted to", "about"], rows, as_json=as_json)


@prompts_app.command("add")
def prompts_add(
    name: str = typer.Argument(..., help="Called as /NAME in the chat"),
    template: str = typer.Argument(..., help="The prompt, with {{ variables }}; - for stdin"),
    description: str | None = typer.Option(None, "--description", "-d"),
    shared: bool = typer.Option(False, "--shared", help="Share it with the project (read-only for others)"),
    url: str | None = URL,
    api_key: str | None = KEY,
) -> None:
    """Save a prompt (or replace yours of that name); a template escape is refused with line and column."""
    body = {"name": name, "template": _text(template), "description": description, "shared": shared}
    saved = _call("POST", "/api/me/prompts", url, api_key, body)
    variables = ", ".join(saved["variables"]) or "none"
    console.print(f"saved /{escape(saved['name'])} (variables: {escape(variables)})", highlight=False)


@prompts_app.command("rm")
def prompts_rm(name: str = typer.Argument(...), url: str | None = URL, api_key: str | None = KEY) -> None:
    """Delete one of your saved prompts."""
    _call("DELETE", f"/api/me/prompts/{name}", url, api_key)
    console.print(f"deleted /{escape(name)}", highlight=False)


@prompts_app.command("share")
def prompts_share(
    name: str = typer.Argument(...),
    off: bool = typer.Option(False, "--off", help="Stop sharing it"),
    url: str | None = URL,
    api_key: str | None = KEY,
) -> None:
    """Share one of your saved prompts with the project (others may use it, not change it)."""
    _call("PUT", f"/api/me/prompts/{name}/shared", url, api_key, {"shared": not off})
    state = "no longer shared" if off else "shared with the project"
    console.print(f"/{escape(name)}: {state}", highlight=False)
