"""The composition root: every service one fmops process runs, built once from settings.

`fmops.cli`, `fmops.server` and `fmops.web` take the platform from here (`Platform`, and
`PlatformDep` in a route), so the interfaces depend on it and never on one another.
`PlatformDep` and `get_platform` load FastAPI, so they load on first use: a CLI command that
builds a platform does not pay for the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmops.platform.core import Platform, Service, ShutdownHook

if TYPE_CHECKING:
    from fmops.platform.deps import PlatformDep, get_platform

__all__ = ["Platform", "PlatformDep", "Service", "ShutdownHook", "get_platform"]


def __getattr__(name: str) -> Any:
    if name in ("PlatformDep", "get_platform"):
        from fmops.platform import deps

        return getattr(deps, name)
    raise AttributeError(f"module 'fmops.platform' has no attribute {name!r}")
