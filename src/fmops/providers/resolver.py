"""The resolver of remote providers' aiohttp sessions (streams, embeddings): a host cannot be
re-pointed at metadata services. The lookup and its checks are addresses.py's, which the plain
calls' client (http1.py) uses directly."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from fmops.providers.addresses import resolve


class UpstreamResolver(AbstractResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return await resolve(host, port, family)

    async def close(self) -> None:
        pass
