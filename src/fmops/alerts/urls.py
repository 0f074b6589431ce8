"""Where an alert may POST: checked like model upstreams (src/fmops/catalog/urls.py), against SSRF."""

from __future__ import annotations

import ipaddress

from fmops.errors import UserError
from fmops.providers.urls import check_upstream_url


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL to store, or a 400 naming webhook_url and why it is refused."""
    return check_upstream_url(
        url,
        allow_private=allow_private,
        param="webhook_url",
        operator_hint="a local operator can set it with `fmops alerts create`",
    )


def address_allowed(host: str, *, allow_private: bool) -> bool:
    """Whether a webhook may connect to this IP address."""
    literal = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    try:
        check_upstream_url(f"http://{literal}/", allow_private=allow_private)
    except UserError:
        return False
    return True
