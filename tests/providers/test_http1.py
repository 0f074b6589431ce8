"""The lean HTTP/1.1 client of plain upstream calls (providers/http1.py), against real local servers.

Each server here is a few lines of asyncio speaking raw HTTP/1.1, so a test can do what real upstreams
do at the edges: close an idle keep-alive connection, answer in chunks, gzip, never answer, redirect.
Every test runs on the stdlib loop and on uvloop (the one `fmops up` runs on).
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import uvloop
from aiohttp.abc import ResolveResult

from fmops.providers import http1
from fmops.providers.base import ProviderConfig, ProviderError, ProviderTimeout
from fmops.providers.http1 import Client, UpstreamUnreachable
from fmops.providers.openai import OpenAIProvider, post_json

T = TypeVar("T")
ANSWER = {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "hi"}}]}


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def go(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, 20))

    return go


# --- a raw HTTP/1.1 server ------------------------------------------------------------------------


@dataclass
class Seen:
    connections: int = 0
    requests: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (connection, head, body)
    open_now: int = 0
    most_open: int = 0


@dataclass
class Peer:
    """The server's end of one connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def write(self, data: bytes) -> None:
        self.writer.write(data)


Handler = Callable[[int, int, bytes, bytes, Peer], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def reply(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    if "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def never(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
    """Answer nothing, until the client goes away."""
    while await w.reader.read(1024):
        pass
    return False


async def answer_json(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
    w.write(reply(200, orjson.dumps(ANSWER), {"Content-Type": "application/json"}))
    return True  # keep the connection


@asynccontextmanager
async def serve(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, Seen]]:
    """Serve on 127.0.0.1; `handler(connection, nth request on it, head, body, writer)` answers one
    request and says whether to keep the connection. Yields the base URL and what the server saw."""
    seen = Seen()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        seen.open_now += 1
        seen.most_open = max(seen.most_open, seen.open_now)
        conn, n = seen.connections, 0
        try:
            while (request := await _read_request(reader)) is not None:
                n += 1
                seen.requests.append((conn, *request))
                keep = await handler(conn, n, request[0], request[1], Peer(reader, writer))
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            seen.open_now -= 1
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}/v1/chat/completions", seen
    finally:
        server.close()


def client(**headers: str) -> Client:
    return Client({"Content-Type": "application/json", **headers})


# --- keep-alive, the pool ---------------------------------------------------------------------------


def test_keeps_connections_alive_and_sends_the_request_as_aiohttp_did(run: Any) -> None:
    async def go() -> None:
        async with serve(answer_json) as (url, seen):
            lean = client(Authorization="Bearer sk-1")
            for i in range(5):
                answer = await lean.post(url, b'{"n": %d}' % i, 5)
                assert answer.status == 200
                assert orjson.loads(answer.body) == ANSWER
                assert answer.headers["content-type"] == "application/json"
            await lean.close()
        assert seen.connections == 1
        assert [body for _, _, body in seen.requests] == [b'{"n": %d}' % i for i in range(5)]
        head = seen.requests[0][1].decode()
        assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
        port = url.split(":")[2].split("/")[0]
        for line in (
            f"Host: 127.0.0.1:{port}",
            "Accept: */*",
            "Accept-Encoding: gzip, deflate",
            "Content-Type: application/json",
            "Authorization: Bearer sk-1",
            "Content-Length: 8",
        ):
            assert f"\r\n{line}\r\n" in head

    run(go())


def test_concurrent_calls_share_a_pool_within_its_limit(run: Any) -> None:
    async def slow(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
        await asyncio.sleep(0.05)
        return await answer_json(conn, n, head, body, w)

    async def go() -> None:
        async with serve(slow) as (url, seen):
            lean = Client({}, limit=3)
            answers = await asyncio.gather(*(lean.post(url, b"{}", 5) for _ in range(12)))
            assert {a.status for a in answers} == {200}
            assert seen.most_open == 3  # the limit held: 12 calls over 3 connections
            assert seen.connections == 3
            assert lean._open == 3
            await lean.close()
            assert lean._open == 0

    run(go())


def test_a_connection_the_upstream_closed_while_idle_is_not_used_again(run: Any) -> None:
    async def close_after(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
        await answer_json(conn, n, head, body, w)
        return False  # keep-alive promised (no Connection: close), then closed: an idle timeout

    async def go() -> None:
        async with serve(close_after) as (url, seen):
            lean = client()
            for _ in range(3):
                assert (await lean.post(url, b"{}", 5)).status == 200
                await asyncio.sleep(0.05)  # the close arrives while the connection is idle
            await lean.close()
        assert seen.connections == 3
        assert len(seen.requests) == 3  # none was sent into a closed connection

    run(go())


def _closes_its_second_request_unanswered() -> Handler:
    async def handler(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
        if conn == 1 and n == 2:
            return False  # the keep-alive close racing the call: closed with nothing answered
        return await answer_json(conn, n, head, body, w)

    return handler


def test_a_call_racing_a_keepalive_close_goes_again_on_a_new_connection(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "STALE_AFTER_IDLE_SECONDS", 0.05)

    async def go() -> None:
        async with serve(_closes_its_second_request_unanswered()) as (url, seen):
            lean = client()
            assert (await lean.post(url, b'{"n": 1}', 5)).status == 200
            await asyncio.sleep(0.1)  # idle long enough for a keep-alive close
            assert (await lean.post(url, b'{"n": 2}', 5)).status == 200
            await lean.close()
        assert [(conn, body) for conn, _, body in seen.requests] == [
            (1, b'{"n": 1}'),
            (1, b'{"n": 2}'),
            (2, b'{"n": 2}'),
        ]

    run(go())


def test_a_busy_connection_that_ends_unanswered_is_an_error_not_a_second_call(run: Any) -> None:
    # Used a moment ago, the connection was not closed for being idle: the upstream may have taken
    # the call before it dropped the connection, so it is not sent again (the gateway's retries decide).
    async def go() -> None:
        async with serve(_closes_its_second_request_unanswered()) as (url, seen):
            lean = client()
            assert (await lean.post(url, b"{}", 5)).status == 200
            with pytest.raises(UpstreamUnreachable) as failed:
                await lean.post(url, b"{}", 5)
            assert failed.value.kind == "ServerDisconnectedError"
            assert (await lean.post(url, b"{}", 5)).status == 200  # the pool recovers
            await lean.close()
        assert len(seen.requests) == 3

    run(go())


def test_idle_connections_expire(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "KEEPALIVE_SECONDS", 0.1)

    async def go() -> None:
        async with serve(answer_json) as (url, seen):
            lean = client()
            await lean.post(url, b"{}", 5)
            assert seen.open_now == 1
            await asyncio.sleep(0.4)
            assert seen.open_now == 0  # closed by the client's sweep, not the server
            assert lean._open == 0
            await lean.post(url, b"{}", 5)
            assert seen.connections == 2
            await lean.close()

    run(go())


# --- bodies ---------------------------------------------------------------------------------------


def test_chunked_and_compressed_bodies(run: Any) -> None:
    payload = orjson.dumps({**ANSWER, "pad": "x" * 5000})

    async def handler(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
        if n == 1:  # chunked, several chunks, a trailer
            data = b"".join(
                b"%x\r\n%s\r\n" % (len(p), p) for p in (payload[:7], payload[7:4000], payload[4000:])
            )
            w.write(reply(200, b"", {"Transfer-Encoding": "chunked"}) + data + b"0\r\nX-T: 1\r\n\r\n")
        elif n == 2:  # gzip, chunked
            z = gzip.compress(payload)
            data = b"%x\r\n%s\r\n0\r\n\r\n" % (len(z), z)
            w.write(reply(200, b"", {"Transfer-Encoding": "chunked", "Content-Encoding": "gzip"}) + data)
        elif n == 3:  # deflate as zlib wraps it
            w.write(reply(200, zlib.compress(payload), {"Content-Encoding": "deflate"}))
        elif n == 4:  # raw deflate, as some servers send it
            raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            w.write(reply(200, raw.compress(payload) + raw.flush(), {"Content-Encoding": "deflate"}))
        elif n == 5:  # an interim 103, then the answer
            w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + reply(200, payload))
        else:  # a body that is not what its Content-Encoding says
            w.write(reply(200, b"not gzip at all", {"Content-Encoding": "gzip"}))
        return True

    async def go() -> None:
        async with serve(handler) as (url, seen):
            lean = client()
            for _ in range(5):
                answer = await lean.post(url, b"{}", 5)
                assert answer.body == payload
            with pytest.raises(UpstreamUnreachable) as failed:
                await lean.post(url, b"{}", 5)
            assert failed.value.kind == "ClientPayloadError"
            await lean.close()
        assert seen.connections == 1  # every framing kept the connection usable

    run(go())


def test_a_body_that_ends_with_the_connection(run: Any) -> None:
    async def handler(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + orjson.dumps(ANSWER))
        return False

    async def go() -> None:
        async with serve(handler) as (url, seen):
            lean = client()
            for _ in range(2):
                assert orjson.loads((await lean.post(url, b"{}", 5)).body) == ANSWER
            assert lean._open == 0
            await lean.close()
        assert seen.connections == 2

    run(go())


def test_answers_cut_short_or_malformed(run: Any) -> None:
    async def handler(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
        if conn == 1:  # half the promised body, then the end
            w.write(reply(200, b"{}")[:-1].replace(b"Content-Length: 2", b"Content-Length: 90"))
        elif conn == 2:
            w.write(b"this is not HTTP\r\n\r\n")
        elif conn == 3:  # headers without end
            w.write(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (http1.MAX_HEAD_BYTES + 10))
            await asyncio.sleep(1)
        return False

    async def go() -> None:
        async with serve(handler) as (url, _):
            lean = client()
            kinds = []
            for _ in range(3):
                with pytest.raises(UpstreamUnreachable) as failed:
                    await lean.post(url, b"{}", 5)
                kinds.append(failed.value.kind)
            assert kinds == ["ClientPayloadError", "ClientResponseError", "ClientResponseError"]
            assert lean._open == 0
            await lean.close()

    run(go())


# --- time, errors, redirects ------------------------------------------------------------------------


def test_one_deadline_over_the_call_and_cancellation_frees_the_connection(run: Any) -> None:
    async def go() -> None:
        async with serve(never) as (url, seen):
            lean = client()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError):
                await lean.post(url, b"{}", 0.2)
            assert 0.15 < loop.time() - started < 1.5
            assert lean._open == 0
            call = asyncio.ensure_future(lean.post(url, b"{}", 10))
            await asyncio.sleep(0.1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert lean._open == 0
            await asyncio.sleep(0.05)
            assert seen.open_now == 0  # both connections closed, not left hanging
            await lean.close()

    run(go())


def test_errors_redirects_and_retry_after_as_the_aiohttp_path(run: Any) -> None:
    async def handler(conn: int, n: int, head: bytes, body: bytes, w: Peer) -> bool:
        err = {"error": {"message": f"bad {n}"}}
        answers = {
            1: reply(429, orjson.dumps(err), {"Retry-After": "3"}),
            2: reply(503, b"<html>down</html>"),
            3: reply(400, orjson.dumps(err)),
            4: reply(307, b"", {"Location": "http://169.254.169.254/latest/meta-data"}),
            5: reply(200, b"<html>not json"),
        }
        w.write(answers[n])
        return True

    async def go() -> None:
        async with serve(handler) as (url, seen):
            lean = client()
            failures = []
            for _ in range(5):
                with pytest.raises(ProviderError) as failed:
                    await post_json(lean, url, b"{}", 5)
                e = failed.value
                failures.append((e.status, e.retryable, e.retry_after, e.message))
            await lean.close()
        assert failures[0] == (429, True, 3.0, "upstream returned 429: bad 1")
        assert failures[1] == (502, True, None, "upstream returned 503: <html>down</html>")
        assert failures[2] == (400, False, None, "upstream returned 400: bad 3")
        assert failures[3][:2] == (502, True)
        assert "redirect (HTTP 307)" in failures[3][3]
        assert failures[4] == (502, True, None, "upstream returned a body that is not JSON")
        assert seen.connections == 1  # error answers keep the connection, and nothing followed the 307

    run(go())


def test_unreachable_upstreams(run: Any) -> None:
    async def go() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: refused
            lean = client()
            with pytest.raises(ProviderError) as failed:
                await post_json(lean, f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", 5)
            assert failed.value.message == "cannot reach the upstream: ClientConnectorError"
            assert failed.value.retryable
            assert lean._open == 0
        for url, kind in (
            ("http://169.254.169.254/v1", "ClientConnectorDNSError"),  # metadata, even spelled as an IP
            ("http://[fe80::1]/v1", "ClientConnectorDNSError"),
            ("http://127.1:9/v1", "InvalidUrlClientError"),  # not canonical: refused, as aiohttp does
            ("http://2130706433:9/v1", "InvalidUrlClientError"),
            ("ftp://127.0.0.1/v1", "NonHttpUrlClientError"),
        ):
            with pytest.raises(UpstreamUnreachable) as refused:
                await lean.post(url, b"{}", 5)
            assert refused.value.kind == kind, url
        await lean.close()

    run(go())


def test_every_dns_answer_goes_through_the_upstream_resolver(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    async def resolve(host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        asked.append(host)
        addresses = ["169.254.169.254", "fd00:ec2::254"] if host == "rebound.test" else ["127.0.0.1"]
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ipaddress.ip_address(a).version == 6 else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in addresses
        ]

    monkeypatch.setattr("fmops.providers.addresses.lookup", resolve)

    async def go() -> None:
        async with serve(answer_json) as (url, seen):
            port = url.split(":")[2].split("/")[0]
            lean = client()
            with pytest.raises(UpstreamUnreachable) as refused:
                await lean.post(f"http://rebound.test:{port}/v1/chat/completions", b"{}", 5)
            assert refused.value.kind == "ClientConnectorDNSError"
            assert seen.connections == 0
            answer = await lean.post(f"http://fine.test:{port}/v1/chat/completions", b"{}", 5)
            assert answer.status == 200
            await lean.post(f"http://fine.test:{port}/v1/chat/completions", b"{}", 5)
            await lean.close()
        assert asked == ["rebound.test", "fine.test"]  # one lookup, then the pool
        assert f"\r\nHost: fine.test:{port}\r\n".encode() in seen.requests[0][1]

    run(go())


def test_header_injection_is_refused() -> None:
    lean = client(Authorization="Bearer sk-1\r\nX-Injected: 1")
    with pytest.raises(ValueError, match="control character"):
        asyncio.run(lean.post("http://127.0.0.1:9/v1/chat/completions", b"{}", 5))


# --- TLS ------------------------------------------------------------------------------------------


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1 and localhost: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("fmops test CA"))
        .issuer_name(name("fmops test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_https_verifies_the_upstream_certificate(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = _certificates(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    async def go(trusted: bool) -> None:
        async with serve(answer_json, served) as (url, seen):
            lean = client()
            if trusted:
                answer = await lean.post(url, b"{}", 5)
                assert orjson.loads(answer.body) == ANSWER
                assert (await lean.post(url.replace("127.0.0.1", "localhost"), b"{}", 5)).status == 200
                await lean.post(url, b"{}", 5)
                assert seen.connections == 2  # one per host name, each kept alive
            else:
                with pytest.raises(UpstreamUnreachable) as refused:
                    await lean.post(url, b"{}", 5)
                assert refused.value.kind == "ClientConnectorCertificateError"
                assert seen.requests == []
            await lean.close()

    # The process's context: the system's CAs, which do not know the test CA.
    run(go(trusted=False))
    # SSL_CERT_FILE names the CA bundle, as for aiohttp (ssl.create_default_context reads it).
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    http1._ssl_context.cache_clear()
    try:
        run(go(trusted=True))
    finally:
        http1._ssl_context.cache_clear()


# --- the provider -----------------------------------------------------------------------------------


def test_the_openai_provider_sends_plain_calls_over_the_lean_client(run: Any) -> None:
    async def go() -> None:
        async with serve(answer_json) as (url, seen):
            base = url.removesuffix("/chat/completions")
            provider = OpenAIProvider(ProviderConfig(model="up-1", base_url=base, api_key="sk-9"))
            try:
                for _ in range(3):
                    answer = await provider.chat({"model": "alias", "messages": []}, timeout=5)
                    assert answer == ANSWER
            finally:
                await provider.close()
        assert seen.connections == 1
        assert {orjson.loads(body)["model"] for _, _, body in seen.requests} == {"up-1"}
        assert all(b"\r\nAuthorization: Bearer sk-9\r\n" in head for _, head, _ in seen.requests)

    async def timeout() -> None:
        async with serve(never) as (url, _):
            provider = OpenAIProvider(
                ProviderConfig(model="m", base_url=url.removesuffix("/chat/completions"))
            )
            try:
                with pytest.raises(ProviderTimeout):
                    await provider.chat({"messages": []}, timeout=0.2)
            finally:
                await provider.close()

    run(go())
    run(timeout())
