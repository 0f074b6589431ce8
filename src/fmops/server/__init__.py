"""HTTP interface: FastAPI app factory, routers, auth dependencies, error mapping."""

from fmops.server.app import create_app
from fmops.server.platform import Platform

__all__ = ["Platform", "create_app"]
