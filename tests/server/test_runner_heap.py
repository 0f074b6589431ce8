"""The server process freezes its start-up heap and collects young objects less often, once it
listens; a process that only builds apps (a test run) keeps CPython's collector as it was."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from fmops.server.runner import GC_YOUNG_THRESHOLD

# A real uvicorn server on a free port, started and stopped by fmops's Server, in its own process
# (freezing this test process would keep every later test's garbage).
_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, json, socket
    import uvicorn
    from fmops.server.runner import Server

    async def app(scope, receive, send):
        pass

    async def main():
        before = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()[0]}
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = Server(uvicorn.Config(app, log_config=None, lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        after = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()[0]}
        after["started"] = server.started
        server.should_exit = True
        await serving
        print(json.dumps({"before": before, "after": after}))

    asyncio.run(main())
    """
)


def test_a_listening_server_has_frozen_its_start_up_heap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    before, after = seen["before"], seen["after"]
    assert before == {"frozen": 0, "threshold": 700}  # CPython's own until the server listens
    assert after["started"] is True
    assert after["frozen"] > 10_000  # uvicorn, fmops and their imports, none of it collected again
    assert after["threshold"] == GC_YOUNG_THRESHOLD
