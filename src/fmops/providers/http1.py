"""A lean HTTP/1.1 client for upstream calls that POST a body and read the whole answer.

aiohttp's ClientSession does more than such a call needs (a timeout object, request and response
objects, a payload writer and a stream reader per request): in the gateway's profile that cost about
85 µs of CPU per request. This client is one asyncio Protocol per connection around httptools'
parser (uvicorn's), and keeps the guarantees of the aiohttp path it replaces:

- a keep-alive pool per client (one client per provider), at most `limit` connections (aiohttp's
  connector limit; more callers wait for one), idle ones closed after 15 s (aiohttp's keep-alive);
- a call on a pooled connection that the upstream closed while it was idle goes again once, on a
  new connection: when the connection was seen closed before the call was sent; or when it ended
  with nothing of the answer read after an idle time no keep-alive timeout is shorter than (1 s): the
  race of a keep-alive close with the call. (A connection in steady use that ends before answering
  may have been dropped by an upstream that received the call: not sent again here, the error goes
  to the gateway's retry policy, as with aiohttp, which sends a POST once);
- https with one ssl.create_default_context() (the system's CAs, SSL_CERT_FILE), as aiohttp;
- host names resolve through addresses.resolve, as aiohttp's sessions do (no link-local, metadata
  or reserved address, DNS rebinding included), answers cached 300 s as with aiohttp's
  ttl_dns_cache; an IP address in the URL passes the same check (aiohttp did not resolve those);
- bodies framed by Content-Length, chunked, or the end of the connection; gzip and deflate decoded
  (Accept-Encoding: gzip, deflate);
- one deadline over the whole call (waiting for a connection, connecting, sending, reading): a
  TimeoutError when it passes;
- a redirect is an answer like any other: never followed;
- failures below HTTP raise UpstreamUnreachable whose `kind` is the name of the aiohttp exception
  the same failure raises there (ClientConnectorError, ClientConnectorDNSError,
  ServerDisconnectedError, ClientOSError, ClientPayloadError, ClientResponseError…), so error
  messages and traces read the same on both paths.

Streamed answers keep aiohttp (they are read as they come, and their cost is spread over the stream).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import sys
import zlib
from collections import deque
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple, cast

import aiohappyeyeballs
import httptools
import yarl
from aiohappyeyeballs import AddrInfoType

from fmops.providers.addresses import Address, resolve
from fmops.providers.urls import address_refusal

CONNECTION_LIMIT = 1000  # aiohttp's TCPConnector limit, which the upstream pools had
KEEPALIVE_SECONDS = 15.0  # aiohttp's keepalive_timeout
# Servers close idle connections after 2 s (gunicorn) to 75 s (nginx): a connection idle for less
# than this that ends before answering was not closed for being idle.
STALE_AFTER_IDLE_SECONDS = 1.0
DNS_TTL_SECONDS = 300.0  # aiohttp's ttl_dns_cache as the upstream connector set it
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one answer (aiohttp: 8190 per line)
_FORBIDDEN_IN_HEADERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # aiohttp's


class UpstreamUnreachable(Exception):
    """The call failed below HTTP. `kind` names the aiohttp exception of the same failure."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class _Stale(Exception):
    """A reused connection ended before any byte of the answer: the call may go again, once."""


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; the first of repeated ones
    body: bytes  # decoded (gzip, deflate)


@dataclass(frozen=True, slots=True)
class _Target:
    origin: tuple[str, int, bool]  # host, port, tls
    host: str  # as it resolves (IDNA), without brackets
    port: int
    tls: bool
    head: bytes  # request line and headers, up to the Content-Length value


@cache
def _user_agent() -> str:
    """aiohttp's User-Agent, read without importing aiohttp (a plain call need not: ~0.1 s)."""
    from importlib.metadata import version

    return f"Python/{sys.version_info[0]}.{sys.version_info[1]} aiohttp/{version('aiohttp')}"


@cache
def _ssl_context() -> ssl.SSLContext:
    # Made once per process, as aiohttp does (loading the CAs costs milliseconds).
    context = ssl.create_default_context()
    context.set_alpn_protocols(("http/1.1",))
    return context


def _header(name: str, value: str) -> bytes:
    line = f"{name}: {value}"
    if _FORBIDDEN_IN_HEADERS.search(line):
        # As aiohttp: a newline in a value (an API key) would inject headers.
        raise ValueError(f"the {name} header holds a control character")
    return line.encode() + b"\r\n"


def _target(url: str, headers: dict[str, str]) -> _Target:
    try:
        parsed = yarl.URL(url)
    except ValueError:
        raise UpstreamUnreachable("InvalidUrlClientError", "the URL does not parse") from None
    if parsed.scheme not in ("http", "https"):
        raise UpstreamUnreachable("NonHttpUrlClientError", "the URL is not http(s)")
    # The host yarl folds the URL to (IDNA): the one check_upstream_url checked when it was saved.
    host = parsed.raw_host
    port = parsed.port
    if not host or port is None:
        raise UpstreamUnreachable("InvalidUrlClientError", "the URL has no host")
    if ":" not in host and host.replace(".", "").isdigit() and not _canonical_ipv4(host):
        # As aiohttp: 2130706433 or 127.1 would reach an address that no check saw spelled so.
        raise UpstreamUnreachable("InvalidUrlClientError", f"{host} is not a canonical IPv4 address")
    netloc = f"[{host}]" if ":" in host else host.rstrip(".")
    if not parsed.is_default_port():
        netloc += f":{port}"
    head = [f"POST {parsed.raw_path_qs} HTTP/1.1\r\n".encode("latin-1")]
    fixed = {
        "Host": netloc,
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": _user_agent(),  # aiohttp's, as the streamed calls of the same provider send
    }
    for name, value in {**fixed, **headers}.items():
        head.append(_header(name, value))
    head.append(b"Content-Length: ")
    tls = parsed.scheme == "https"
    return _Target((host, port, tls), host, port, tls, b"".join(head))


def _canonical_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(
        1 <= len(p) <= 3
        and p.isascii()
        and p.isdigit()
        and (p == "0" or not p.startswith("0"))
        and int(p) < 256
        for p in parts
    )


def _decoded(body: bytes, encoding: str) -> bytes:
    coding = encoding.strip().lower()
    if not body or coding not in ("gzip", "x-gzip", "deflate"):
        return body  # as aiohttp: an unknown coding is left as it came
    if coding == "deflate":  # zlib-wrapped, or raw deflate (servers send both)
        wbits = zlib.MAX_WBITS if body[0] & 0x0F == 8 else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(body) + decoder.flush()
    except zlib.error:
        raise UpstreamUnreachable("ClientPayloadError", f"cannot decode the {coding} body") from None
    if coding == "deflate" and not decoder.eof:
        raise UpstreamUnreachable("ClientPayloadError", "the deflate body is cut short")
    return out


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one call at a time, its answer parsed by httptools."""

    def __init__(self, client: Client, origin: tuple[str, int, bool]) -> None:
        self.client = client
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.used = False  # has answered a call
        self.may_be_stale = False  # the current call went out after an idle time: see post()
        self.closed = False
        self.counted = False  # counted in the client's open connections (from connected to dropped)
        self.reusable = False
        self.idle_since = 0.0
        self._begin()

    def _begin(self) -> None:
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.received = False  # any byte of the current answer
        self.head_bytes = 0
        self.head_done = False

    # --- asyncio -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self._fail(None)  # bytes nobody asked for: this connection cannot be trusted again
            return
        self.received = True
        if not self.head_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._fail(UpstreamUnreachable("ClientResponseError", "the answer's headers are too long"))
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamUnreachable("ClientResponseError", "the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnreachable("ClientResponseError", f"malformed answer: {exc}"))

    def eof_received(self) -> bool:
        return False  # close; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.head_done and exc is None and self._ends_with_connection():
                self._complete()  # a body framed by the end of the connection
            elif not self.received and self.may_be_stale:
                waiter.set_exception(_Stale())
            elif self.head_done:
                detail = "Response payload is not completed"
                waiter.set_exception(UpstreamUnreachable("ClientPayloadError", detail))
            elif exc is None:
                waiter.set_exception(UpstreamUnreachable("ServerDisconnectedError"))
            else:
                waiter.set_exception(UpstreamUnreachable("ClientOSError", str(exc)))
        self.client._drop(self)

    # --- httptools -----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:  # a second answer to one request: this connection cannot be trusted
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (103 Early Hints…): the real one follows
            self._begin()
            self.received = True
            return
        self.reusable = self.parser.should_keep_alive()
        self._complete()

    # --- calls -----------------------------------------------------------------------------------

    def _ends_with_connection(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", ""
        )

    def _complete(self) -> None:
        waiter = self.waiter
        assert waiter is not None
        self.waiter = None
        headers, self.headers = self.headers, {}
        body = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        waiter.set_result(Response(self.parser.get_status_code(), headers, body))

    def _fail(self, exc: Exception | None) -> None:
        self.reusable = False
        if exc is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.abort()

    def expire(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(TimeoutError())
        self.abort()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def send(self, data: bytes, now: float, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Response]:
        """Send one request; the future holds its answer (or the failure)."""
        transport = self.transport
        assert transport is not None
        if self.closed or transport.is_closing():
            if self.used:
                raise _Stale()  # closed before anything was sent: sending it elsewhere is safe
            raise UpstreamUnreachable("ServerDisconnectedError")
        self._begin()
        self.reusable = False
        self.may_be_stale = self.used and now - self.idle_since >= STALE_AFTER_IDLE_SECONDS
        waiter: asyncio.Future[Response] = loop.create_future()
        self.waiter = waiter
        transport.write(data)
        return waiter


class Client:
    """Keep-alive connections to upstreams, for `post` (one per provider, as its aiohttp session)."""

    def __init__(self, headers: dict[str, str], *, limit: int = CONNECTION_LIMIT) -> None:
        self._headers = dict(headers)
        self._limit = limit
        self._targets: dict[str, _Target] = {}
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._open = 0  # connections counted against the limit: connecting, busy or idle
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._dns: dict[tuple[str, int], tuple[float, list[Address]]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False

    async def post(self, url: str, body: bytes, timeout: float) -> Response:
        """POST `body` to `url` and read the whole answer, within `timeout` seconds in all."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _target(url, self._headers)
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + timeout
        data = b"%s%d\r\n\r\n%s" % (target.head, len(body), body)
        conn = self._pooled(target.origin, now)
        if conn is None:
            conn = await self._acquire(target, deadline, loop)
        try:
            return await self._call(conn, data, deadline, loop)
        except _Stale:
            pass
        # The upstream closed the idle connection before or as this call went out; nothing came back.
        conn = await self._acquire(target, deadline, loop, fresh=True)
        try:
            return await self._call(conn, data, deadline, loop)
        except _Stale:  # not raised on a new connection; kept for the type checker's sake
            raise UpstreamUnreachable("ServerDisconnectedError") from None

    async def _call(
        self, conn: _Connection, data: bytes, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> Response:
        try:
            waiter = conn.send(data, loop.time(), loop)
            timer = loop.call_at(deadline, conn.expire)
            try:
                response = await waiter
            finally:
                timer.cancel()
                conn.used = True
        except BaseException:  # an error, the deadline, or the caller cancelled: never reuse it
            conn.abort()
            self._drop(conn)
            raise
        if conn.reusable and not conn.closed and not self.closed:
            self._release(conn, loop)
        else:
            conn.abort()
            self._drop(conn)
        encoding = response.headers.get("content-encoding")
        if encoding is not None:
            return Response(response.status, response.headers, _decoded(response.body, encoding))
        return response

    # --- the pool ---------------------------------------------------------------------------------

    async def _acquire(
        self, target: _Target, deadline: float, loop: asyncio.AbstractEventLoop, *, fresh: bool = False
    ) -> _Connection:
        while True:
            if not fresh:
                conn = self._pooled(target.origin, loop.time())
                if conn is not None:
                    return conn
            if self._open < self._limit:
                self._open += 1  # a place for the connection, kept by it from when it is made
                try:
                    conn = await self._connect(target, deadline, loop)
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
                conn.counted = True
                return conn
            if self._close_idle(target.origin, fresh):
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # it was this call's turn, and it leaves: pass the turn on
                waiter.cancel()
                raise

    def _pooled(self, origin: tuple[str, int, bool], now: float) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                self._drop(conn)
            elif now - conn.idle_since > KEEPALIVE_SECONDS:
                conn.abort()
                self._drop(conn)
            else:
                return conn
        return None

    def _release(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        conn.idle_since = loop.time()
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = []
        idle.append(conn)
        if self._waiters:
            self._wake()
        if self._sweep is None:
            self._sweep = loop.call_later(KEEPALIVE_SECONDS, self._expire_idle, loop)

    def _expire_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = loop.time()
        for idle in list(self._idle.values()):
            # Oldest first: the list is in the order the connections were released.
            while idle and now - idle[0].idle_since > KEEPALIVE_SECONDS:
                conn = idle.pop(0)
                conn.abort()
                self._drop(conn)
        if any(self._idle.values()):
            self._sweep = loop.call_later(KEEPALIVE_SECONDS, self._expire_idle, loop)

    def _close_idle(self, origin: tuple[str, int, bool], fresh: bool) -> bool:
        """Make room at the limit by closing the oldest idle connection that this call cannot use."""
        for other, idle in self._idle.items():
            if idle and (fresh or other != origin):
                conn = idle.pop(0)
                conn.abort()
                self._drop(conn)
                return True
        return False

    def _drop(self, conn: _Connection) -> None:
        """Count a connection out (once), wherever it was; a caller waiting for one may connect."""
        if not conn.counted:
            return
        conn.counted = False
        self._open -= 1
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # --- connecting ------------------------------------------------------------------------------

    async def _connect(
        self, target: _Target, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> _Connection:
        async with asyncio.timeout_at(deadline):
            addresses = await self._resolve(target.host, target.port)
            tls = _ssl_context() if target.tls else None
            infos: list[AddrInfoType] = []
            for address in addresses:
                v6 = ":" in address["host"]
                sockaddr = (
                    (address["host"], address["port"], 0, 0) if v6 else (address["host"], address["port"])
                )
                family = socket.AF_INET6 if v6 else socket.AF_INET
                infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            try:
                # As aiohttp: addresses tried in turn, the next one 0.25 s before the last gives up.
                sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=0.25, loop=loop)
            except OSError as exc:
                raise UpstreamUnreachable("ClientConnectorError", str(exc)) from None
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, target.origin),
                    sock=sock,
                    ssl=tls,
                    server_hostname=target.host.rstrip(".") if tls else None,
                )
            except BaseException as exc:
                sock.close()
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise UpstreamUnreachable("ClientConnectorCertificateError", str(exc)) from None
                if isinstance(exc, ssl.SSLError):
                    raise UpstreamUnreachable("ClientConnectorSSLError", str(exc)) from None
                if isinstance(exc, OSError):
                    raise UpstreamUnreachable("ClientConnectorError", str(exc)) from None
                raise
            return conn

    async def _resolve(self, host: str, port: int) -> list[Address]:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if address_refusal(literal, allow_private=True) is not None:
                raise UpstreamUnreachable(
                    "ClientConnectorDNSError", f"{host} is an address no upstream may use"
                )
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [
                Address(
                    hostname=host, host=host, port=port, family=family, proto=0, flags=socket.AI_NUMERICHOST
                )
            ]
        now = asyncio.get_running_loop().time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found = await resolve(host, port, family=socket.AF_UNSPEC)
        except OSError as exc:  # no answer, or only addresses no upstream may use
            raise UpstreamUnreachable("ClientConnectorDNSError", str(exc)) from None
        self._dns[(host, port)] = (now + DNS_TTL_SECONDS, found)
        return found

    async def close(self) -> None:
        """Close the idle connections; busy ones close when their call ends."""
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for conn in list(idle):
                conn.abort()
                self._drop(conn)
        self._idle.clear()
