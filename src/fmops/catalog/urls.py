"""Checks on upstream base URLs, so a model entry cannot be used to reach internal services (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from fmops.errors import UserError

_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise UserError(f"base_url host {host!r} does not resolve", param="base_url") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def check_upstream_url(url: str, *, allow_private: bool) -> str:
    """Return the normalised URL, or raise a 400 saying why it is refused.

    Link-local (cloud metadata) addresses are always refused; loopback and private ones only
    when `allow_private` (the operator's CLI, or FMOPS_UPSTREAM_ALLOW_PRIVATE=true).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise UserError("base_url must be an http:// or https:// URL", param="base_url")
    if not parts.hostname:
        raise UserError("base_url has no host", param="base_url")
    if parts.username or parts.password:
        raise UserError("base_url must not carry credentials; use api_key", param="base_url")
    host = parts.hostname.lower()
    if host in _METADATA_HOSTS:
        raise UserError("base_url points at a cloud metadata service", param="base_url")
    for addr in _addresses(host):
        if addr.is_link_local or (addr.version == 6 and addr.ipv4_mapped and addr.ipv4_mapped.is_link_local):
            raise UserError("base_url points at a link-local (metadata) address", param="base_url")
        if addr.is_multicast or addr.is_unspecified:
            raise UserError("base_url points at a reserved address", param="base_url")
        # Before `is_reserved`: IPv6 loopback (::1) is in a reserved range, and is loopback first.
        if addr.is_loopback or (addr.is_private and not addr.is_reserved):
            if not allow_private:
                raise UserError(
                    "base_url points at a loopback or private address; an operator can add it with "
                    "`fmops models add`, or allow it with FMOPS_UPSTREAM_ALLOW_PRIVATE=true",
                    param="base_url",
                )
            continue
        if addr.is_reserved:
            raise UserError("base_url points at a reserved address", param="base_url")
    return url.strip().rstrip("/")
