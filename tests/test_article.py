"""Article fetch against the local feed server: a real page, a paywall stub, a huge page,
and a redirect to a private address (refused by the fetcher's address guard)."""

from __future__ import annotations

import httpx
import pytest

from bot.article import MIN_TEXT, extract, fetch_article
from bot.fetch import Fetcher

PARAGRAPHS = [
    "Gazprom and CNPC signed a binding supply contract for the Power of Siberia 2 pipeline "
    "on Tuesday, ending years of talks over the price of gas and the route through Mongolia.",
    "The line would carry 50 billion cubic metres a year from fields in western Siberia to "
    "northern China, the companies said in a joint statement released in Moscow.",
    "Neither side disclosed the price formula. Analysts said it was likely linked to oil "
    "prices with a discount, as in the first Power of Siberia contract signed in 2014.",
    "Mongolia's government welcomed the deal and said transit fees would be agreed by the "
    "end of the year, after a survey of the route across the Gobi.",
]
PAGE = ("<!doctype html><html><head><title>Pipeline deal signed</title></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/world'>World</a> | <a href='/login'>Log in</a>"
        "</nav><header><h1>Pipeline deal signed</h1><p class='byline'>By A. Writer</p></header>"
        "<article>" + "".join(f"<p>{p}</p>" for p in PARAGRAPHS) + "</article>"
        "<aside><h3>Most read</h3><ul><li>Storm hits coast</li><li>Team wins cup</li></ul>"
        "</aside><footer>© Example News. All rights reserved. We use cookies.</footer>"
        "</body></html>").encode()
STUB = ("<!doctype html><html><head><title>Pipeline deal signed</title></head><body>"
        "<h1>Pipeline deal signed</h1><p>Gazprom and CNPC signed a contract on Tuesday.</p>"
        "<div class='paywall'><p>Subscribe to read the full story.</p>"
        "<button>Subscribe</button></div></body></html>").encode()
HTML = "text/html; charset=utf-8"


@pytest.fixture
async def fetcher():
    async with Fetcher.create(allow_private=True, max_body_bytes=256 * 1024,
                              connect_timeout=2, read_timeout=2) as f:
        yield f


async def test_a_real_page_gives_its_main_text_without_navigation(feed_server, fetcher) -> None:
    feed_server.set_feed("/world/deal.html", PAGE, content_type=HTML)
    article = await fetch_article(fetcher, feed_server.url("/world/deal.html"))
    assert article.error is None and article.text is not None
    assert all(p in article.text for p in PARAGRAPHS)
    for noise in ("Log in", "Most read", "Storm hits coast", "cookies"):
        assert noise not in article.text


async def test_a_paywall_stub_gives_no_text(feed_server, fetcher) -> None:
    feed_server.set_feed("/world/locked.html", STUB, content_type=HTML)
    article = await fetch_article(fetcher, feed_server.url("/world/locked.html"))
    assert article.text is None and "paywall" in article.error


async def test_a_huge_page_is_refused_by_the_size_cap(feed_server, fetcher) -> None:
    feed_server.set_oversize("/world/huge.html", 3 * 1024 * 1024)
    article = await fetch_article(fetcher, feed_server.url("/world/huge.html"))
    assert article.text is None and article.error.startswith("body exceeds")


async def test_not_html_gives_no_text(feed_server, fetcher) -> None:
    feed_server.set_feed("/world/deal.pdf", b"%PDF-1.4", content_type="application/pdf")
    article = await fetch_article(fetcher, feed_server.url("/world/deal.pdf"))
    assert (article.text, article.error) == (None, "not an HTML page (application/pdf)")


class _ToLoopback(httpx.AsyncBaseTransport):
    """Sends every request to the local server, whatever host it names (the address guard
    still judges each hop by the host's resolved address first)."""

    def __init__(self, port: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._port = port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1", port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_redirect_to_a_private_address_is_refused(feed_server) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return {"news.test": ["93.184.216.34"]}[host]  # a public address for the first hop

    feed_server.set_feed("/world/deal.html", PAGE, content_type=HTML)
    feed_server.set_redirect("/world/moved.html", "http://10.0.0.5/world/deal.html", status=302)
    async with Fetcher.create(resolver=resolve, transport=_ToLoopback(feed_server.port)) as f:
        ok = await fetch_article(f, feed_server.url("/world/deal.html", host="news.test"))
        refused = await fetch_article(f, feed_server.url("/world/moved.html", host="news.test"))
    assert ok.text is not None  # the public host itself is fetched
    assert refused.text is None and "10.0.0.5 is a private address" in refused.error
    assert feed_server.hits("/world/moved.html") == 1


def test_extract_is_pure_and_needs_enough_text() -> None:
    assert extract(PAGE.decode()) and len(extract(PAGE)) >= MIN_TEXT
    assert extract(b"<html><body><p>Short.</p></body></html>") is None
    assert extract(b"\x00\x01 not html at all") is None


def test_a_thin_item_is_summarised_from_its_article_and_then_by_the_llm(feed_server,
                                                                          tmp_path) -> None:
    """A run with VEILLE_FETCH_ARTICLES: the one-line teaser gives way to the article's
    sentences; with VEILLE_LLM_URL too, to the model's answer."""
    import asyncio
    import io
    import json

    from bot.app import App
    from bot.deliver import JsonSink
    from bot.scheduler import cycle
    from tests.pipeline_helpers import make_env, rss, write_watchlist

    feed_server.set_feed("/world/deal.html", PAGE, content_type=HTML)
    teaser = {"guid": "t1", "title": "Power of Siberia 2: deal signed",
              "link": feed_server.url("/world/deal.html"), "desc": "Deal signed."}
    feed_server.set_feed("/feed.xml", rss([teaser], "Example News"))
    answer = ("Gazprom and CNPC signed a binding Power of Siberia 2 contract on Tuesday for 50 "
              "billion cubic metres a year.")
    feed_server.set_feed("/llm/v1/chat/completions", json.dumps({"choices": [{"message": {
        "role": "assistant", "content": answer}, "finish_reason": "stop"}]}).encode(),
        content_type="application/json")

    def run(name: str, **settings) -> dict:
        wl = write_watchlist(tmp_path / name / "wl", [("News", feed_server.url("/feed.xml"))])
        env = make_env(tmp_path / name, wl, fetch_articles=True, **settings)
        out = io.StringIO()

        async def go() -> None:
            app = App.create(env.settings, sink=JsonSink(out), parse_in_processes=False)
            try:
                await cycle(app)
                await app.sink.finish(app.store)
            finally:
                await app.aclose()

        asyncio.run(go())
        [row] = [json.loads(line) for line in out.getvalue().splitlines()]
        return row

    article = run("article")
    assert article["summary"] == PARAGRAPHS[0]  # the one sentence naming the term
    llm = run("llm", llm_url=feed_server.url("/llm/v1"), llm_model="m")
    assert llm["summary"] == answer
