"""The polling pipeline end to end, against a real HTTP server on 127.0.0.1 and SQLite."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.scheduler import cycle
from tests.feedserver import FeedServer
from tests.pipeline_helpers import (EN_ITEMS, EXPECTED_FIRST, FR_ITEMS, NOW, RU_ITEMS, make_env,
                                    rss, write_watchlist)


def three_feeds(server: FeedServer, tmp_path: Path):
    server.set_feed("/en.xml", rss(EN_ITEMS, "Example News"))
    server.set_feed("/fr.xml", rss(FR_ITEMS, "Presse Exemple"))
    server.set_feed("/ru.xml", rss(RU_ITEMS, "Вести Пример"))
    feeds = [("Example News", server.url("/en.xml")), ("Presse Exemple", server.url("/fr.xml")),
             ("Vesti", server.url("/ru.xml"))]
    return make_env(tmp_path, write_watchlist(tmp_path / "wl", feeds))


async def run_cycle(env, **kw):
    app = env.app(**kw)
    try:
        return app, await cycle(app)
    finally:
        await app.aclose()


async def test_first_cycle_alerts_exactly_the_expected_items(feed_server, tmp_path) -> None:
    env = three_feeds(feed_server, tmp_path)
    app, outcomes = await run_cycle(env)
    assert env.sink.pairs() == EXPECTED_FIRST
    assert len(env.sink.sent) == len(EXPECTED_FIRST)  # once each
    assert sorted(o.status for o in outcomes) == ["new", "new", "new"]
    ru = next(o for o in outcomes if o.feed.url.endswith("/ru.xml"))
    assert (ru.new_items, ru.silent) == (2, 1)  # the 3-day-old item is recorded, not alerted
    rows = app.store.recent_alerts(since=NOW - timedelta(days=1))
    assert {r.status for r in rows} == {"sent"} and len(rows) == 4


async def test_alert_carries_terms_spans_and_source(feed_server, tmp_path) -> None:
    env = three_feeds(feed_server, tmp_path)
    await run_cycle(env)
    alert = next(a for a in env.sink.sent if a.item.link.endswith("/fds2"))
    assert alert.match.terms == ("Force de Sibérie 2",)
    [hit] = alert.match.hits
    assert alert.item.title[hit.start:hit.end] == "Force de Sibérie 2"
    assert alert.item.source == "Presse Exemple"
    assert alert.item.summary == "Pékin hésite sur le prix du gaz."


async def test_second_cycle_uses_conditional_get_and_alerts_nothing(feed_server, tmp_path):
    env = three_feeds(feed_server, tmp_path)
    await run_cycle(env)
    _, outcomes = await run_cycle(env)
    assert [o.status for o in outcomes] == ["not-modified"] * 3
    assert len(env.sink.sent) == len(EXPECTED_FIRST)
    last = feed_server.requests("/en.xml")[-1]
    assert last["if-none-match"].startswith('"') and "if-modified-since" in last


async def test_restart_on_the_same_state_repeats_nothing(feed_server, tmp_path) -> None:
    env = three_feeds(feed_server, tmp_path)
    await run_cycle(env)
    fresh = {"guid": "en-4", "title": "Russia and China issue joint declaration on Arctic route",
             "link": "https://news.example/en/arctic", "desc": "A second text was signed."}
    feed_server.set_feed("/en.xml", rss(EN_ITEMS + [fresh], "Example News"))
    env.sink.sent.clear()
    await run_cycle(env)  # a new App on the same database: a restart
    assert env.sink.pairs() == {("joint-declaration", "https://news.example/en/arctic")}


async def test_regenerated_guids_and_tracking_links_do_not_realert(feed_server, tmp_path):
    env = three_feeds(feed_server, tmp_path)
    await run_cycle(env)
    moved = [dict(it, guid=f"new-{it['guid']}", link=it["link"] + "?utm_source=rss&fbclid=1")
             for it in EN_ITEMS]
    feed_server.set_feed("/en.xml", rss(moved, "Example News"))
    env.sink.sent.clear()
    _, outcomes = await run_cycle(env)
    assert env.sink.sent == []
    assert next(o for o in outcomes if o.feed.url.endswith("/en.xml")).new_items == 0


async def test_regenerated_guids_with_new_urls_same_titles_do_not_realert(feed_server, tmp_path):
    env = three_feeds(feed_server, tmp_path)
    await run_cycle(env)
    moved = [dict(it, guid=f"v2-{it['guid']}", link=it["link"].replace("/en/", "/en/2026/"))
             for it in EN_ITEMS]
    feed_server.set_feed("/en.xml", rss(moved, "Example News"))
    env.sink.sent.clear()
    await run_cycle(env)
    assert env.sink.sent == []


async def test_the_same_article_in_two_feeds_alerts_once(feed_server, tmp_path) -> None:
    feed_server.set_feed("/a.xml", rss(EN_ITEMS[:1], "Outlet A"))
    feed_server.set_feed("/b.xml", rss([dict(EN_ITEMS[0], guid="other-guid")], "Outlet B"))
    env = make_env(tmp_path, write_watchlist(
        tmp_path / "wl", [("A", feed_server.url("/a.xml")), ("B", feed_server.url("/b.xml"))]))
    await run_cycle(env)
    assert len(env.sink.sent) == 1


async def test_each_fault_is_isolated(feed_server, tmp_path) -> None:
    s = feed_server
    s.set_feed("/good.xml", rss(EN_ITEMS, "Example News"))
    s.set_status("/404.xml", 404)
    s.set_status("/500.xml", 500)
    s.set_status("/429.xml", 429, retry_after=3600)
    s.set_redirect("/loop-a.xml", "/loop-b.xml")
    s.set_redirect("/loop-b.xml", "/loop-a.xml")
    s.set_stall("/stall.xml")
    s.set_oversize("/huge.xml", 3 * 1024 * 1024)
    s.set_gzip_bomb("/bomb.xml", 64 * 1024 * 1024)
    s.set_garbage("/garbage.xml")
    s.set_html("/page.html")
    s.set_drop("/drop.xml")
    faulty = ["/404.xml", "/500.xml", "/429.xml", "/loop-a.xml", "/stall.xml", "/huge.xml",
              "/bomb.xml", "/garbage.xml", "/page.html", "/drop.xml"]
    feeds = [("Good", s.url("/good.xml"))] + [(p, s.url(p)) for p in faulty]
    env = make_env(tmp_path, write_watchlist(tmp_path / "wl", feeds),
                   max_body_bytes=2 * 1024 * 1024)
    app, outcomes = await run_cycle(env)
    assert env.sink.pairs() == {p for p in EXPECTED_FIRST if "news.example" in p[1]}
    by_path = {o.feed.name: o for o in outcomes}
    assert by_path["Good"].status == "new"
    for path in faulty:
        assert by_path[path].status == "error", path
        assert by_path[path].error, path
    errors = {p: by_path[p].error for p in faulty}
    assert "404" in errors["/404.xml"] and "500" in errors["/500.xml"]
    assert "429" in errors["/429.xml"]
    assert "redirect" in errors["/loop-a.xml"].lower()
    assert "exceeds" in errors["/huge.xml"] and "exceeds" in errors["/bomb.xml"]
    assert errors["/garbage.xml"].startswith("parse:")
    assert errors["/page.html"].startswith("parse:") and "HTML" in errors["/page.html"]
    assert by_path["/429.xml"].next_poll_at >= NOW + timedelta(seconds=3500)
    state = app.store.feed_state(s.url("/500.xml"))
    assert (state.error_streak, state.last_status) == (1, 500)


async def test_failures_back_off_and_recovery_resets_the_streak(feed_server, tmp_path) -> None:
    feed_server.set_status("/flaky.xml", 500)
    env = make_env(tmp_path, write_watchlist(tmp_path / "wl", [("F", feed_server.url("/flaky.xml"))]))
    delays = []
    for _ in range(3):
        _, [o] = await run_cycle(env)
        delays.append((o.next_poll_at - NOW).total_seconds())
    assert delays[0] < delays[1] < delays[2]  # 300 s, ~600 s, ~1200 s (minus jitter)
    feed_server.set_feed("/flaky.xml", rss(EN_ITEMS))
    app, [o] = await run_cycle(env)
    assert o.status == "new"
    assert app.store.feed_state(feed_server.url("/flaky.xml")).error_streak == 0


async def test_a_permanent_redirect_moves_the_feed(feed_server, tmp_path) -> None:
    feed_server.set_feed("/new.xml", rss(EN_ITEMS))
    feed_server.set_redirect("/old.xml", "/new.xml", status=301)
    env = make_env(tmp_path, write_watchlist(tmp_path / "wl", [("M", feed_server.url("/old.xml"))]))
    app, _ = await run_cycle(env)
    assert app.store.feed_state(feed_server.url("/old.xml")).url == feed_server.url("/new.xml")
    await run_cycle(env)
    assert feed_server.hits("/old.xml") == 1 and feed_server.hits("/new.xml") == 2


async def test_loopback_feeds_are_refused_by_default(feed_server, tmp_path) -> None:
    feed_server.set_feed("/en.xml", rss(EN_ITEMS))
    env = make_env(tmp_path, write_watchlist(tmp_path / "wl", [("L", feed_server.url("/en.xml"))]),
                   )
    env.settings = env.settings.model_copy(update={"allow_private_urls": False})
    _, [o] = await run_cycle(env)
    assert o.status == "error" and "VEILLE_ALLOW_PRIVATE_URLS" in o.error
    assert feed_server.hits("/en.xml") == 0


async def test_parsing_in_a_process_pool_gives_the_same_alerts(feed_server, tmp_path) -> None:
    env = three_feeds(feed_server, tmp_path)
    await run_cycle(env, processes=True)
    assert env.sink.pairs() == EXPECTED_FIRST


async def test_a_failing_sink_keeps_alerts_pending_for_retry(feed_server, tmp_path) -> None:
    from bot.deliver import DeliveryError

    env = three_feeds(feed_server, tmp_path)

    class Down:
        destination = "console"

        async def send(self, alert, topic):
            raise DeliveryError("console unavailable")

    good = env.sink
    env.sink = Down()
    app, _ = await run_cycle(env)
    rows = app.store.recent_alerts(since=NOW - timedelta(days=1))
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    env.sink = good
    app = env.app()
    try:
        # past the retry time (NOW is when the module was imported: minutes ago in a long run)
        later = lambda: datetime.now(timezone.utc) + timedelta(minutes=5)  # noqa: E731
        app.clock = later
        await app.deliver()
    finally:
        await app.aclose()
    assert good.pairs() == EXPECTED_FIRST


@pytest.mark.parametrize("hours", [0.5, 30])
async def test_first_poll_age_limit(feed_server, tmp_path, hours: float) -> None:
    item = dict(EN_ITEMS[0], age=hours)
    feed_server.set_feed("/one.xml", rss([item]))
    env = make_env(tmp_path, write_watchlist(tmp_path / "wl", [("One", feed_server.url("/one.xml"))]))
    await run_cycle(env)
    assert len(env.sink.sent) == (1 if hours < 24 else 0)


async def test_a_database_failure_while_claiming_loses_nothing(feed_server, tmp_path) -> None:
    """The database refuses the claim (a trigger raises inside SQLite): that feed's poll is an
    error with the database's reason, the other feeds go on, and the next poll stores it all."""
    import sqlite3

    env = three_feeds(feed_server, tmp_path)
    db = tmp_path / "state" / "veille.db"
    app = env.app()
    try:
        with sqlite3.connect(db) as conn:  # refuse French items, as a full disk would
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON items WHEN NEW.source = 'Presse Exemple' "
                         "BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END")
        app.store.sync_feeds(app.feeds())
        outcomes = {o.feed.name: o for o in await cycle(app)}
        fr = outcomes["Presse Exemple"]
        assert fr.status == "error" and fr.error.startswith("store: claiming items failed")
        assert "simulated write failure" in fr.error
        assert {o.status for n, o in outcomes.items() if n != "Presse Exemple"} == {"new"}
        assert ("power-of-siberia-2", "https://presse.example/fr/fds2") not in env.sink.pairs()
        state = app.store.feed_state(fr.feed.url)
        assert state.error_streak == 1 and state.etag is None  # rolled back: re-fetched next

        with sqlite3.connect(db) as conn:
            conn.execute("DROP TRIGGER refuse")
        again = {o.feed.name: o for o in await cycle(app)}
        assert again["Presse Exemple"].status == "new"
        assert env.sink.pairs() == EXPECTED_FIRST and len(env.sink.sent) == len(EXPECTED_FIRST)
    finally:
        await app.aclose()


async def test_stopping_lets_a_poll_in_flight_finish_and_deliver(feed_server, tmp_path) -> None:
    """SIGTERM's path (Runner.shutdown) while a poll waits on a slow feed: the poll is not
    cancelled; its alert is stored and delivered before run() returns."""
    from bot.scheduler import Runner

    feed_server.set_feed("/slow.xml", rss(EN_ITEMS[:1], "Example News"), delay=0.5)
    watchlists = write_watchlist(tmp_path / "wl", [("Slow", feed_server.url("/slow.xml"))])
    env = make_env(tmp_path, watchlists, startup_spread=0)
    app = env.app()
    stop = asyncio.Event()
    try:
        running = asyncio.create_task(Runner(app).run(stop))
        while not feed_server.requests("/slow.xml"):  # the poll is in flight
            await asyncio.sleep(0.01)
        stop.set()
        await running
        assert env.sink.pairs() == {("power-of-siberia-2", "https://news.example/en/pos2-price")}
    finally:
        await app.aclose()
