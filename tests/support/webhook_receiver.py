"""A webhook receiver on 127.0.0.1 that records every JSON POST, for the alerts tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from support.threaded_app import serve_in_thread


@dataclass
class Receiver:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The payloads once at least `count` have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} webhook posts after {timeout}s, expected {count}")
            time.sleep(0.02)
        return list(self.received)


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        receiver.received.append(await request.json())
        status = receiver.statuses.pop(0) if receiver.statuses else 200
        return web.json_response({"ok": status < 300}, status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    with serve_in_thread(app) as port:
        receiver.url = f"http://127.0.0.1:{port}/hook"
        yield receiver
