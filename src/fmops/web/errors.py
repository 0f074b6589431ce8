"""Errors on web paths: an HTML page (or an HTMX fragment), never the API's JSON body."""

from __future__ import annotations

import orjson
from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from fmops.web.deps import sign_in_url
from fmops.web.htmx import is_htmx
from fmops.web.templating import render

WEB_PREFIXES = ("/console", "/chat", "/login", "/logout")


def is_web_path(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in WEB_PREFIXES)


def error_page(request: Request, response: Response) -> Response:
    """Turn the API's JSON error into what a browser should see on a web path."""
    if not is_web_path(request.url.path):
        return response
    try:
        message = orjson.loads(bytes(response.body))["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = "something went wrong"
    status = response.status_code
    htmx = is_htmx(request)
    fetch = request.headers.get("accept", "").startswith("application/json")
    if status == 401 and not htmx and not fetch and request.method == "GET":
        return RedirectResponse(sign_in_url(request), status_code=303)
    if fetch:
        return response
    if htmx:
        page = render(request, "fragments/error.html", {"status": status, "message": message}, status=status)
        if status == 401:
            page.headers["hx-redirect"] = "/login"
        else:
            # Errors replace the page's message area, whatever the element that asked.
            page.headers["hx-retarget"] = "#flash"
            page.headers["hx-reswap"] = "innerHTML"
        return page
    return render(request, "error.html", {"status": status, "message": message}, status=status)
