"""What the web routes need to know about HTMX: whether a request came from it, and how to navigate."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response


def is_htmx(request: Request) -> bool:
    """An HTMX request: answer with the fragment it swaps in, not the whole page."""
    return request.headers.get("hx-request") == "true"


def go(request: Request, url: str) -> Response:
    """After a change made by a form: HTMX navigates on HX-Redirect, a plain form follows a 303."""
    if is_htmx(request):
        return Response(status_code=200, headers={"hx-redirect": url})
    return RedirectResponse(url, status_code=303)
