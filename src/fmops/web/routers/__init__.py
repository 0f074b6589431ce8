"""Web routers: one module per page (or per group of fragments a page uses)."""

from fastapi import APIRouter

from fmops.web.routers import console_home, login

# Order matters only where paths overlap; the chat's `/` comes last.
WEB_ROUTERS: list[APIRouter] = [
    login.router,
    console_home.router,
]
