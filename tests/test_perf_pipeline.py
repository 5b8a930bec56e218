"""The pipeline bounds the polls between their fetch and the end of their claim (in_flight):
a cycle starts every feed at once, and the bodies must not all wait in memory for the parse
workers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bot.scheduler import cycle
from tests.pipeline_helpers import EN_ITEMS, make_env, rss, write_watchlist


@pytest.mark.parametrize(("in_flight", "most"), [(2, 2), (64, 6)])
async def test_polls_hold_at_most_in_flight_bodies(feed_server, tmp_path, in_flight: int,
                                                   most: int) -> None:
    feeds = []
    for n in range(6):
        feed_server.set_feed(f"/f{n}.xml", rss(EN_ITEMS, f"Feed {n}"))
        feeds.append((f"Feed {n}", feed_server.url(f"/f{n}.xml")))
    app = make_env(tmp_path, write_watchlist(tmp_path / "wl", feeds)).app()
    app.pipeline.settings.in_flight = in_flight
    holding, peak, lock = [0], [0], threading.Lock()
    fetch, claim = app.pipeline.fetcher.fetch, app.store.claim

    async def fetching(*args, **kwargs):
        with lock:
            holding[0] += 1
            peak[0] = max(peak[0], holding[0])
        await asyncio.sleep(0.05)  # a slow network: the polls overlap when nothing bounds them
        return await fetch(*args, **kwargs)

    def claiming(*args, **kwargs):
        try:
            return claim(*args, **kwargs)
        finally:
            with lock:
                holding[0] -= 1

    app.pipeline.fetcher.fetch, app.store.claim = fetching, claiming
    try:
        outcomes = await cycle(app)
    finally:
        await app.aclose()
    assert [o.status for o in outcomes] == ["new"] * 6
    assert peak[0] == most
