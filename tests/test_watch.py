"""Watching the watch: failing feeds, silent feeds and quiet topics are told to the operators
once when they begin and once when they end, across restarts and instances, with an injected
clock (no sleeps); on a real SQLite file and the machine's PostgreSQL, and through the fake
Bot API to an admin's chat."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import telegram

from bot.config import load_settings
from bot.i18n import translator
from bot.model import FeedSpec, Hit, Item, Match, Topic
from bot.store import FetchRecord, Store
from bot.stories import StoryIndex
from bot.watch import (FEED_FAILING, FEED_SILENT, TOPIC_QUIET, Condition, FeedWatch, Rules,
                       TopicWatch, evaluate, render, silence_limit, usual_gap)
from bot.watcher import LEASE, RETRY, Watcher
from tests.fakebot import FakeBotAPI, fake_bot  # noqa: F401  (fake_bot is a fixture)
from tests.test_store import db_url, pg_database  # noqa: F401  (fixtures)

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
DAY = timedelta(days=1)
RULES = Rules()  # 6 h failing; silent after max(24 h, 5 x the usual gap); 5 stories, 72 h quiet
WIRE = "https://wire.example.net/energy.rss"
GAZETTE = "https://gazette.example.ru/rss/economy"
NEVER = "https://broken.example.org/feed.xml"
ADMIN = 424242


# ---------------------------------------------------------------- the pure part


def fw(url: str = WIRE, *, failing: datetime | None = None, latest: datetime | None = None,
       arrivals: tuple[datetime, ...] = ()) -> FeedWatch:
    return FeedWatch(url, "Energy Wire", failing, "HTTP 503", latest, arrivals)


def every(gap: timedelta, n: int, end: datetime) -> tuple[datetime, ...]:
    return tuple(end - gap * k for k in reversed(range(n)))


@pytest.mark.parametrize("arrivals, expected", [
    ((), None),
    (every(H, 3, T0), None),  # two gaps: the rhythm is not known yet
    (every(H, 4, T0), H),
    (every(H, 4, T0) + every(H, 4, T0), H),  # a poll's batch shares one time: counted once
    ((T0, T0 + H, T0 + 2 * H, T0 + 10 * H), H),  # the median, not the mean
    ((T0, T0 + H, T0 + 3 * H, T0 + 6 * H, T0 + 10 * H), 2.5 * H),  # even count: the middle two
])
def test_usual_gap_is_the_median_gap_between_distinct_arrivals(arrivals, expected) -> None:
    assert usual_gap(arrivals) == expected


@pytest.mark.parametrize("gap, expected", [
    (H, DAY),  # 5 h < 24 h: the floor
    (10 * H, 50 * H),  # 5 x the usual gap
    (None, timedelta(days=14)),  # rhythm unknown: silent for the whole window
])
def test_silence_limit(gap: timedelta | None, expected: timedelta) -> None:
    arrivals = every(gap, 6, T0) if gap else (T0,)
    assert silence_limit(fw(latest=T0, arrivals=arrivals), RULES) == expected


@pytest.mark.parametrize("feed, now, kinds", [
    (fw(failing=T0), T0 + 6 * H - timedelta(seconds=1), []),
    (fw(failing=T0), T0 + 6 * H, [FEED_FAILING]),
    (fw(latest=T0, arrivals=every(H, 6, T0)), T0 + DAY - timedelta(seconds=1), []),
    (fw(latest=T0, arrivals=every(H, 6, T0)), T0 + DAY, [FEED_SILENT]),
    (fw(latest=None), T0 + 90 * DAY, []),  # never had an item: not silent
    (fw(failing=T0, latest=T0 - 30 * DAY), T0 + 5 * H, []),  # failing, not yet told: not silent
    (fw(latest=T0 - 13 * DAY, arrivals=(T0 - 13 * DAY,)), T0, []),  # sparse: 14 days
    (fw(latest=T0 - 14 * DAY, arrivals=(T0 - 14 * DAY,)), T0, [FEED_SILENT]),
])
def test_feed_conditions(feed: FeedWatch, now: datetime, kinds: list[str]) -> None:
    assert [c.kind for c in evaluate([feed], [], [], now, RULES).raised] == kinds


@pytest.mark.parametrize("stories, latest_ago, kinds", [
    (5, 72 * H, [TOPIC_QUIET]),
    (5, 72 * H - timedelta(seconds=1), []),
    (4, 30 * DAY, []),  # not a topic that usually has coverage
])
def test_topic_conditions(stories: int, latest_ago: timedelta, kinds: list[str]) -> None:
    topic = TopicWatch("pos2", "Power of Siberia 2", T0 - latest_ago, stories)
    assert [c.kind for c in evaluate([], [topic], [], T0, RULES).raised] == kinds


def test_a_raised_condition_ends_only_by_what_ends_it() -> None:
    silent = Condition(FEED_SILENT, WIRE, "Energy Wire", T0)
    # the rhythm changed (now too few arrivals to know it) but nothing new came: it lasts
    assert evaluate([fw(latest=T0)], [], [silent], T0 + 2 * DAY, RULES).cleared == ()
    back = evaluate([fw(latest=T0 + DAY)], [], [silent], T0 + DAY, RULES)
    assert back.cleared == (silent,) and back.raised == ()
    failing = Condition(FEED_FAILING, WIRE, "Energy Wire", T0)
    assert evaluate([fw(failing=T0)], [], [failing], T0 + DAY, RULES).raised == ()
    assert evaluate([fw()], [], [failing], T0 + DAY, RULES).cleared == (failing,)
    quiet = Condition(TOPIC_QUIET, "pos2", "Power of Siberia 2", T0, count=6)
    still = TopicWatch("pos2", "Power of Siberia 2", T0, 2)  # fewer stories in the window now
    assert evaluate([], [still], [quiet], T0 + 20 * DAY, RULES) == evaluate([], [], [], T0, RULES)
    again = TopicWatch("pos2", "Power of Siberia 2", T0 + 4 * DAY, 3)
    assert evaluate([], [again], [quiet], T0 + 4 * DAY, RULES).cleared == (quiet,)
    gone = evaluate([], [], [silent, quiet], T0, RULES)  # removed from the watchlist
    assert gone.forgotten == (silent.key, quiet.key) and gone.cleared == ()


def test_a_check_turned_off_raises_nothing() -> None:
    rules = Rules.from_settings(load_settings(None, watch_failing_hours=0,
                                              watch_silence_hours=0, watch_topic_quiet_hours=0))
    feeds = [fw(failing=T0 - 30 * DAY), fw(GAZETTE, latest=T0 - 30 * DAY)]
    topics = [TopicWatch("pos2", "Power of Siberia 2", T0 - 30 * DAY, 50)]
    assert evaluate(feeds, topics, [], T0, rules).raised == ()
    assert Rules.from_settings(load_settings(None)) == RULES  # the documented defaults


def test_notices_render_exactly_in_english_and_french_with_feed_text_escaped() -> None:
    failing = Condition(FEED_FAILING, "https://a.example/rss?x=1&y=2", "Oil & <Gas> Daily",
                        T0, detail="HTTP 503 <Service Unavailable>")
    assert render(failing, cleared=False, now=T0 + 7 * H, t=translator("en")) == (
        "⚠️ <b>Feed failing: Oil &amp; &lt;Gas&gt; Daily</b>\n"
        "https://a.example/rss?x=1&amp;y=2\n"
        "Every poll has failed since Mar 2, 2026, 08:00 UTC (7 hours).\n"
        "Last error: HTTP 503 &lt;Service Unavailable&gt;")
    silent = Condition(FEED_SILENT, WIRE, "Energy Wire", T0, usual=2 * H)
    assert render(silent, cleared=False, now=T0 + 2 * DAY, t=translator("fr"),
                  tz="Europe/Paris") == (
        "🔇 <b>Flux muet : Energy Wire</b>\n" + WIRE + "\n"
        "Aucun nouvel article depuis le 2 mars 2026, 09:00 CET (2\xa0jours).\n"
        "D’habitude, il en apporte un toutes les 2\xa0heures.")
    quiet = Condition(TOPIC_QUIET, "pos2", "Power of Siberia 2", T0, count=6)
    assert render(quiet, cleared=True, now=T0 + 4 * DAY, t=translator("en")) == (
        "✅ <b>Topic covered again: Power of Siberia 2</b>\n"
        "A new story after 4 days without one.")


# ---------------------------------------------------------------- the store and the watcher


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Told(logging.Handler):
    """The watch's warning lines (the notices without Telegram or admins)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        f = getattr(record, "fields", {})
        self.lines.append((f.get("condition"), f.get("state") or record.getMessage(),
                           f.get("feed") or f.get("topic") or f.get("error")))


@pytest.fixture
def told() -> Iterator[Told]:
    handler, logger = Told(), logging.getLogger("veille.watch")
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


FEEDS = (FeedSpec(WIRE, "Energy Wire"), FeedSpec(GAZETTE, "Gazette économique"),
         FeedSpec(NEVER, "Broken Herald"))
TOPICS = (Topic("pos2", "Power of Siberia 2", "pos2", None),)
HIT = (Hit('"Power of Siberia 2"', "title", 0, 18, "Power of Siberia 2"),)
HEADLINES = [  # one story each: they are days apart
    "Power of Siberia 2: Gazprom says route survey in Mongolia is complete",
    "Power of Siberia 2 talks stall again over the gas price formula",
    "Power of Siberia 2 : Pékin demande un prix proche du marché intérieur russe",
    "Power of Siberia 2: Монголия утвердила маршрут газопровода",
    "Power of Siberia 2 financing: Chinese banks weigh a yuan loan",
    "Power of Siberia 2: Erdgasleitung rückt nach Gipfeltreffen näher",
]


def watcher(store: Store, clock: Clock, **kw: object) -> Watcher:
    return Watcher(store=store, rules=RULES, feeds=lambda: FEEDS, topics=lambda: TOPICS,
                   clock=clock, **kw)  # type: ignore[arg-type]


def new_items(store: Store, url: str, when: datetime, n: int = 2, *, topic: str | None = None,
              title: str = "Grid operators add storage", index: StoryIndex | None = None) -> None:
    stamp = f"{url}-{when.isoformat()}"
    batch = [Item(feed=url, guid=f"{stamp}-{k}", url=f"{url}/a/{when:%m%d%H%M}/{k}",
                  link=f"{url}/a/{when:%m%d%H%M}/{k}", title=f"{title} ({when:%d %b %H:%M}, {k})",
                  summary="Two sentences of lead. Nothing more.", published=when,
                  source="Wire") for k in range(n)]
    found = {i.guid: [Match(topic, HIT)] for i in batch} if topic else {}
    store.claim(url, batch, found, now=when, alert_cutoff=None, stories=index)


def poll(store: Store, url: str, when: datetime, *, ok: bool) -> None:
    store.record(url, FetchRecord(status=200 if ok else 503, next_poll_at=None,
                                  error=None if ok else "HTTP 503 from the origin"), now=when)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    s.sync_feeds(FEEDS)
    yield s
    s.close()


def history(store: Store) -> None:
    """Three days of a feed bringing items every 2 hours until T0; the Gazette polled fine."""
    for when in every(2 * H, 36, T0):
        new_items(store, WIRE, when)
    poll(store, GAZETTE, T0, ok=True)


async def test_a_failing_feed_is_told_once_and_its_recovery_once(store: Store, told: Told) -> None:
    clock = Clock(T0)
    history(store)
    w = watcher(store, clock)
    for hours in range(1, 9):  # the Gazette fails every hour from T0 + 1 h
        clock.now = T0 + hours * H
        poll(store, GAZETTE, clock.now, ok=False)
        await w.check()
        expected = [] if hours < 6 else [(FEED_FAILING, "begun", "Gazette économique")]
        assert [x for x in told.lines if x[2] == "Gazette économique"] == expected, hours
    clock.now += H / 2
    poll(store, GAZETTE, clock.now, ok=True)
    await w.check()
    await w.check()
    gazette = [x for x in told.lines if x[2] == "Gazette économique"]
    assert gazette == [(FEED_FAILING, "begun", "Gazette économique"),
                       (FEED_FAILING, "ended", "Gazette économique")]
    assert store.watch_active() == []


async def test_a_silent_feed_is_told_once_and_its_next_item_once(store: Store,
                                                                 told: Told) -> None:
    clock = Clock(T0)
    history(store)
    w = watcher(store, clock)
    for ago in (1 * H, 23 * H, 24 * H, 25 * H, 48 * H):
        clock.now = T0 + ago
        poll(store, WIRE, clock.now, ok=True)  # answers, but nothing new
        await w.check()
    assert told.lines == [(FEED_SILENT, "begun", "Energy Wire")]
    (active,) = store.watch_active()
    assert (active.since, active.usual) == (T0, 2 * H)
    clock.now = T0 + 49 * H
    new_items(store, WIRE, clock.now)
    await w.check()
    clock.now += H / 6
    await w.check()
    assert told.lines == [(FEED_SILENT, "begun", "Energy Wire"),
                          (FEED_SILENT, "ended", "Energy Wire")]


async def test_a_quiet_topic_is_told_once_and_its_next_story_once(store: Store,
                                                                  told: Told) -> None:
    index = StoryIndex()
    for k, headline in enumerate(HEADLINES):  # a story every two days until T0
        new_items(store, GAZETTE, T0 - (10 - 2 * k) * DAY, n=1, topic="pos2", title=headline,
                  index=index)
    clock = Clock(T0)
    w = watcher(store, clock)
    for ago in (71 * H, 72 * H, 73 * H, 6 * DAY):
        clock.now = T0 + ago
        await w.check()
    assert told.lines == [(TOPIC_QUIET, "begun", "Power of Siberia 2")]
    clock.now = T0 + 6 * DAY + H
    new_items(store, WIRE, clock.now, n=1, topic="pos2", index=index,
              title="Power of Siberia 2 back on the agenda at the Beijing summit")
    await w.check()
    await w.check()
    assert told.lines[1:] == [(TOPIC_QUIET, "ended", "Power of Siberia 2")]


async def test_a_feed_that_never_succeeded_is_told_after_the_watcher_saw_it_fail_long_enough(
        store: Store, told: Told) -> None:
    clock = Clock(T0)
    w = watcher(store, clock)
    for hours in (0, 3, 6):
        clock.now = T0 + hours * H
        poll(store, NEVER, clock.now, ok=False)
        await w.check()
    assert told.lines == [(FEED_FAILING, "begun", "Broken Herald")]
    (active,) = store.watch_active()
    assert active.since == T0 and active.detail == "HTTP 503 from the origin"


async def test_nothing_is_told_again_after_a_restart(db_url: str, told: Told) -> None:  # noqa: F811
    clock = Clock(T0)
    first = Store.open(db_url)
    first.sync_feeds(FEEDS)
    history(first)
    clock.now = T0 + 25 * H
    await watcher(first, clock).check()
    first.close()
    assert told.lines == [(FEED_SILENT, "begun", "Energy Wire")]
    again = Store.open(db_url)  # a new process: a new store and a new watcher
    clock.now = T0 + 26 * H
    await watcher(again, clock).check()
    assert len(told.lines) == 1
    new_items(again, WIRE, T0 + 27 * H)
    clock.now = T0 + 27 * H
    await watcher(again, clock).check()
    again.close()
    assert told.lines[1:] == [(FEED_SILENT, "ended", "Energy Wire")]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_instances_on_one_database_tell_each_condition_once(db_url: str,  # noqa: F811
                                                                     told: Told) -> None:
    clock = Clock(T0)
    a, b = Store.open(db_url), Store.open(db_url)
    a.sync_feeds(FEEDS)
    history(a)
    for hours in range(1, 8):
        poll(a, GAZETTE, T0 + hours * H, ok=False)
    clock.now = T0 + 25 * H
    for _ in range(3):  # both look at once, several times
        await asyncio.gather(watcher(a, clock).check(), watcher(b, clock).check())
    assert sorted(told.lines) == [(FEED_FAILING, "begun", "Gazette économique"),
                                  (FEED_SILENT, "begun", "Energy Wire")]
    new_items(b, WIRE, T0 + 26 * H)
    poll(b, GAZETTE, T0 + 26 * H, ok=True)
    clock.now = T0 + 26 * H
    for _ in range(3):
        await asyncio.gather(watcher(a, clock).check(), watcher(b, clock).check())
    assert sorted(told.lines[2:]) == [(FEED_FAILING, "ended", "Gazette économique"),
                                      (FEED_SILENT, "ended", "Energy Wire")]
    a.close()
    b.close()


async def test_a_notice_leased_by_an_instance_that_died_is_sent_by_another_later(
        store: Store, told: Told) -> None:
    clock = Clock(T0 + 25 * H)
    history(store)
    dead = watcher(store, clock)
    feeds = await dead._feed_watch(clock.now)
    store.watch_record(evaluate(feeds, [], [], clock.now, RULES), now=clock.now)
    assert store.watch_lease(now=clock.now, until=clock.now + LEASE)  # and then it dies
    alive = watcher(store, clock)
    await alive.check()
    assert told.lines == []  # leased by the dead one: not sent twice
    clock.now += LEASE
    await alive.check()
    assert told.lines == [(FEED_SILENT, "begun", "Energy Wire")]


async def test_admins_are_told_in_their_chat_in_their_language_and_a_failed_send_is_retried(
        store: Store, fake_bot: FakeBotAPI) -> None:  # noqa: F811
    fake_bot.add_chat(ADMIN, "private", first_name="Opérateur", language_code="fr")
    store.upsert_subscriber(ADMIN, kind="private", now=T0, user_lang="fr")
    history(store)
    clock = Clock(T0 + 25 * H)
    async with telegram.Bot(fake_bot.token, base_url=fake_bot.base_url) as bot:
        w = watcher(store, clock, bot=bot, admins=(ADMIN,))
        fake_bot.fail("sendMessage", chat_id=ADMIN, error="server_error", times=1)
        await w.check()
        assert fake_bot.sent_count(ADMIN) == 0
        clock.now += RETRY / 2
        await w.check()  # not due yet
        assert fake_bot.sent_count(ADMIN) == 0
        clock.now += RETRY / 2
        await w.check()
        await w.check()
        assert [m.text.splitlines()[0] for m in fake_bot.messages(ADMIN)] == [
            "🔇 Flux muet : Energy Wire"]
        new_items(store, WIRE, clock.now)
        await w.check()
    texts = [m.text for m in fake_bot.messages(ADMIN)]
    assert len(texts) == 2 and texts[1].startswith("✅ Flux de nouveau actif : Energy Wire\n")
    assert "Un nouvel article est arrivé après" in texts[1]


async def test_a_real_app_polling_a_failing_source_tells_it_with_its_settings(
        tmp_path, told: Told) -> None:
    from dataclasses import replace

    from bot.scheduler import cycle
    from tests.feedserver import FeedServer
    from tests.pipeline_helpers import make_env, rss, write_watchlist

    with FeedServer() as server:
        server.set_feed("/ok.xml", rss([{"guid": "a1", "title": "Grid tariffs rise again",
                                         "link": "https://news.example/a1"}]))
        server.set_status("/down.xml", 503)
        watchlists = write_watchlist(tmp_path / "watchlists", [
            ("Steady Source", server.url("/ok.xml")), ("Down Source", server.url("/down.xml"))])
        env = make_env(tmp_path, watchlists, watch_failing_hours=1.5, admins=(ADMIN,))
        app = env.app()
        try:
            await cycle(app)
            w = Watcher.for_app(app)  # no token: the log, whatever VEILLE_ADMINS says
            start = app.clock()
            w = replace(w, clock=Clock(start))
            await w.check()
            w.clock.now = start + 1.5 * H
            raised = (await w.check()).raised
            await w.check()
            states = {f.name: (f.error_streak, f.last_success_at, f.last_error)
                      for f in app.store.feeds_overview()}
        finally:
            await app.aclose()
    assert [(c.kind, c.name) for c in raised] == [(FEED_FAILING, "Down Source")], states
    assert told.lines == [(FEED_FAILING, "begun", "Down Source")]
