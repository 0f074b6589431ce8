"""The resolver of remote providers' HTTP sessions: a host cannot be re-pointed at metadata services.

An upstream's base URL is checked when its model is saved (catalog/urls.py); its host may resolve
elsewhere later (DNS rebinding). This resolver drops, at every connection, the addresses no
upstream may ever use (link-local, cloud metadata, reserved), so the connection goes to an
address that passed the check. Loopback and private addresses stay allowed here: the operator may
have configured them (`fmops models add`), and whether the API may is decided at save time.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from fmops.providers.urls import address_refusal


class UpstreamResolver(AbstractResolver):
    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [
            r for r in found if address_refusal(ipaddress.ip_address(r["host"]), allow_private=True) is None
        ]
        if not kept:
            raise OSError(f"{host} resolves only to addresses no upstream may use (link-local or reserved)")
        return kept

    async def close(self) -> None:
        await self._inner.close()
