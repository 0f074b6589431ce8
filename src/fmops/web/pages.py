"""The console's pages: each router module registers its page here and the frame's navigation follows.

Adding a page to the console is three steps: a router module under `fmops.web.routers` that calls
`console_page(...)` and renders a template extending `console/frame.html`, the template, and one line
in `fmops.web.routers.WEB_ROUTERS`. Navigation, role filtering and the active link come from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fmops.auth import Role

# Sections in the order the navigation shows them; a page names one of them.
SECTIONS = ("Build", "Observe", "Data", "Evaluate", "Admin")


@dataclass(frozen=True, slots=True)
class ConsolePage:
    path: str  # e.g. "/console/models"; sub-paths under it light the same navigation link
    title: str
    section: str
    role: Role  # the least role that sees (and may open) the page
    order: int  # position within its section


_PAGES: dict[str, ConsolePage] = {}


def console_page(
    path: str, title: str, section: str, *, role: Role = Role.engineer, order: int = 100
) -> ConsolePage:
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, not {section!r}")
    page = ConsolePage(path=path, title=title, section=section, role=role, order=order)
    _PAGES[path] = page
    return page


def pages_for(role: Role) -> list[tuple[str, list[ConsolePage]]]:
    """The navigation a role sees: sections in order, each with its pages in order (empty ones left out)."""
    visible = [p for p in _PAGES.values() if role.covers(p.role)]
    nav = []
    for section in SECTIONS:
        pages = sorted((p for p in visible if p.section == section), key=lambda p: (p.order, p.title))
        if pages:
            nav.append((section, pages))
    return nav


def current_page(path: str) -> ConsolePage | None:
    """The registered page a request path belongs to (the longest matching prefix)."""
    best = None
    for page in _PAGES.values():
        if (path == page.path or path.startswith(page.path + "/")) and (
            best is None or len(page.path) > len(best.path)
        ):
            best = page
    return best
