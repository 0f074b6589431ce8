"""Host names resolved for upstream connections, without the addresses no upstream may ever use.

An upstream's base URL is checked when its model is saved (catalog/urls.py); its host may resolve
elsewhere later (DNS rebinding). Every connection resolves the host here and drops link-local, cloud
metadata and reserved addresses, so it goes to an address that passed the check. Loopback and private
addresses stay allowed: the operator may have configured them (`fmops models add`), and whether the API
may is decided at save time. The lookup is aiohttp's ThreadedResolver's (getaddrinfo on the loop's
executor), kept free of aiohttp so that a plain call (providers/http1.py) does not import it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TypedDict

from fmops.providers.urls import address_refusal

_ADDRCONFIG = getattr(socket, "AI_ADDRCONFIG", 0)
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_NAME_FLAGS = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


class Address(TypedDict):
    """One address a host resolved to: aiohttp's ResolveResult, key for key."""

    hostname: str
    host: str
    port: int
    family: int
    proto: int
    flags: int


async def resolve(host: str, port: int = 0, family: int = socket.AF_INET) -> list[Address]:
    """The addresses of `host` an upstream may use; OSError when there are none."""
    found = await lookup(host, port, family)
    kept = [a for a in found if address_refusal(ipaddress.ip_address(a["host"]), allow_private=True) is None]
    if not kept:
        raise OSError(f"{host} resolves only to addresses no upstream may use (link-local or reserved)")
    return kept


async def lookup(host: str, port: int, family: int) -> list[Address]:
    """Every address of `host`, as the system resolver answers (a test stands in for DNS here)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family, flags=_ADDRCONFIG)
    found: list[Address] = []
    for af, _, proto, _, address in infos:
        if af == socket.AF_INET6:
            if len(address) < 3:  # an interpreter or host without IPv6
                continue
            if address[3]:  # a scope id (link-local): its numeric name carries it
                name, service = await loop.getnameinfo(address[:4], _NAME_FLAGS)
                where, at = name, int(service)
            else:
                where, at = str(address[0]), int(address[1])
        else:
            where, at = str(address[0]), int(address[1])
        found.append(Address(hostname=host, host=where, port=at, family=af, proto=proto, flags=_NUMERIC))
    return found
