"""`import fmops` stays cheap: the SDK's names load on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import fmops
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("opentelemetry", "httpx", "pydantic", "openai"))
print(heavy or "light")
print(fmops.Client.__module__, fmops.observe.__module__, fmops.span.__module__, fmops.configure.__module__)
print("sdk loaded" if "fmops.sdk" in sys.modules else "sdk missing")
"""


def test_import_fmops_loads_no_sdk_until_asked() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    light, modules, loaded = out.splitlines()
    assert light == "light"
    assert modules == "fmops.sdk.client fmops.sdk.decorator fmops.sdk.spans fmops.sdk.tracing"
    assert loaded == "sdk loaded"


def test_unknown_attributes_still_raise() -> None:
    import fmops

    with pytest.raises(AttributeError, match="no attribute 'Clinet'"):
        fmops.Clinet  # type: ignore[attr-defined]  # noqa: B018
    assert {"Client", "observe", "span", "configure"} <= set(dir(fmops))
