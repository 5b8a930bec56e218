"""Fetching feeds: conditional GET, limits, redirects, size caps, the SSRF guard, backoff.

The I/O shell between the scheduler and `parse`. `Fetcher.fetch(url, validators)` always
returns a `FetchResult` and never raises: failures come back with `error` (one line, naming
the status or the kind of failure, never a credential) and `transient` (whether retrying
later may help). httpx, httpcore, zlib and brotli exceptions are mapped here and nowhere else.

    status 200  body, body_hash, etag, last_modified    (caller: Validators.unchanged(result))
    status 304  no body; validators carried forward
    status 0    no HTTP answer: network, timeout, SSRF refusal, size cap, bad URL, file error
    status 4xx/5xx  the server's answer; 408, 429 and 5xx are transient, other 4xx are not

The SSRF guard works twice with one (briefly cached) DNS answer: before each hop, for a clear
error whatever client is used, and in the connection itself (`_GuardedBackend`), which only
connects to addresses it has checked, so a DNS answer that changes in between cannot slip
through (rebinding).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import os
import random
import re
import socket
import ssl
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol, Self
from urllib.parse import urlsplit
from urllib.request import url2pathname

import brotli
import httpcore
import httpx

from .errors import BlockedAddressError, FetchError
from .model import FetchResult

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""async (host, port) -> IP address strings; the default asks the system via getaddrinfo."""

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
ACCEPT_ENCODING = "gzip, deflate, br"
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_TRANSIENT = frozenset({408, 425, 429})  # plus every 5xx
_PIECE = 64 * 1024  # most bytes a decoder hands over at once (bounds memory under a bomb)
_DISCARD = 64 * 1024  # an error or redirect body up to this is read, to keep the connection
_HIDDEN_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_HOST = re.compile(rb"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
_ALLOW_HINT = "set VEILLE_ALLOW_PRIVATE_URLS=1 to allow it"


@dataclass(frozen=True, slots=True)
class Validators:
    """What the last good fetch of a feed said, sent back to make the next one conditional."""

    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None

    @classmethod
    def from_result(cls, result: FetchResult) -> Validators:
        """The validators to keep after a successful (200 or 304) fetch."""
        return cls(result.etag, result.last_modified, result.body_hash)

    def headers(self) -> dict[str, str]:
        """The conditional request headers."""
        out = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out

    def unchanged(self, result: FetchResult) -> bool:
        """Whether result holds nothing new: a 304, or a 200 whose body hashes the same."""
        if result.error is not None:
            return False
        return result.status == 304 or (
            result.body_hash is not None and result.body_hash == self.body_hash
        )


# -- the SSRF guard --------------------------------------------------------------------------

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def blocked_reason(ip: str) -> str | None:
    """Why an address must not be fetched ("private", "loopback", ...), or None if public."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if addr in _METADATA:
        return "cloud metadata"
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is None and addr in _NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            inner = blocked_reason(str(embedded))
            return f"{inner} (IPv4 {embedded} inside IPv6)" if inner else None
        if addr.is_site_local:
            return "site-local"
    checks = (
        ("loopback", addr.is_loopback),
        ("unspecified", addr.is_unspecified),
        ("link-local", addr.is_link_local),
        ("multicast", addr.is_multicast),
        ("shared (CGNAT)", addr in _CGNAT),
        ("reserved", addr.is_reserved),
        ("private", addr.is_private),
        ("non-global", not addr.is_global),
    )
    return next((name for name, hit in checks if hit), None)


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressGuard:
    """Resolves hosts (answers cached for `ttl` s) and refuses non-public ones unless allowed."""

    def __init__(
        self, *, allow_private: bool = False, resolver: Resolver | None = None, ttl: float = 60.0
    ) -> None:
        self.allow_private = allow_private
        self._resolver = resolver or system_resolver
        self._ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to; raises BlockedAddressError, or OSError from DNS."""
        found = await self._resolve(host.strip("[]").lower(), port)
        if not self.allow_private:
            for ip in found:  # one bad answer refuses the host: it could be picked next time
                reason = blocked_reason(ip)
                if reason:
                    where = ip if ip == host.strip("[]") else f"{host} resolves to {ip}, which"
                    raise BlockedAddressError(
                        host, f"refused: {where} is a {reason} address ({_ALLOW_HINT})"
                    )
        return found

    async def check(self, url: httpx.URL) -> None:
        """Refuse url (BlockedAddressError) when its host is not public; a no-op if allowed."""
        if self.allow_private:
            return
        try:
            await self.addresses(url.host, url.port or (443 if url.scheme == "https" else 80))
        except OSError as exc:
            raise FetchError(str(url), f"DNS lookup of {url.host} failed: {_line(exc)}") from None

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            return [host]
        except ValueError:
            pass
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached and cached[0] > now:
            return cached[1]
        found = list(await self._resolver(host, port))
        if not found:
            raise socket.gaierror(f"no address for {host}")
        if len(self._cache) > 4096:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[(host, port)] = (now + self._ttl, found)
        return found


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the guard has checked."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options=None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                found = await self._guard.addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"DNS lookup of {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"DNS lookup of {host} failed: {exc}") from None
        error: Exception = httpcore.ConnectError(f"no address for {host}")
        for ip in found:  # pinned: connect to the checked address, never re-resolve
            try:
                return await self._inner.connect_tcp(
                    ip,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options=None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Lane:
    """One keep-alive connection: an httpx transport whose httpcore pool holds at most one."""

    def __init__(
        self, origin: tuple[str, str, int | None], transport: httpx.AsyncHTTPTransport
    ) -> None:
        self.origin = origin
        self.transport = transport
        self.idle_since = 0.0


class _Release(httpx.AsyncByteStream):
    """A response stream that hands its lane back when closed."""

    def __init__(self, inner: httpx.AsyncByteStream, lanes: _Lanes, lane: _Lane) -> None:
        self._inner, self._lanes, self._lane = inner, lanes, lane

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part

    async def aclose(self) -> None:
        lane, self._lane = self._lane, None
        try:
            await self._inner.aclose()
        finally:
            if lane is not None:
                await self._lanes.release(lane)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS client context for the process: loading the CA bundle takes ~50 ms."""
    return httpx.create_ssl_context(trust_env=False)


class _Lanes(httpx.AsyncBaseTransport):
    """Connections handed to one request at a time, idle ones kept per origin (at most max_idle).

    httpcore's own pool rescans every connection (a poll() syscall each) for every queued
    request whenever a request starts or ends, and gives simultaneous requests the same idle
    connection, all but one then retrying: with hundreds of hosts, or a few requests to one
    host at once, that bookkeeping cost more than the requests. Here each request takes a
    connection of its own; the Fetcher's semaphores bound how many are busy.
    """

    def __init__(self, guard: AddressGuard, *, max_idle: int, keepalive: float) -> None:
        self._guard = guard
        self._max_idle = max_idle
        self._keepalive = keepalive
        self._limits = httpx.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=keepalive
        )
        self._idle: dict[tuple[str, str, int | None], list[_Lane]] = {}
        self._order: OrderedDict[_Lane, None] = OrderedDict()  # idle lanes, oldest first
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        lane = await self._acquire((request.url.scheme, request.url.host, request.url.port))
        try:
            response = await lane.transport.handle_async_request(request)
        except BaseException:
            await self.release(lane)
            raise
        response.stream = _Release(response.stream, self, lane)  # type: ignore[arg-type]
        return response

    async def release(self, lane: _Lane) -> None:
        if self._closed:  # a request that was in flight when the client closed
            await lane.transport.aclose()
            return
        lane.idle_since = time.monotonic()
        self._idle.setdefault(lane.origin, []).append(lane)
        self._order[lane] = None
        await self._trim()

    async def aclose(self) -> None:
        self._closed = True
        lanes = list(self._order)
        self._idle.clear()
        self._order.clear()
        for lane in lanes:
            await lane.transport.aclose()

    async def _acquire(self, origin: tuple[str, str, int | None]) -> _Lane:
        await self._trim()
        stack = self._idle.get(origin)
        if stack:  # the most recently used: likeliest to be alive
            lane = stack.pop()
            if not stack:
                del self._idle[origin]
            del self._order[lane]
            return lane
        transport = httpx.AsyncHTTPTransport(
            verify=_ssl_context(), limits=self._limits, trust_env=False
        )
        pool = transport._pool  # httpx takes no network backend; httpcore's pool does
        if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(
            pool, "_network_backend"
        ):
            raise RuntimeError(  # pyproject.toml pins httpcore; tests/test_pins.py checks it
                f"httpcore {httpcore.__version__} no longer lets the SSRF guard pin addresses")
        pool._network_backend = _GuardedBackend(self._guard)
        return _Lane(origin, transport)

    async def _trim(self) -> None:
        """Close idle connections past the keep-alive time or beyond max_idle, oldest first."""
        stale = time.monotonic() - self._keepalive
        while self._order:
            lane = next(iter(self._order))
            if len(self._order) <= self._max_idle and lane.idle_since > stale:
                return
            del self._order[lane]
            self._idle[lane.origin].remove(lane)
            if not self._idle[lane.origin]:
                del self._idle[lane.origin]
            await lane.transport.aclose()


# -- bounded decoding ------------------------------------------------------------------------


class _Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...
    def flush(self) -> Iterator[bytes]: ...


class _Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def flush(self) -> Iterator[bytes]:
        return iter(())


class _Zlib:
    """gzip or deflate (zlib-wrapped, or raw as some servers send), in pieces of ≤ _PIECE."""

    def __init__(self, gzip: bool) -> None:
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._head = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._d is None:  # deflate: look at the first two bytes for a zlib header
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._d = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        d = self._d
        out = d.decompress(data, _PIECE)
        while True:
            if out:
                yield out
            if not d.unconsumed_tail and len(out) < _PIECE:
                return
            out = d.decompress(d.unconsumed_tail, _PIECE)

    def flush(self) -> Iterator[bytes]:
        if self._d is not None:
            yield from self.feed(b"")


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        out = self._d.process(data, output_buffer_limit=_PIECE)
        while True:
            if out:
                yield out
            if self._d.can_accept_more_data() or not out:
                return
            out = self._d.process(b"", output_buffer_limit=_PIECE)

    def flush(self) -> Iterator[bytes]:
        yield from self.feed(b"")


class _Chain:
    """Several Content-Encodings, undone last first (decoders are in decoding order)."""

    def __init__(self, decoders: list[_Decoder]) -> None:
        self._decoders = decoders

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._down(0, self._decoders[0].feed(data))

    def flush(self) -> Iterator[bytes]:
        for i, decoder in enumerate(self._decoders):
            yield from self._down(i, decoder.flush())

    def _down(self, i: int, pieces: Iterator[bytes]) -> Iterator[bytes]:
        """Pass decoder i's output through the decoders after it."""
        if i + 1 == len(self._decoders):
            yield from pieces
            return
        for piece in pieces:
            yield from self._down(i + 1, self._decoders[i + 1].feed(piece))


def _decoder(content_encoding: str) -> _Decoder:
    """A decoder for the header's codings; unknown ones are passed through as httpx does."""
    makers = {
        "gzip": lambda: _Zlib(True),
        "x-gzip": lambda: _Zlib(True),
        "deflate": lambda: _Zlib(False),
        "br": _Brotli,
    }
    names = [n.strip().lower() for n in content_encoding.split(",") if n.strip()]
    decoders = [makers[n]() for n in reversed(names) if n in makers]
    if not decoders:
        return _Identity()
    return decoders[0] if len(decoders) == 1 else _Chain(decoders)


# -- the fetcher -----------------------------------------------------------------------------


class Fetcher:
    """Fetches feeds over HTTP(S) or from files, politely and within limits; never raises."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        guard: AddressGuard,
        concurrency: int,
        per_host: int,
        max_body_bytes: int,
        deadline: float | None = None,
    ) -> None:
        self._client = client
        self._guard = guard
        self._slots = asyncio.Semaphore(concurrency)
        self._per_host = per_host
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._cap = max_body_bytes
        self._deadline = deadline

    @classmethod
    def create(
        cls,
        *,
        concurrency: int = 50,
        per_host: int = 4,
        max_body_bytes: int = 10 * 1024 * 1024,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        deadline: float | None = None,
        user_agent: str = "veille",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Fetcher:
        """Build the client (pool sized to the concurrency, keep-alive, HTTP/1.1) and fetcher.

        transport replaces the network (e.g. httpx.MockTransport); the guard's pre-check stays.
        deadline caps a whole fetch (all hops); by default connect + 2 × read timeout.
        """
        guard = AddressGuard(allow_private=allow_private, resolver=resolver)
        client = httpx.AsyncClient(
            transport=transport or _Lanes(guard, max_idle=concurrency, keepalive=30.0),
            timeout=httpx.Timeout(
                connect=connect_timeout,
                read=read_timeout,
                write=read_timeout,
                pool=connect_timeout + read_timeout,
            ),
            headers={
                "User-Agent": user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            follow_redirects=False,  # followed here, so every hop meets the guard
            trust_env=False,  # no proxies from the environment: the guard checks real peers
        )
        return cls(
            client,
            guard=guard,
            concurrency=concurrency,
            per_host=per_host,
            max_body_bytes=max_body_bytes,
            deadline=deadline if deadline is not None else connect_timeout + 2 * read_timeout,
        )

    @classmethod
    def from_settings(cls, settings, *, resolver: Resolver | None = None) -> Fetcher:
        """The fetcher app.py builds once from Settings."""
        return cls.create(
            concurrency=settings.concurrency,
            per_host=settings.per_host_concurrency,
            max_body_bytes=settings.max_body_bytes,
            allow_private=settings.allow_private_urls,
            resolver=resolver,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            user_agent=settings.agent(),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def fetch(self, url: str, validators: Validators | None = None) -> FetchResult:
        """Fetch url (conditionally when validators are given); never raises."""
        start = time.monotonic()
        try:
            if urlsplit(url).scheme.lower() == "file":
                result = await self._read_file(url)
            else:
                result = await self._get(url, validators or Validators())
        except FetchError as exc:
            result = FetchResult(url, 0, error=exc.reason, transient=exc.transient)
        except TimeoutError:
            result = FetchResult(
                url, 0, error=f"timed out after {self._deadline} s in all", transient=True
            )
        except httpx.HTTPError as exc:
            reason, transient = self._describe(exc)
            result = FetchResult(url, 0, error=reason, transient=transient)
        except (httpx.InvalidURL, ValueError) as exc:  # a malformed URL or redirect Location
            result = FetchResult(url, 0, error=f"invalid URL: {_line(exc)}", transient=False)
        return replace(result, elapsed=time.monotonic() - start)

    async def _get(self, url: str, validators: Validators) -> FetchResult:
        current, permanent = httpx.URL(url), True
        seen = [str(current)]
        budget = self._deadline  # spent only while holding a slot, not while queueing for one
        for _ in range(MAX_REDIRECTS + 1):
            if current.scheme not in ("http", "https"):
                raise FetchError(
                    url, f"refused scheme {current.scheme!r} (only http, https)", transient=False
                )
            if not _HOST.fullmatch(current.raw_host):
                raise FetchError(url, f"invalid URL: bad host {current.host!r}", transient=False)
            # the host's slot first: fetches queueing for a busy host hold no global slot
            async with self._host_slot(current.host), self._slots:
                started = time.monotonic()
                async with asyncio.timeout(budget):
                    await self._guard.check(current)
                    request = self._client.build_request(
                        "GET", current, headers=validators.headers()
                    )
                    response = await self._client.send(request, stream=True)
                    try:
                        if response.status_code not in _REDIRECTS:
                            final = str(current) if permanent and len(seen) > 1 else None
                            return await self._result(url, response, validators, final)
                        location = response.headers.get("location")
                        await self._discard(response)
                    finally:
                        await response.aclose()
                if budget is not None:
                    budget -= time.monotonic() - started
            if not location:
                raise FetchError(
                    url, f"HTTP {response.status_code} redirect without Location", transient=False
                )
            permanent = permanent and response.status_code in _PERMANENT
            current = current.join(location)
            if str(current) in seen:
                chain = " -> ".join(_redact(u) for u in [*seen, str(current)])
                raise FetchError(url, f"redirect loop: {chain}", transient=False)
            seen.append(str(current))
        raise FetchError(url, f"too many redirects (more than {MAX_REDIRECTS})", transient=False)

    def _host_slot(self, host: str) -> asyncio.Semaphore:
        slot = self._hosts.get(host)
        if slot is None:
            slot = self._hosts[host] = asyncio.Semaphore(self._per_host)
        return slot

    async def _result(
        self, url: str, response: httpx.Response, validators: Validators, permanent: str | None
    ) -> FetchResult:
        status = response.status_code
        headers = {k: v for k, v in response.headers.items() if k not in _HIDDEN_HEADERS}
        common = {"headers": headers, "final_url": str(response.url), "permanent_url": permanent}
        etag = response.headers.get("etag")
        last_modified = response.headers.get("last-modified")
        if status == 304:
            await self._discard(response)
            return FetchResult(
                url,
                304,
                etag=etag or validators.etag,
                last_modified=last_modified or validators.last_modified,
                body_hash=validators.body_hash,
                **common,
            )
        if status == 200:
            body, digest = await self._read_body(url, response)
            return FetchResult(
                url,
                200,
                body=body,
                etag=etag,
                last_modified=last_modified,
                body_hash=digest,
                **common,
            )
        await self._discard(response)
        retry_after = parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
        return FetchResult(
            url,
            status,
            error=f"HTTP {status} {response.reason_phrase}".rstrip(),
            transient=status >= 500 or status in _TRANSIENT,
            retry_after=retry_after,
            **common,
        )

    async def _read_body(self, url: str, response: httpx.Response) -> tuple[bytes, str]:
        """The decoded body and its hash; stops as soon as it passes the cap."""
        encoding = response.headers.get("content-encoding", "")
        decoder = _Identity() if response.is_stream_consumed else _decoder(encoding)
        length = response.headers.get("content-length", "")
        if isinstance(decoder, _Identity) and length.isdigit() and int(length) > self._cap:
            raise FetchError(
                url, f"body exceeds {self._cap} bytes (Content-Length {length})", transient=False
            )
        digest, parts, total = hashlib.blake2b(digest_size=16), [], 0
        try:
            async for raw in _raw(response):
                for piece in decoder.feed(raw):
                    total += len(piece)
                    if total > self._cap:
                        raise FetchError(url, f"body exceeds {self._cap} bytes", transient=False)
                    parts.append(piece)
                    digest.update(piece)
            for piece in decoder.flush():
                total += len(piece)
                if total > self._cap:
                    raise FetchError(url, f"body exceeds {self._cap} bytes", transient=False)
                parts.append(piece)
                digest.update(piece)
        except (zlib.error, brotli.error) as exc:
            raise FetchError(
                url, f"cannot decode {encoding} body: {_line(exc)}", transient=False
            ) from None
        return b"".join(parts), digest.hexdigest()

    @staticmethod
    async def _discard(response: httpx.Response) -> None:
        """Read a small unwanted body so the connection can be reused; give up past 64 KB."""
        read = 0
        async for raw in _raw(response):
            read += len(raw)
            if read > _DISCARD:
                return

    def _describe(self, exc: httpx.HTTPError) -> tuple[str, bool]:
        """One line naming what went wrong, and whether it is transient."""
        timeout = self._client.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return f"connect timeout ({timeout.connect:g} s)", True
        if isinstance(exc, httpx.ReadTimeout):
            return f"read timeout (no data for {timeout.read:g} s)", True
        if isinstance(exc, httpx.TimeoutException):
            return f"{type(exc).__name__}: {_line(exc)}", True
        if isinstance(exc, httpx.ConnectError):
            return f"connection failed: {_line(exc)}", True
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"connection broken: {_line(exc)}", True
        if isinstance(exc, httpx.NetworkError):
            return f"network error ({type(exc).__name__}): {_line(exc)}", True
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return f"invalid URL: {_line(exc)}", False
        return f"{type(exc).__name__}: {_line(exc)}", True

    async def _read_file(self, url: str) -> FetchResult:
        """A file:// URL (offline use, `veille test`), under the same size cap."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(url, f"file URL names a remote host {parts.netloc!r}", transient=False)
        path = Path(url2pathname(parts.path))
        data = await asyncio.to_thread(_read_capped, url, path, self._cap)
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        return FetchResult(url, 200, body=data, final_url=url, body_hash=digest)


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it came off the wire (already decoded when built in memory, as in tests)."""
    if response.is_stream_consumed:  # an httpx.Response(content=...) from httpx.MockTransport
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


def _read_capped(url: str, path: Path, cap: int) -> bytes:
    try:
        return read_local(path, cap)
    except FileNotFoundError:
        raise FetchError(url, f"file not found: {path}", transient=False) from None
    except OSError as exc:
        raise FetchError(
            url, f"cannot read {path}: {exc.strerror or exc}", transient=False
        ) from None
    except ValueError:
        raise FetchError(url, f"body exceeds {cap} bytes", transient=False) from None


def read_local(path: Path, cap: int) -> bytes:
    """A local file's bytes under the body cap of fetched feeds (VEILLE_MAX_BODY_BYTES).

    The size is checked before reading, so a huge file is refused at once; the read stops
    at cap + 1 bytes in case the file grows (or is a pipe). ValueError when too large.
    """
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > cap:
            raise ValueError(f"{path} is {size} bytes, over the {cap}-byte limit "
                             "(VEILLE_MAX_BODY_BYTES)")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"{path} is over the {cap}-byte limit (VEILLE_MAX_BODY_BYTES)")
    return data


def _line(exc: BaseException) -> str:
    """An exception's message on one short line (its type name when it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _redact(url: str) -> str:
    """url without credentials or query string, for error messages."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}" + ("?…" if parts.query else "")


# -- when to poll again ----------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_delay(
    interval: float,
    error_streak: int,
    *,
    retry_after: float | None,
    max_backoff: float,
    jitter: float,
    rng: random.Random,
) -> float:
    """Seconds until a feed's next poll.

    Healthy (error_streak 0): interval × (1 ± jitter). Failing: interval × 2^(streak-1), at most
    max(max_backoff, interval), shortened by up to `jitter` so failing feeds spread out and
    never exceed the cap. Retry-After wins when it is longer, within the same cap.
    """
    cap = max(max_backoff, interval)
    if error_streak <= 0:
        delay = interval * (1 + rng.uniform(-jitter, jitter))
    else:
        delay = min(cap, interval * 2.0 ** min(error_streak - 1, 64)) * (1 - jitter * rng.random())
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
