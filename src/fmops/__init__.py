"""fmops: open-source FMOps platform.

The public surface is re-exported here; internals live in service packages (see DESIGN.md).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fmops")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
