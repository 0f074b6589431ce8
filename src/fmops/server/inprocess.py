"""The API served from a background thread of this process, on 127.0.0.1 and a free port.

For a command that must call the gateway over HTTP as any client would (`fmops eval harness`
points lm-evaluation-harness's OpenAI client at it) without a server running. Built like `fmops
up`'s (the gateway's fast path included), less the server's background services (retention,
alerts, roll-ups, pruning): a command that lives for minutes must not queue the server's work.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from fmops.errors import FmopsError
from fmops.platform import Platform
from fmops.server.app import create_app
from fmops.server.fastpath import front
from fmops.settings import Settings

START_TIMEOUT_S = 30.0


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """Serve for the duration of the block; yields the base URL (`http://127.0.0.1:PORT`)."""
    platform = Platform.build(settings)
    platform.services.clear()
    app = create_app(settings, platform)
    asgi = front(app, platform, settings.max_body_bytes) if settings.gateway_fast_path else app
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(asgi, log_config=None, access_log=False, server_header=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fmops-inprocess-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise FmopsError("the in-process API server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True  # the lifespan's shutdown flushes every call's span
        thread.join(START_TIMEOUT_S)
        sock.close()


__all__ = ["serving"]
