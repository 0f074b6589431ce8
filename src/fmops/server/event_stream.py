"""A `text/event-stream` answer for the gateway's streams, without a task group per stream.

Starlette's StreamingResponse (under an ASGI server of spec < 2.4, as uvicorn is) runs each stream
in an anyio task group beside a disconnect listener: a cancel scope, two task handles and their
bookkeeping for every call, a few percent of a short stream's CPU. Here one plain task waits for
the disconnect and cancels the task that sends; the gateway's event generator sees that as it
saw the task group's cancel (CancelledError while it waits on the upstream, GeneratorExit when it
is closed between events) and records "client disconnected during the stream".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        current = asyncio.current_task()
        assert current is not None
        gone = sent = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            if not sent:
                gone = True
                current.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for event in self.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            sent = True
        except asyncio.CancelledError:
            if not gone:
                raise
            current.uncancel()  # the client left: nobody to answer, nothing more to do
        except OSError:
            pass  # the connection broke under a send: the client is gone as well
        finally:
            sent = True
            watcher.cancel()
            # Between two events the generator waits at a `yield`: closing it runs its clean-up
            # (the span, the spend) now, not whenever it is collected.
            if isinstance(self.events, AsyncGenerator):
                await self.events.aclose()
