"""Server-side rendering: one Jinja2 environment with autoescaping on for every template.

Everything a user or a model wrote reaches a page through `{{ ... }}`, which escapes it. The only
HTML inserted unescaped is what `fmops.web.markdown` produces, which itself escapes any HTML in its
input. Pages send a Content-Security-Policy that allows scripts from this server only, so even an
escaping mistake cannot run an inline script.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from fmops import __version__
from fmops.web.htmx import is_htmx
from fmops.web.pages import current_page, pages_for

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",  # pages hold a user's data; the back button must not show it after sign-out
}


@cache
def _asset_version(name: str) -> str:
    """A content hash in each asset URL, so browsers may cache assets for a year and still see changes."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    return f"/static/{name}?v={_asset_version(name)}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,  # a typo in a template is an error in the tests, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(static_url=static_url, version=__version__)
    return env


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """Render a page or an HTMX fragment with the signed-in user, the CSRF token and the navigation."""
    signed_in = getattr(request.state, "signed_in", None)
    values: dict[str, Any] = {
        "request": request,
        "me": signed_in.principal if signed_in else None,
        "csrf_token": signed_in.csrf_token if signed_in else "",
        "nav": pages_for(signed_in.principal.role) if signed_in else [],
        "page": current_page(request.url.path),
        "htmx": is_htmx(request),
    }
    values.update(context or {})
    html = environment().get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
