"""Posting an alert event to its webhook.

A webhook URL is checked when its rule is saved (urls.py), and again at delivery: its host may
since resolve somewhere else (DNS rebinding). The connector's resolver also drops every address the
check refuses, so the connection goes to an address that was checked, not to a second lookup's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from fmops.alerts.urls import address_allowed, check_webhook_url
from fmops.errors import UserError

log = logging.getLogger(__name__)
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = 0.5  # doubled after each failed attempt


class CheckedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, keeping only the addresses a webhook may reach."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if address_allowed(r["host"], allow_private=self._allow_private)]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses a webhook may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


async def post_json(url: str, payload: dict[str, Any], *, allow_private: bool) -> str | None:
    """POST `payload`, retrying network errors, 429 and 5xx; None when delivered, else why not."""
    try:
        await asyncio.to_thread(check_webhook_url, url, allow_private=allow_private)
    except UserError as exc:
        return exc.message
    body = orjson.dumps(payload)
    headers = {"Content-Type": "application/json", "User-Agent": "fmops-alerts"}
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(allow_private))
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    error = "not attempted"
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            try:
                # No redirects: a redirect could point anywhere, past the checks above.
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                    if response.status < 300:
                        return None
                    error = f"the webhook answered HTTP {response.status}"
                    if response.status != 429 and response.status < 500:
                        break  # the receiver refuses this payload; sending it again will not help
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = f"could not reach the webhook: {type(exc).__name__}: {exc}"[:500]
    log.warning("alert webhook not delivered", extra={"error": error})
    return f"{error} (after {attempt + 1} attempt{'s' if attempt else ''})"
