"""fmops: open-source FMOps platform.

The public surface is re-exported here; internals live in service packages (see DESIGN.md).
The SDK's names (`fmops.Client`, `fmops.observe`, `fmops.span`, `fmops.configure`, …) are loaded on
first use, so `import fmops` stays cheap for the CLI and the server.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmops.sdk import Client, configure, current_span, flush, observe, span

    __version__: str

_SDK = ("Client", "configure", "current_span", "flush", "observe", "span")

__all__ = ["Client", "__version__", "configure", "current_span", "flush", "observe", "span"]


def __getattr__(name: str) -> Any:  # PEP 562: imported when first asked for
    if name == "__version__":  # importlib.metadata is ~30 ms of a command's start: when asked
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("fmops")
        except PackageNotFoundError:  # running from a source tree without an install
            found = "0.0.0+unknown"
        globals()["__version__"] = found
        return found
    if name in _SDK:
        value = getattr(import_module("fmops.sdk"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fmops' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SDK, "__version__"})
