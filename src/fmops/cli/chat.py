"""`fmops chat`: a terminal chat against the gateway, streaming."""

from __future__ import annotations

import httpx
import orjson
import typer
from rich.console import Console

from fmops.catalog import DEFAULT_CHAT_MODEL
from fmops.cli.common import resolve_api_key, server_url
from fmops.errors import UserError
from fmops.providers import sse

console = Console()


async def _stream(client: httpx.AsyncClient, body: dict[str, object]) -> str:
    parts: list[str] = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code >= 400:
            detail = orjson.loads(await resp.aread()).get("error", {}).get("message", resp.reason_phrase)
            raise UserError(f"the gateway answered {resp.status_code}: {detail}")
        async for event in sse.decode(resp.aiter_bytes()):
            if event.data == "[DONE]":
                break
            chunk = orjson.loads(event.data)
            if "error" in chunk:
                console.print(f"\n[red]stream error:[/red] {chunk['error'].get('message')}")
                break
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    parts.append(text)
                    console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()
    return "".join(parts)


def chat(
    model: str = typer.Argument(DEFAULT_CHAT_MODEL, help="Model alias or endpoint"),
    system: str | None = typer.Option(None, "--system", help="System prompt"),
    url: str | None = typer.Option(None, "--url", help="Gateway URL; default from FMOPS_HOST/FMOPS_PORT"),
    api_key: str | None = typer.Option(None, "--api-key", envvar="FMOPS_API_KEY"),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", help="Default: the model's recommended setting (`fmops models show`)"
    ),
    temperature: float | None = typer.Option(
        None, "--temperature", help="Default: the model's recommended setting (`fmops models show`)"
    ),
    message: str | None = typer.Option(None, "--message", "-m", help="Send one message and exit"),
) -> None:
    """Chat with a model in the terminal (type /exit or Ctrl-D to leave)."""
    import asyncio

    base = server_url(url)
    headers = {"Authorization": f"Bearer {resolve_api_key(api_key)}"}
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    async def run() -> None:
        timeout = httpx.Timeout(10.0, read=600.0)  # a local model may think for a while
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as client:
            while True:
                if message is not None:
                    text = message
                else:
                    try:
                        text = console.input("[bold cyan]you>[/bold cyan] ")
                    except EOFError:
                        return
                if text.strip() in ("/exit", "/quit"):
                    return
                if not text.strip():
                    continue
                history.append({"role": "user", "content": text})
                body: dict[str, object] = {
                    "model": model,
                    "messages": history,
                    "stream": True,
                }
                if max_tokens is not None:
                    body["max_tokens"] = max_tokens
                if temperature is not None:
                    body["temperature"] = temperature
                try:
                    answer = await _stream(client, body)
                except httpx.ConnectError:
                    raise UserError(f"cannot reach the gateway at {base}; is `fmops up` running?") from None
                history.append({"role": "assistant", "content": answer})
                if message is not None:
                    return

    asyncio.run(run())
