"""Where an alert may POST: checked like model upstreams (src/fmops/catalog/urls.py), against SSRF."""

from __future__ import annotations

import ipaddress

from fmops.catalog.urls import check_upstream_url
from fmops.errors import UserError

_HINT = (
    "; a local operator can set it with `fmops alerts create`,"
    " or allow it with FMOPS_UPSTREAM_ALLOW_PRIVATE=true"
)


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL to store, or a 400 naming webhook_url and why it is refused."""
    try:
        return check_upstream_url(url, allow_private=allow_private)
    except UserError as exc:
        # The check is the catalog's, written for base_url: say which field this is, and what to do.
        reason = exc.message.replace("base_url", "webhook_url", 1)
        if "loopback or private" in reason:
            reason = reason.split(";")[0] + _HINT
        raise UserError(reason, param="webhook_url") from None


def address_allowed(host: str, *, allow_private: bool) -> bool:
    """Whether a webhook may connect to this IP address."""
    literal = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    try:
        check_upstream_url(f"http://{literal}/", allow_private=allow_private)
    except UserError:
        return False
    return True
