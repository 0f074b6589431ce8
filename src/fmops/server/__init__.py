"""HTTP interface: FastAPI app factory, routers, auth dependencies, error mapping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmops.server.app import create_app
    from fmops.server.platform import Platform

__all__ = ["Platform", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the web routers import `fmops.server.deps`, and an eager import of the
    # app here would import those routers again while they are half initialised.
    if name == "create_app":
        from fmops.server.app import create_app

        return create_app
    if name == "Platform":
        from fmops.server.platform import Platform

        return Platform
    raise AttributeError(name)
