"""What veille patches inside its libraries is still there: a library upgrade that removes it
fails here, loudly, instead of silently turning a guarantee off."""

from __future__ import annotations

import httpcore
import httpx

from bot.fetch import Fetcher

PINNED = "pyproject.toml pins httpcore to the versions tested"


def test_httpcore_pools_still_take_a_network_backend() -> None:
    """fetch.py replaces `_network_backend` of httpx's httpcore pool with the SSRF guard's."""
    transport = httpx.AsyncHTTPTransport()
    pool = getattr(transport, "_pool", None)
    assert isinstance(pool, httpcore.AsyncConnectionPool), (
        f"httpx {httpx.__version__} no longer keeps an httpcore AsyncConnectionPool in "
        f"AsyncHTTPTransport._pool: the SSRF guard cannot pin addresses ({PINNED})")
    assert isinstance(getattr(pool, "_network_backend", None), httpcore.AsyncNetworkBackend), (
        f"httpcore {httpcore.__version__} has no AsyncConnectionPool._network_backend: the "
        f"SSRF guard's address pinning would be off ({PINNED}; see fetch.py _acquire)")


async def test_connections_go_through_the_guarded_backend(feed_server) -> None:
    """Private addresses allowed, the guard's check is a no-op: only the guarded backend
    asks this resolver, so a name it alone knows connects only through that backend."""
    feed_server.set_feed("/pinned.xml", b'<?xml version="1.0"?><rss version="2.0"><channel>'
                         b"<title>Pinned</title></channel></rss>")
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    async with Fetcher.create(allow_private=True, resolver=resolve) as fetcher:
        result = await fetcher.fetch(feed_server.url("/pinned.xml", host="pinned.test"))
    assert asked == ["pinned.test"], (
        f"httpcore {httpcore.__version__} connected without the SSRF guard's backend "
        f"({PINNED}; see fetch.py _acquire)")
    assert result.error is None and result.status == 200
