"""Checks on upstream base URLs, so a model entry cannot be used to reach internal services (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import yarl

from fmops.errors import UserError

_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
# Cloud metadata services outside the link-local range: Alibaba, AWS over IPv6, Oracle (classic).
_METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254", "192.0.0.192")}
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in practice
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_OPERATOR_HINT = "an operator can add it with `fmops models add`"


def _embedded_ipv4(addr: Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address reaches through (mapped, 6to4, Teredo, NAT64)."""
    if addr.version == 4:
        return []
    assert isinstance(addr, ipaddress.IPv6Address)
    found = [a for a in (addr.ipv4_mapped, addr.sixtofour) if a is not None]
    found += list(addr.teredo or ())
    if any(addr in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def address_refusal(addr: Address, *, allow_private: bool) -> str | None:
    """Why an upstream may not be at this address (None: it may).

    Metadata and link-local addresses are refused always; loopback and private ones unless
    `allow_private`; multicast, unspecified and reserved ones always. An IPv6 address that wraps
    an IPv4 one is judged by the IPv4 address it reaches.
    """
    inner = _embedded_ipv4(addr)
    if inner:
        reasons = [address_refusal(a, allow_private=allow_private) for a in inner]
        return next((r for r in reasons if r), None)
    if addr in _METADATA_ADDRESSES or addr.is_link_local:
        return "a link-local (metadata) address"
    if addr.is_multicast or addr.is_unspecified:
        return "a reserved address"
    # Before `is_reserved`: IPv6 loopback (::1) is in a reserved range, and is loopback first.
    if addr.is_loopback or (addr.is_private and not addr.is_reserved) or addr in _SHARED:
        return None if allow_private else "a loopback or private address"
    if addr.is_reserved or not addr.is_global:
        return "a reserved address"
    return None


def _addresses(host: str, param: str) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UserError(f"{param} host {host!r} does not resolve", param=param) from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def check_upstream_url(
    url: str, *, allow_private: bool, param: str = "base_url", operator_hint: str = _OPERATOR_HINT
) -> str:
    """Return the normalised URL, or raise a 400 naming `param` and saying why it is refused.

    Link-local (cloud metadata) addresses are always refused; loopback and private ones only
    when `allow_private` (the operator's CLI, or FMOPS_UPSTREAM_ALLOW_PRIVATE=true). Used for
    model upstreams and alert webhooks alike.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise UserError(f"{param} must be an http:// or https:// URL", param=param)
    if not parts.hostname:
        raise UserError(f"{param} has no host", param=param)
    if parts.username or parts.password:
        raise UserError(f"{param} must not carry credentials; use api_key", param=param)
    try:
        # The host the HTTP client (aiohttp, through yarl) will connect to, after IDNA folding
        # (e.g. "①②⑦.0.0.1" is 127.0.0.1): it is checked too, so the two parsers cannot disagree.
        client_host = yarl.URL(url.strip()).host
    except ValueError:
        raise UserError(f"{param} is not a valid URL", param=param) from None
    hosts = {parts.hostname.lower(), (client_host or "").lower()} - {""}
    if any(h.rstrip(".") in _METADATA_HOSTS for h in hosts):
        raise UserError(f"{param} points at a cloud metadata service", param=param)
    for addr in [a for h in sorted(hosts) for a in _addresses(h, param)]:
        reason = address_refusal(addr, allow_private=allow_private)
        if reason == "a loopback or private address":
            raise UserError(
                f"{param} points at a loopback or private address; {operator_hint}, "
                "or allow it with FMOPS_UPSTREAM_ALLOW_PRIVATE=true",
                param=param,
            )
        if reason is not None:
            raise UserError(f"{param} points at {reason}", param=param)
    return url.strip().rstrip("/")
