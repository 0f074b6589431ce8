"""A TCP proxy in a background thread that a test can cut and restore: a database going away, for real.

`cut()` closes every open connection and refuses new ones (as a stopped server or a broken network
does); `restore()` lets connections through again. Only the proxied client sees the outage, so a
test can take "the database" away from one fmops server without touching the shared PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class TcpProxy:
    port: int
    loop: asyncio.AbstractEventLoop
    target: tuple[str, int]
    up: bool = True
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self.loop).result(5)

    def restore(self) -> None:
        self.up = True

    async def _cut(self) -> None:
        self.up = False
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self.up:
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        if not self.up:  # cut while this connection was being made: it must not outlive the cut
            client_writer.close()
            server_writer.close()
            return
        self.writers |= {client_writer, server_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        self.writers -= {client_writer, server_writer}


@contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TcpProxy]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        proxy = TcpProxy(port=0, loop=loop, target=(host, port))
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        proxy.port = server.sockets[0].getsockname()[1]
        holder.update(proxy=proxy, server=server)
        ready.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True
    )
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the TCP proxy did not start within 10 s")
    proxy = holder["proxy"]
    assert isinstance(proxy, TcpProxy)
    try:
        yield proxy
    finally:
        server = holder["server"]
        assert isinstance(server, asyncio.Server)
        loop.call_soon_threadsafe(server.close)
        asyncio.run_coroutine_threadsafe(proxy._cut(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
