"""A real HTTP/1.1 feed server on 127.0.0.1, for tests and benchmarks.

One asyncio event loop in a background thread serves every connection (keep-alive, many
concurrent clients), so it stays fast under a 1,000-feed benchmark and stops promptly: a stop
wakes every stalled handler and cancels the rest.

    server = FeedServer().start()          # or the `feed_server` fixture
    server.set_feed("/a.xml", b"<rss/>")   # 200 with ETag + Last-Modified; 304 on a match
    server.set_status("/gone", 410)
    server.set_redirect("/old", "/a.xml", status=301)
    server.set_stall("/slow")              # never answers (until stop)
    server.hits("/a.xml"), server.requests("/a.xml")[-1]["user-agent"]
    server.max_in_flight(host="a.test")    # highest number of concurrent requests seen
    server.stop()

Routes are keyed by path without the query string. Unknown paths answer 404. Setting a route
replaces whatever the path served before; hits and request logs are kept (`reset_stats`).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import http
import random
import socket
import struct
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Self

import brotli
import pytest

RSS = "application/rss+xml; charset=utf-8"
_CHUNK = 64 * 1024
_MB = 1 << 20
_ZERO_MB = bytes(_MB)
_STALL_SECONDS = 60.0  # far past any client timeout; a stop() ends it at once


@dataclass(frozen=True)
class Route:
    """What one path serves. kind: feed | status | redirect | stall | drop | oversize | bomb."""

    kind: str
    body: bytes = b""
    status: int = 200
    content_type: str = RSS
    headers: tuple[tuple[str, str], ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    encoding: str | None = None  # gzip | deflate | deflate-raw | br, when the client accepts it
    encoded: bytes = b""
    delay: float = 0.0  # seconds to wait before answering (to overlap requests)
    held: bool = False  # wait for release() (or the delay, when set) before answering
    size: int = 0  # oversize / bomb: bytes of (decoded) body
    location: str = ""
    chunked: bool = False
    after_headers: bool = False  # stall: send headers and half the body first
    reset: bool = False  # drop: abort (RST) instead of a clean close


@dataclass
class _Stats:
    hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    in_flight: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    max_in_flight: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    connections: int = 0


class FeedServer:
    """An HTTP/1.1 server on 127.0.0.1:<free port> whose routes tests set at any time."""

    def __init__(self) -> None:
        self.port = 0
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._stats = _Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._released: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._clock: dict[str, int] = {}  # path -> last Last-Modified second served

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Start serving in a background thread; returns self once the port is bound."""
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="feedserver", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("feed server did not start")
        return self

    def stop(self) -> None:
        """Stop serving: stalled handlers wake, connections close, the thread ends."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()
        self._server = loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=2048, limit=_CHUNK)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        assert self._stopping is not None and self._server is not None
        self._stopping.set()
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- routes ----------------------------------------------------------------------------
    def url(self, path: str, *, host: str = "127.0.0.1") -> str:
        """The absolute URL of path; `host` names another host (for a fake resolver)."""
        return f"http://{host}:{self.port}{path}"

    def set_feed(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = RSS,
        headers: dict[str, str] | None = None,
        validators: bool = True,
        etag: bool = True,
        last_modified: bool = True,
        encoding: str | None = None,
        delay: float = 0.0,
        held: bool = False,
    ) -> None:
        """Serve body with a strong ETag (its hash) and a Last-Modified that moves with it.

        validators=False serves neither validator; etag/last_modified turn off one.
        encoding (gzip, deflate, deflate-raw, br) compresses the body for clients that accept it.
        held=True answers only after release() (or `delay` seconds, when given).
        """
        old = self._routes.get(path)
        tag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        if old is not None and old.kind == "feed" and old.body == body and path in self._clock:
            second = self._clock[path]
        else:  # strictly increasing, so a change within one second still moves it
            second = max(int(time.time()), self._clock.get(path, 0) + 1)
            self._clock[path] = second
        self._routes[path] = Route(
            "feed",
            body=body,
            content_type=content_type,
            headers=tuple((headers or {}).items()),
            etag=tag if validators and etag else None,
            last_modified=email.utils.formatdate(second, usegmt=True)
            if validators and last_modified
            else None,
            encoding=encoding,
            encoded=_encode(body, encoding) if encoding else b"",
            delay=delay,
            held=held,
        )

    def set_status(
        self,
        path: str,
        status: int,
        *,
        body: bytes = b"",
        retry_after: str | int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer every request with this status (404, 410, 429, 500, 503, ...)."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        text = body or f"{status} {_reason(status)}\n".encode()
        self._routes[path] = Route(
            "status",
            body=text,
            status=status,
            content_type="text/plain",
            headers=tuple(extra.items()),
        )

    def set_redirect(self, path: str, to: str, *, status: int = 301) -> None:
        """Redirect to another path of this server (or an absolute URL)."""
        self._routes[path] = Route("redirect", status=status, location=to)

    def set_stall(
        self, path: str, *, after_headers: bool = False, body: bytes = b"<rss><channel>"
    ) -> None:
        """Accept the request and then say nothing (or nothing more after the headers)."""
        self._routes[path] = Route("stall", body=body, after_headers=after_headers)

    def set_drop(
        self, path: str, body: bytes = b"<rss>" + b"x" * 20_000, *, reset: bool = False
    ) -> None:
        """Announce the whole body, send half of it, then close (or reset) the connection."""
        self._routes[path] = Route("drop", body=body, reset=reset)

    def set_oversize(self, path: str, size: int, *, chunked: bool = True) -> None:
        """Stream `size` bytes of filler (chunked, or with a Content-Length)."""
        self._routes[path] = Route("oversize", size=size, chunked=chunked)

    def set_gzip_bomb(self, path: str, size: int = 512 * _MB) -> None:
        """Serve `size` bytes of zeros gzip-compressed ~1000:1, generated while sending."""
        self._routes[path] = Route("bomb", size=max(_MB, size - size % _MB))

    def set_garbage(self, path: str, size: int = 4096, *, seed: int = 0) -> None:
        """Serve random bytes labelled as a feed."""
        self.set_feed(path, random.Random(seed).randbytes(size))

    def set_html(self, path: str) -> None:
        """Serve an ordinary HTML page where a feed was expected."""
        page = (
            b"<!doctype html><html><head><title>Home</title>"
            b'<link rel="alternate" type="application/rss+xml" href="/rss"></head>'
            b"<body><h1>Welcome</h1><p>Not a feed.</p></body></html>"
        )
        self.set_feed(path, page, content_type="text/html; charset=utf-8")

    def remove(self, path: str) -> None:
        """Forget a route: the path answers 404 again."""
        self._routes.pop(path, None)

    def release(self) -> None:
        """Answer every held request now, and later ones at once."""
        loop, released = self._loop, self._released
        if loop is not None and released is not None:
            loop.call_soon_threadsafe(released.set)

    # -- what the server saw ---------------------------------------------------------------
    def hits(self, path: str) -> int:
        """How many requests reached path."""
        with self._lock:
            return self._stats.hits.get(path, 0)

    def total_hits(self) -> int:
        with self._lock:
            return sum(self._stats.hits.values())

    def requests(self, path: str) -> list[dict[str, str]]:
        """The headers (lower-case names) of every request to path, oldest first."""
        with self._lock:
            return list(self._stats.requests.get(path, []))

    def max_in_flight(self, path: str | None = None, *, host: str | None = None) -> int:
        """Most requests in flight at once: for a path, a host (Host header, no port), or all."""
        if path is not None:
            key = ("path", path)
        elif host is not None:
            key = ("host", host)
        else:
            key = ("all", "")
        with self._lock:
            return self._stats.max_in_flight.get(key, 0)

    def connections(self) -> int:
        """How many TCP connections were accepted (keep-alive reuses one)."""
        with self._lock:
            return self._stats.connections

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = _Stats()

    # -- serving ---------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._stats.connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
            writer.close()  # flushes what is buffered, then FIN
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if int(headers.get("content-length", "0") or 0):
            await reader.readexactly(int(headers["content-length"]))
        path = target.split("?", 1)[0]
        if not path.startswith("/"):  # absolute-form target
            path = "/" + path.split("://", 1)[-1].partition("/")[2]
        host = headers.get("host", "").rsplit(":", 1)[0]
        keys = (("path", path), ("host", host), ("all", ""))
        with self._lock:
            self._stats.hits[path] += 1
            self._stats.requests[path].append(headers)
            for key in keys:
                self._stats.in_flight[key] += 1
                self._stats.max_in_flight[key] = max(
                    self._stats.max_in_flight[key], self._stats.in_flight[key]
                )
        try:
            route = self._routes.get(path) or Route("status", status=404, body=b"404 Not Found\n")
            keep = await self._respond(route, method, headers, writer)
        finally:
            with self._lock:
                for key in keys:
                    self._stats.in_flight[key] -= 1
        wants_close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        return keep and not wants_close

    async def _respond(
        self, route: Route, method: str, req: dict[str, str], writer: asyncio.StreamWriter
    ) -> bool:
        if route.held:
            await self._sleep(route.delay or _STALL_SECONDS, until=self._released)
        elif route.delay:
            await self._sleep(route.delay)
        send_body = method != "HEAD"
        if route.kind == "feed":
            return await self._feed(route, req, writer, send_body)
        if route.kind == "status":
            writer.write(_head(route.status, route.headers, route.content_type, len(route.body)))
            writer.write(route.body if send_body else b"")
        elif route.kind == "redirect":
            location = (
                self.url(route.location) if route.location.startswith("/") else route.location
            )
            writer.write(_head(route.status, (("Location", location),), "text/plain", 0))
        elif route.kind == "stall":
            if route.after_headers:
                writer.write(
                    _head(200, (), RSS, len(route.body)) + route.body[: len(route.body) // 2]
                )
                await writer.drain()
            await self._sleep(_STALL_SECONDS)
            return False
        elif route.kind == "drop":
            writer.write(_head(200, (), RSS, len(route.body)) + route.body[: len(route.body) // 2])
            await writer.drain()
            if route.reset:  # SO_LINGER 0: the close sends RST, not FIN
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
            return False
        elif route.kind == "oversize":
            length = None if route.chunked else route.size
            writer.write(_head(200, (), RSS, length))
            await _stream(writer, _filler(route.size), chunked=route.chunked)
            return True
        elif route.kind == "bomb":
            length = 10 + (route.size // _MB) * len(_bomb_piece()) + 2 + 8
            writer.write(_head(200, (("Content-Encoding", "gzip"),), RSS, length))
            await _stream(writer, _gzip_bomb(route.size), chunked=False)
            # reached only by a client that read it all; the CRC of 512 MB takes a while
            writer.write(await asyncio.to_thread(_gzip_trailer, route.size))
            await writer.drain()
            return True
        await writer.drain()
        return True

    async def _feed(
        self, route: Route, req: dict[str, str], writer: asyncio.StreamWriter, send_body: bool
    ) -> bool:
        body, etag, extra = route.body, route.etag, list(route.headers)
        if route.encoding and _accepts(req.get("accept-encoding", ""), route.encoding):
            body = route.encoded
            extra += [
                ("Content-Encoding", route.encoding.split("-")[0]),
                ("Vary", "Accept-Encoding"),
            ]
            etag = etag and etag[:-1] + "-" + route.encoding + '"'
        if etag:
            extra.append(("ETag", etag))
        if route.last_modified:
            extra.append(("Last-Modified", route.last_modified))
        if _not_modified(req, etag, route.last_modified):
            writer.write(_head(304, tuple(extra), None, None))
        else:
            writer.write(_head(200, tuple(extra), route.content_type, len(body)))
            if send_body:
                writer.write(body)
        await writer.drain()
        return True

    async def _sleep(self, seconds: float, until: asyncio.Event | None = None) -> None:
        """Sleep, waking early when the server stops (or `until` is set)."""
        assert self._stopping is not None
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if until is not None:
            waits.append(asyncio.ensure_future(until.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _head(
    status: int, headers: tuple[tuple[str, str], ...], content_type: str | None, length: int | None
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_reason(status)}",
        "Server: veille-feedserver",
        "Date: " + email.utils.formatdate(usegmt=True),
    ]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if status != 304:
        lines.append(
            f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
        )
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _not_modified(req: dict[str, str], etag: str | None, last_modified: str | None) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison) wins over If-Modified-Since."""
    inm = req.get("if-none-match")
    if inm is not None:
        if etag is None:
            return False
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = req.get("if-modified-since")
    if ims and last_modified:
        try:
            return email.utils.parsedate_to_datetime(
                last_modified
            ) <= email.utils.parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False


def _accepts(accept_encoding: str, encoding: str) -> bool:
    wanted = encoding.split("-")[0]
    for token in accept_encoding.split(","):
        name, _, params = token.strip().partition(";")
        if name.strip().lower() == wanted and params.replace(" ", "") != "q=0":
            return True
    return False


def _encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    elif encoding == "deflate":  # RFC 9110: zlib-wrapped
        c = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS)
    elif encoding == "deflate-raw":  # what some servers send as "deflate"
        c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    elif encoding == "br":
        return brotli.compress(body, quality=5)
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    return c.compress(body) + c.flush()


async def _stream(writer: asyncio.StreamWriter, parts: Iterator[bytes], *, chunked: bool) -> None:
    """Write parts as they are generated, waiting for the client to take each one."""
    for part in parts:
        writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


def _filler(size: int) -> Iterator[bytes]:
    line = b"<item><title>filler</title></item>\n" * (_CHUNK // 36)
    sent = 0
    while sent < size:
        part = line[: size - sent]
        sent += len(part)
        yield part


_PIECE: list[bytes] = []


def _bomb_piece() -> bytes:
    """1 MB of zeros as a raw-deflate run ending on a full flush (~1 KB, reusable back to back)."""
    if not _PIECE:
        c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        c.compress(_ZERO_MB)
        c.flush(zlib.Z_FULL_FLUSH)
        _PIECE.append(c.compress(_ZERO_MB) + c.flush(zlib.Z_FULL_FLUSH))
    return _PIECE[0]


def _gzip_bomb(size: int) -> Iterator[bytes]:
    """The body of a gzip stream of `size` zero bytes, produced piece by piece (never whole)."""
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    piece = _bomb_piece()
    batch = piece * 16
    for _ in range(size // _MB // 16):
        yield batch
    for _ in range(size // _MB % 16):
        yield piece


def _gzip_trailer(size: int) -> bytes:
    """The end of the bomb: an empty final block, then CRC-32 and length of the zeros."""
    crc = 0
    for _ in range(size // _MB):
        crc = zlib.crc32(_ZERO_MB, crc)
    return b"\x03\x00" + struct.pack("<II", crc, size & 0xFFFFFFFF)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A started FeedServer on 127.0.0.1, stopped after the test."""
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()
