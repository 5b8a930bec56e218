"""Article text, for items whose feed says too little (VEILLE_FETCH_ARTICLES, off by default).

The page is fetched through the same guarded Fetcher as feeds (address guard on every hop,
size cap, timeout, per-host limits), and its main text extracted by trafilatura, the
well-kept extractor that drops navigation, comments and boilerplate. A paywall stub, an
empty page or a failed fetch give no text: the summary then stays the feed's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .fetch import Fetcher

log = logging.getLogger("veille.article")

MIN_TEXT = 200  # characters: less is a teaser, a paywall stub or a cookie wall
MAX_TEXT = 20_000  # characters kept of a long article (the summary reads its start)
_HTML = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True, slots=True)
class Article:
    """What fetching an article gave: its main text, or why there is none."""

    url: str
    text: str | None
    error: str | None = None


def extract(page: bytes | str, url: str | None = None) -> str | None:
    """The main text of an HTML page (pure), or None when it has too little."""
    import trafilatura  # imported here: a second to load, needed only with fetch_articles

    try:
        text = trafilatura.extract(page, url=url, include_comments=False, include_tables=False,
                                   favor_precision=True)  # no deduplicate: its cache is global
    except (ValueError, TypeError) as exc:  # trafilatura's own errors on broken input
        log.info("article", extra={"fields": {"url": url, "error": repr(exc)}})
        return None
    if not text or len(text) < MIN_TEXT:
        return None
    return text[:MAX_TEXT]


async def fetch_article(fetcher: Fetcher, url: str) -> Article:
    """Fetch an article page and extract its main text; never raises."""
    result = await fetcher.fetch(url)
    if result.error is not None or result.body is None:
        return Article(url, None, result.error or f"HTTP {result.status}")
    kind = result.headers.get("content-type", "text/html").split(";")[0].strip().lower()
    if kind not in _HTML:
        return Article(url, None, f"not an HTML page ({kind})")
    text = await asyncio.to_thread(extract, result.body, result.final_url or url)
    return Article(url, text, None if text else "no article text (a paywall or a stub?)")
