"""What the admin pages share: reading their form fields, and answering a change.

HTML forms send every field as text, an empty one meaning "no limit"; these turn that text into
the values the services take, with a message that names the field (a 400 on the page, never a 500).
A change answered to HTMX re-renders the page's panel and puts its message into the frame's
`#flash` out of band; without JavaScript the whole page is rendered again.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, time
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from fmops.auth import Role
from fmops.auth.limits import BUDGET_PERIODS, LimitChanges
from fmops.errors import UserError
from fmops.web.htmx import is_htmx
from fmops.web.templating import render

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")  # the REST API's rule (UserCreate.email)
_MAX_LIMIT = 1_000_000_000


def optional_int(value: str, field: str, *, low: int = 1, high: int = _MAX_LIMIT) -> int | None:
    text = value.strip()
    if not text:
        return None
    try:
        number = int(text)
    except ValueError:
        raise UserError(f"{field} must be a whole number, or empty for none", param=field) from None
    if not low <= number <= high:
        raise UserError(f"{field} must be between {low} and {high}, or empty for none", param=field)
    return number


def optional_budget(value: str) -> float | None:
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and 0 <= number <= 1e15):
        raise UserError("budget must be a number >= 0, or empty for no budget", param="budget")
    return number


def limit_changes(rpm: str, tpm: str, budget: str, period: str) -> LimitChanges:
    """Every limit as the form shows it: an empty field removes that limit."""
    if period not in BUDGET_PERIODS:
        raise UserError(f"budget period must be one of {', '.join(BUDGET_PERIODS)}", param="budget_period")
    return LimitChanges(
        rpm=optional_int(rpm, "rpm"),
        tpm=optional_int(tpm, "tpm"),
        budget=optional_budget(budget),
        budget_period=period,
    ).check()


def role_of(value: str, *, optional: bool = False) -> Role | None:
    if optional and not value:
        return None
    try:
        return Role(value)
    except ValueError:
        raise UserError(f"role must be one of {', '.join(Role)}", param="role") from None


def email_of(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    if len(text) > 320 or not _EMAIL_RE.fullmatch(text):
        raise UserError("email must look like name@example.com (no spaces)", param="email")
    return text


def expiry_of(value: str) -> datetime | None:
    """A date from `<input type=date>`: the key works until the end of that day (UTC)."""
    text = value.strip()
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise UserError("expires must be a date (YYYY-MM-DD), or empty for never", param="expires") from None
    return datetime.combine(day, time.max, tzinfo=UTC)


def answer(
    request: Request, page: str, panel: str, context: dict[str, Any], message: str | None = None
) -> HTMLResponse:
    """The page after a change: its panel (and the message, out of band) for HTMX, else the page."""
    values = {**context, "message": message}
    if is_htmx(request):
        return render(request, panel, values)
    return render(request, page, values)
