"""bot.fetch against a real HTTP server on 127.0.0.1 (tests/feedserver.py), plus pure tables."""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta

import brotli
import httpx
import pytest

from bot.config import Settings
from bot.errors import BlockedAddressError
from bot.fetch import (
    ACCEPT_ENCODING,
    AddressGuard,
    Fetcher,
    Validators,
    _GuardedBackend,
    blocked_reason,
    next_delay,
    parse_retry_after,
)
from tests.feedserver import FeedServer

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>'
MB = 1 << 20


def resolver_for(table: dict[str, list[str]]):
    """A fake DNS: name -> addresses; anything else fails like an unknown name."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


@pytest.fixture
async def fetcher():
    """A fetcher allowed onto loopback (the feed server), with short timeouts."""
    f = Fetcher.create(allow_private=True, connect_timeout=2, read_timeout=0.5, max_body_bytes=MB)
    yield f
    await f.aclose()


# -- 200, 304 and the validators -------------------------------------------------------------


async def test_200_returns_body_validators_and_hash(feed_server: FeedServer, fetcher: Fetcher):
    feed_server.set_feed("/a.xml", RSS)
    r = await fetcher.fetch(feed_server.url("/a.xml"))
    assert (r.status, r.body, r.error, r.ok) == (200, RSS, None, True)
    assert feed_server.hits("/a.xml") == 1
    assert r.etag and r.etag.startswith('"') and r.etag == r.headers["etag"]
    assert email.utils.parsedate_to_datetime(r.last_modified) is not None
    assert r.body_hash and len(r.body_hash) == 32 and int(r.body_hash, 16) >= 0
    assert r.final_url == feed_server.url("/a.xml") and r.permanent_url is None
    assert r.headers["content-type"].startswith("application/rss+xml")
    assert r.elapsed > 0


async def test_second_fetch_is_conditional_and_gets_304(feed_server, fetcher):
    feed_server.set_feed("/a.xml", RSS)
    first = await fetcher.fetch(feed_server.url("/a.xml"))
    known = Validators.from_result(first)
    second = await fetcher.fetch(feed_server.url("/a.xml"), known)
    sent = feed_server.requests("/a.xml")[-1]
    assert sent["if-none-match"] == first.etag
    assert sent["if-modified-since"] == first.last_modified
    assert (second.status, second.body, second.error) == (304, None, None)
    assert second.ok and second.not_modified
    assert (second.etag, second.last_modified, second.body_hash) == (
        first.etag,
        first.last_modified,
        first.body_hash,
    )
    assert known.unchanged(second)


async def test_changed_body_gets_200_with_new_etag_and_hash(feed_server, fetcher):
    feed_server.set_feed("/a.xml", RSS)
    first = await fetcher.fetch(feed_server.url("/a.xml"))
    feed_server.set_feed("/a.xml", RSS.replace(b"<title>T", b"<title>U"))
    second = await fetcher.fetch(feed_server.url("/a.xml"), Validators.from_result(first))
    assert second.status == 200 and b"<title>U" in second.body
    assert second.etag != first.etag and second.last_modified != first.last_modified
    assert second.body_hash != first.body_hash
    assert not Validators.from_result(first).unchanged(second)


async def test_same_body_without_validators_has_the_same_hash(feed_server, fetcher):
    feed_server.set_feed("/plain.xml", RSS, validators=False)
    first = await fetcher.fetch(feed_server.url("/plain.xml"))
    assert (first.etag, first.last_modified) == (None, None)
    second = await fetcher.fetch(feed_server.url("/plain.xml"), Validators.from_result(first))
    assert "if-none-match" not in feed_server.requests("/plain.xml")[-1]
    assert second.status == 200 and second.body_hash == first.body_hash
    assert Validators.from_result(first).unchanged(second)  # the caller can skip parsing
    feed_server.set_feed("/plain.xml", RSS + b" ", validators=False)
    third = await fetcher.fetch(feed_server.url("/plain.xml"), Validators.from_result(first))
    assert third.body_hash != first.body_hash
    assert not Validators.from_result(first).unchanged(third)


async def test_last_modified_alone_gives_304(feed_server, fetcher):
    feed_server.set_feed("/lm.xml", RSS, etag=False)
    first = await fetcher.fetch(feed_server.url("/lm.xml"))
    assert first.etag is None and first.last_modified
    second = await fetcher.fetch(feed_server.url("/lm.xml"), Validators.from_result(first))
    assert feed_server.requests("/lm.xml")[-1]["if-modified-since"] == first.last_modified
    assert second.status == 304 and second.last_modified == first.last_modified


def test_validators_unchanged_is_false_for_errors():
    known = Validators('"x"', None, "abc")
    from bot.model import FetchResult

    assert not known.unchanged(FetchResult("u", 500, error="HTTP 500"))
    assert not known.unchanged(FetchResult("u", 200, body=b"", body_hash="def"))
    assert known.unchanged(FetchResult("u", 200, body=b"", body_hash="abc"))
    assert Validators().headers() == {}
    assert known.headers() == {"If-None-Match": '"x"'}


# -- statuses, Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (404, False),
        (410, False),
        (403, False),
        (401, False),
        (400, False),
        (408, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
    ],
)
async def test_http_errors_are_results_with_transience(feed_server, fetcher, status, transient):
    feed_server.set_status("/x", status)
    r = await fetcher.fetch(feed_server.url("/x"))
    assert r.status == status and r.body is None and not r.ok
    assert r.error.startswith(f"HTTP {status}")
    assert r.transient is transient


async def test_429_retry_after_seconds(feed_server, fetcher):
    feed_server.set_status("/busy", 429, retry_after=120)
    r = await fetcher.fetch(feed_server.url("/busy"))
    assert (r.status, r.transient, r.retry_after) == (429, True, 120.0)
    assert "429" in r.error


async def test_503_retry_after_http_date(feed_server, fetcher):
    when = datetime.now(UTC) + timedelta(hours=1)
    feed_server.set_status("/busy", 503, retry_after=email.utils.format_datetime(when, usegmt=True))
    r = await fetcher.fetch(feed_server.url("/busy"))
    assert r.status == 503 and r.transient
    assert 3500 < r.retry_after <= 3600


NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("Sat, 01 Mar 2025 12:10:00 GMT", 600.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past: now
        ("Saturday, 01-Mar-25 12:00:30 GMT", 30.0),  # RFC 850 form
        ("-5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


# -- redirects -------------------------------------------------------------------------------


async def test_permanent_redirect_chain_sets_permanent_url(feed_server, fetcher):
    feed_server.set_redirect("/old", "/older", status=301)
    feed_server.set_redirect("/older", "/new", status=308)
    feed_server.set_feed("/new", RSS)
    r = await fetcher.fetch(feed_server.url("/old"))
    assert r.status == 200 and r.body == RSS
    assert r.permanent_url == feed_server.url("/new") == r.final_url
    assert r.url == feed_server.url("/old")
    assert [feed_server.hits(p) for p in ("/old", "/older", "/new")] == [1, 1, 1]


@pytest.mark.parametrize("temporary", [302, 303, 307])
async def test_a_temporary_hop_means_no_permanent_url(feed_server, fetcher, temporary):
    feed_server.set_redirect("/old", "/mid", status=301)
    feed_server.set_redirect("/mid", "/new", status=temporary)
    feed_server.set_feed("/new", RSS)
    r = await fetcher.fetch(feed_server.url("/old"))
    assert r.status == 200 and r.body == RSS
    assert r.permanent_url is None and r.final_url == feed_server.url("/new")


async def test_redirect_loop_is_a_clear_error(feed_server, fetcher):
    feed_server.set_redirect("/a", "/b", status=302)
    feed_server.set_redirect("/b", "/a", status=302)
    r = await fetcher.fetch(feed_server.url("/a"))
    assert r.status == 0 and not r.transient
    assert r.error.startswith("redirect loop:") and "/a -> " in r.error and "/b -> " in r.error
    assert feed_server.hits("/a") == 1 and feed_server.hits("/b") == 1


async def test_too_many_redirects(feed_server, fetcher):
    for i in range(7):
        feed_server.set_redirect(f"/r{i}", f"/r{i + 1}", status=301)
    feed_server.set_feed("/r7", RSS)
    r = await fetcher.fetch(feed_server.url("/r0"))
    assert r.error == "too many redirects (more than 5)" and not r.transient
    assert feed_server.hits("/r7") == 0


async def test_redirect_to_file_scheme_is_refused(feed_server, fetcher):
    feed_server.set_redirect("/sneaky", "file:///etc/passwd", status=302)
    r = await fetcher.fetch(feed_server.url("/sneaky"))
    assert r.error == "refused scheme 'file' (only http, https)" and r.body is None


async def test_redirect_without_location(feed_server, fetcher):
    feed_server.set_status("/nowhere", 301)
    r = await fetcher.fetch(feed_server.url("/nowhere"))
    assert r.error == "HTTP 301 redirect without Location" and not r.transient


async def test_error_messages_carry_no_credentials(feed_server, fetcher):
    feed_server.set_redirect("/a", "/b?token=hunter2", status=302)
    feed_server.set_redirect("/b", "/a", status=302)
    url = feed_server.url("/a").replace("http://", "http://user:s3cret@")
    r = await fetcher.fetch(url)
    assert r.error.startswith("redirect loop")
    assert "s3cret" not in r.error and "hunter2" not in r.error


# -- timeouts and broken connections ---------------------------------------------------------


@pytest.mark.parametrize("after_headers", [False, True])
async def test_stall_is_a_read_timeout(feed_server, fetcher, after_headers):
    feed_server.set_stall("/slow", after_headers=after_headers)
    r = await fetcher.fetch(feed_server.url("/slow"))
    assert r.status == 0 and r.transient and r.body is None
    assert r.error == "read timeout (no data for 0.5 s)"


async def test_overall_deadline(feed_server):
    feed_server.set_stall("/slow", after_headers=True)
    async with Fetcher.create(allow_private=True, read_timeout=30, deadline=0.3) as f:
        r = await f.fetch(feed_server.url("/slow"))
    assert r.error == "timed out after 0.3 s in all" and r.transient


@pytest.mark.parametrize(
    ("reset", "error"),
    [
        (False, "connection broken: peer closed connection without sending complete message body"),
        (True, "network error (ReadError)"),
    ],
)
async def test_dropped_connection_is_transient(feed_server, fetcher, reset, error):
    feed_server.set_drop("/cut", reset=reset)
    r = await fetcher.fetch(feed_server.url("/cut"))
    assert r.status == 0 and r.transient and r.body is None
    assert r.error.startswith(error)


async def test_connection_refused_is_transient(fetcher):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await fetcher.fetch(f"http://127.0.0.1:{port}/feed")
    assert r.status == 0 and r.transient and r.error.startswith("connection failed")


async def test_dns_failure_is_transient():
    resolve = resolver_for({})
    for allow in (False, True):
        async with Fetcher.create(allow_private=allow, resolver=resolve) as f:
            r = await f.fetch("http://no-such-host.test/feed")
        assert r.status == 0 and r.transient
        assert "DNS lookup of no-such-host.test failed" in r.error


@pytest.mark.parametrize("url", ["http://", "not a url", "http://[::1/", "http://exa mple.test/"])
async def test_invalid_urls_are_permanent_errors(url):
    async with Fetcher.create(resolver=resolver_for({})) as fetcher:  # never the real DNS
        r = await fetcher.fetch(url)
    assert r.status == 0 and not r.transient and r.error


async def test_unsupported_scheme(fetcher):
    r = await fetcher.fetch("ftp://example.com/feed.xml")
    assert r.error == "refused scheme 'ftp' (only http, https)" and not r.transient


# -- size caps and decoding ------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [True, False])
async def test_body_over_the_cap(feed_server, fetcher, chunked):
    feed_server.set_oversize("/big", 3 * MB, chunked=chunked)
    r = await fetcher.fetch(feed_server.url("/big"))
    assert r.status == 0 and not r.transient and r.body is None
    assert r.error.startswith(f"body exceeds {MB} bytes")
    assert ("Content-Length" in r.error) is not chunked  # refused before reading when announced


async def test_body_exactly_at_the_cap_passes(feed_server, fetcher):
    feed_server.set_oversize("/edge", MB)
    r = await fetcher.fetch(feed_server.url("/edge"))
    assert r.status == 200 and len(r.body) == MB
    feed_server.set_oversize("/edge", MB + 1)
    assert (await fetcher.fetch(feed_server.url("/edge"))).error == f"body exceeds {MB} bytes"


async def _peak_during(coro):
    tracemalloc.start()
    try:
        result = await coro
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_gzip_bomb_stops_at_the_cap_with_bounded_memory(feed_server, fetcher):
    feed_server.set_gzip_bomb("/bomb", 512 * MB)
    r, peak = await _peak_during(fetcher.fetch(feed_server.url("/bomb")))
    assert r.error == f"body exceeds {MB} bytes" and not r.transient
    assert peak < 6 * MB, f"peak {peak / MB:.1f} MB while decoding a gzip bomb"


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip"])
async def test_compressed_zeros_stop_at_the_cap_with_bounded_memory(feed_server, fetcher, encoding):
    feed_server.set_feed("/zeros", bytes(16 * MB), encoding=encoding)  # a few KB on the wire
    r, peak = await _peak_during(fetcher.fetch(feed_server.url("/zeros")))
    assert r.error == f"body exceeds {MB} bytes"
    assert peak < 6 * MB, f"peak {peak / MB:.1f} MB while decoding {encoding}"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw", "br"])
async def test_compressed_bodies_are_decoded(feed_server, fetcher, encoding):
    body = RSS.replace(
        b"<title>T</title>", b"<title>" + "Сила Сибири 2 ".encode() * 500 + b"</title>"
    )
    feed_server.set_feed("/enc.xml", body, encoding=encoding)
    r = await fetcher.fetch(feed_server.url("/enc.xml"))
    assert feed_server.requests("/enc.xml")[-1]["accept-encoding"] == ACCEPT_ENCODING
    assert r.status == 200 and r.body == body
    assert r.etag.endswith(f'-{encoding}"')  # the server really sent the encoded variant
    assert "content-encoding" not in r.headers and "content-length" not in r.headers
    feed_server.set_feed("/plain.xml", body)
    plain = await fetcher.fetch(feed_server.url("/plain.xml"))
    assert plain.body_hash == r.body_hash  # the hash is of the decoded body


async def test_stacked_encodings_are_undone_last_first(feed_server, fetcher):
    body = RSS * 200
    gz = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    wire = brotli.compress(gz.compress(body) + gz.flush())
    feed_server.set_feed("/two.xml", wire, headers={"Content-Encoding": "gzip, br"})
    r = await fetcher.fetch(feed_server.url("/two.xml"))
    assert r.status == 200 and r.body == body


async def test_corrupt_gzip_is_a_permanent_error(feed_server, fetcher):
    feed_server.set_feed(
        "/bad.xml",
        b"\x1f\x8b\x08\x00" + b"not gzip at all" * 10,
        headers={"Content-Encoding": "gzip"},
    )
    r = await fetcher.fetch(feed_server.url("/bad.xml"))
    assert r.status == 0 and not r.transient and r.error.startswith("cannot decode gzip body")


@pytest.mark.parametrize("kind", ["garbage", "html"])
async def test_garbage_and_html_are_returned_for_parse_to_judge(feed_server, fetcher, kind):
    getattr(feed_server, f"set_{kind}")("/odd")
    r = await fetcher.fetch(feed_server.url("/odd"))
    assert r.status == 200 and r.ok and r.body and r.error is None
    assert (b"<html>" in r.body) is (kind == "html")
    if kind == "html":
        assert r.headers["content-type"].startswith("text/html")


# -- politeness ------------------------------------------------------------------------------


async def test_user_agent_and_accept_from_settings(feed_server):
    settings = Settings(_env_file=None, allow_private_urls=True)
    feed_server.set_feed("/a.xml", RSS)
    async with Fetcher.from_settings(settings) as f:
        r = await f.fetch(feed_server.url("/a.xml"))
    assert r.ok
    sent = feed_server.requests("/a.xml")[-1]
    assert sent["user-agent"] == settings.agent() and sent["user-agent"].startswith("veille/")
    assert sent["accept"].startswith("application/rss+xml, application/atom+xml")


async def test_keep_alive_reuses_one_connection(feed_server, fetcher):
    feed_server.set_feed("/a.xml", RSS)
    for _ in range(10):
        assert (await fetcher.fetch(feed_server.url("/a.xml"))).ok
    assert feed_server.connections() == 1


async def test_per_host_and_global_concurrency_are_bounded(feed_server):
    hosts = ["a.test", "b.test", "c.test"]
    resolve = resolver_for({h: ["127.0.0.1"] for h in hosts})
    for i in range(8):
        feed_server.set_feed(f"/f{i}", RSS, delay=0.05)
    urls = [feed_server.url(f"/f{i}", host=h) for h in hosts for i in range(8)]
    async with Fetcher.create(concurrency=5, per_host=2, allow_private=True, resolver=resolve) as f:
        results = await asyncio.gather(*(f.fetch(u) for u in urls))
    assert all(r.status == 200 for r in results)
    for h in hosts:  # the server counts requests in flight per Host header
        assert feed_server.max_in_flight(host=h) == 2
    assert 3 <= feed_server.max_in_flight() <= 5


async def test_fetches_waiting_for_a_busy_host_do_not_block_other_hosts(feed_server):
    resolve = resolver_for({"busy.test": ["127.0.0.1"], "idle.test": ["127.0.0.1"]})
    feed_server.set_feed("/slow", RSS, delay=0.3)
    feed_server.set_feed("/fast", RSS)
    done: list[str] = []

    async def fetch(f: Fetcher, url: str) -> None:
        assert (await f.fetch(url)).ok
        done.append(url)

    busy = [feed_server.url(f"/slow?{i}", host="busy.test") for i in range(3)]
    idle = feed_server.url("/fast", host="idle.test")
    async with Fetcher.create(concurrency=2, per_host=1, allow_private=True, resolver=resolve) as f:
        await asyncio.gather(*(fetch(f, u) for u in [*busy, idle]))
    assert done.index(idle) == 0  # it took the free global slot while busy.test queued


async def test_the_deadline_does_not_count_time_spent_queueing(feed_server):
    feed_server.set_feed("/a.xml", RSS, delay=0.2)
    async with Fetcher.create(concurrency=1, allow_private=True, deadline=0.6) as f:
        results = await asyncio.gather(*(f.fetch(feed_server.url(f"/a.xml?{i}")) for i in range(4)))
    assert [r.error for r in results] == [None] * 4


# -- file:// ---------------------------------------------------------------------------------


async def test_file_urls(tmp_path, fetcher):
    feed = tmp_path / "feed.xml"
    feed.write_bytes(RSS)
    r = await fetcher.fetch(feed.as_uri())
    assert (r.status, r.body, r.error) == (200, RSS, None)
    assert r.body_hash == (await fetcher.fetch(feed.as_uri())).body_hash

    missing = await fetcher.fetch((tmp_path / "nope.xml").as_uri())
    assert missing.error == f"file not found: {tmp_path / 'nope.xml'}" and not missing.transient

    (tmp_path / "big.xml").write_bytes(b"x" * (MB + 1))
    assert (
        await fetcher.fetch((tmp_path / "big.xml").as_uri())
    ).error == f"body exceeds {MB} bytes"

    folder = await fetcher.fetch(tmp_path.as_uri())
    assert folder.error.startswith(f"cannot read {tmp_path}") and not folder.transient

    remote = await fetcher.fetch("file://fileserver/share/feed.xml")
    assert remote.error == "file URL names a remote host 'fileserver'"


# -- the SSRF guard --------------------------------------------------------------------------


async def test_loopback_is_refused_by_default(feed_server):
    feed_server.set_feed("/a.xml", RSS)
    async with Fetcher.create() as f:
        r = await f.fetch(feed_server.url("/a.xml"))
    assert r.status == 0 and not r.transient
    assert r.error == (
        "refused: 127.0.0.1 is a loopback address (set VEILLE_ALLOW_PRIVATE_URLS=1 to allow it)"
    )
    assert feed_server.hits("/a.xml") == 0


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.2", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.1.1", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd00:ec2::254", "cloud metadata"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.5", "private (IPv4 10.0.0.5 inside IPv6)"),
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("::ffff:169.254.169.254", "cloud metadata (IPv4 169.254.169.254 inside IPv6)"),
        ("64:ff9b::a00:5", "private (IPv4 10.0.0.5 inside IPv6)"),
        ("2002:a00:5::1", "private (IPv4 10.0.0.5 inside IPv6)"),
    ],
)
async def test_non_public_addresses_are_refused(address, reason):
    resolve = resolver_for({"feed.example": [address]})
    async with Fetcher.create(resolver=resolve) as f:
        r = await f.fetch("http://feed.example/rss")
    assert r.status == 0 and not r.transient and r.body is None
    assert r.error == (
        f"refused: feed.example resolves to {address}, which is a {reason} "
        "address (set VEILLE_ALLOW_PRIVATE_URLS=1 to allow it)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/rss",
        "http://[fd00:ec2::254]/latest",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_literal_addresses_are_refused(url):
    async with Fetcher.create() as f:
        r = await f.fetch(url)
    assert r.error.startswith("refused: ") and "VEILLE_ALLOW_PRIVATE_URLS=1" in r.error


async def test_one_private_answer_among_public_ones_refuses_the_host():
    resolve = resolver_for({"mixed.example": ["93.184.216.34", "10.1.2.3"]})
    async with Fetcher.create(resolver=resolve) as f:
        r = await f.fetch("https://mixed.example/feed")
    assert "10.1.2.3, which is a private address" in r.error


async def test_every_redirect_hop_is_checked():
    """A public feed redirecting to the metadata service is refused at the second hop."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://metadata.internal/latest/"})

    resolve = resolver_for(
        {"public.example": ["93.184.216.34"], "metadata.internal": ["169.254.169.254"]}
    )
    async with Fetcher.create(resolver=resolve, transport=httpx.MockTransport(handler)) as f:
        r = await f.fetch("http://public.example/feed")
    assert seen == ["http://public.example/feed"]
    assert "metadata.internal resolves to 169.254.169.254, which is a cloud metadata" in r.error


async def test_the_connection_itself_is_guarded_against_rebinding():
    """The backend re-checks at connect time, so a DNS answer that turns private is refused."""
    answers = iter([["93.184.216.34"], ["10.0.0.5"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    guard = AddressGuard(resolver=rebinding, ttl=0)
    await guard.check(httpx.URL("http://rebind.example/feed"))  # first answer: public
    with pytest.raises(BlockedAddressError, match="10.0.0.5, which is a private"):
        await _GuardedBackend(guard).connect_tcp("rebind.example", 80, timeout=1)


async def test_allowed_private_names_connect_to_the_resolved_address(feed_server):
    feed_server.set_feed("/a.xml", RSS)
    resolve = resolver_for({"intranet.corp": ["127.0.0.1"]})
    async with Fetcher.create(allow_private=True, resolver=resolve) as f:
        r = await f.fetch(feed_server.url("/a.xml", host="intranet.corp"))
    assert r.status == 200 and r.body == RSS
    assert feed_server.requests("/a.xml")[-1]["host"] == f"intranet.corp:{feed_server.port}"


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address):
    assert blocked_reason(address) is None


# -- when to poll again ----------------------------------------------------------------------


class Fixed(random.Random):
    """random() and uniform() pinned to one end of their range."""

    def __init__(self, at: float) -> None:
        super().__init__(0)
        self.at = at

    def random(self) -> float:
        return self.at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


@pytest.mark.parametrize(
    ("interval", "streak", "retry_after", "at", "expected"),
    [
        (600, 0, None, 0.5, 600),  # healthy: the interval...
        (600, 0, None, 0.0, 540),  # ... minus up to 10 %
        (600, 0, None, 1.0, 660),  # ... plus up to 10 %
        (600, 1, None, 0.0, 600),  # first failure: the interval again
        (600, 2, None, 0.0, 1200),  # then doubling
        (600, 3, None, 0.0, 2400),
        (600, 5, None, 0.0, 9600),
        (600, 6, None, 0.0, 19200),
        (600, 7, None, 0.0, 6 * 3600),  # capped at max_backoff
        (600, 60, None, 0.0, 6 * 3600),
        (600, 6000, None, 0.0, 6 * 3600),  # no overflow
        (600, 3, None, 1.0, 2400 * 0.9),  # failing feeds jitter downward only
        (600, 60, None, 1.0, 6 * 3600 * 0.9),  # ... so never past the cap
        (600, 0, 3600, 0.5, 3600),  # Retry-After wins when longer
        (600, 0, 60, 0.5, 600),  # ... not when shorter
        (600, 2, 7200, 0.0, 7200),
        (600, 1, 10 * 86400, 0.0, 6 * 3600),  # an absurd Retry-After is capped
        (86400, 3, None, 0.0, 86400),  # a daily feed never waits less than a day
    ],
)
def test_next_delay(interval, streak, retry_after, at, expected):
    delay = next_delay(
        interval, streak, retry_after=retry_after, max_backoff=6 * 3600, jitter=0.1, rng=Fixed(at)
    )
    assert delay == pytest.approx(expected)


def test_next_delay_spreads_healthy_feeds():
    rng = random.Random(42)
    delays = [
        next_delay(600, 0, retry_after=None, max_backoff=21600, jitter=0.1, rng=rng)
        for _ in range(500)
    ]
    assert all(540 <= d <= 660 for d in delays)
    assert max(delays) - min(delays) > 100  # really spread, not all the same
