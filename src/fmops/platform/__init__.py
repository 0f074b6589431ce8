"""The composition root: every service one fmops process runs, built once from settings.

`fmops.cli`, `fmops.server` and `fmops.web` take the platform from here (`Platform`, and
`PlatformDep` in a route), so the interfaces depend on it and never on one another.
"""

from fmops.platform.core import Platform, Service, ShutdownHook
from fmops.platform.deps import PlatformDep, get_platform

__all__ = ["Platform", "PlatformDep", "Service", "ShutdownHook", "get_platform"]
