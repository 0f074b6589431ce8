"""The built-in guardrails, one module each, registered under `fmops.guardrails` in pyproject.toml
exactly as a third party's would be."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def counted(kinds: Iterable[str]) -> str:
    """'2 email, 1 phone': what was found, by type and count; never the text itself."""
    counts = Counter(kinds)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def run_sync(call: Coroutine[Any, Any, T]) -> T:
    """Await `call` from synchronous code: the `check` of a guardrail whose real work is `acheck`
    (an event loop running in this thread or not)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    with ThreadPoolExecutor(1) as pool:  # inside a loop's thread: a loop of its own on another
        return pool.submit(asyncio.run, call).result()
