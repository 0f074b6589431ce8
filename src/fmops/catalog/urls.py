"""Checks on upstream base URLs, so a model entry cannot be used to reach internal services (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from fmops.errors import UserError

_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


_OPERATOR_HINT = "an operator can add it with `fmops models add`"


def _addresses(host: str, param: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
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
    host = parts.hostname.lower()
    if host in _METADATA_HOSTS:
        raise UserError(f"{param} points at a cloud metadata service", param=param)
    for addr in _addresses(host, param):
        if addr.is_link_local or (addr.version == 6 and addr.ipv4_mapped and addr.ipv4_mapped.is_link_local):
            raise UserError(f"{param} points at a link-local (metadata) address", param=param)
        if addr.is_multicast or addr.is_unspecified:
            raise UserError(f"{param} points at a reserved address", param=param)
        # Before `is_reserved`: IPv6 loopback (::1) is in a reserved range, and is loopback first.
        if addr.is_loopback or (addr.is_private and not addr.is_reserved):
            if not allow_private:
                raise UserError(
                    f"{param} points at a loopback or private address; {operator_hint}, "
                    "or allow it with FMOPS_UPSTREAM_ALLOW_PRIVATE=true",
                    param=param,
                )
            continue
        if addr.is_reserved:
            raise UserError(f"{param} points at a reserved address", param=param)
    return url.strip().rstrip("/")
