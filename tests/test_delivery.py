"""The Telegram delivery worker against the fake Bot API, through the real PTB client.

Fan-out from the outbox, per-chat queues, pacing, and every error path (flood wait, 5xx,
blocked, migrated group, entity errors, other 400s), asserting what Telegram received and
what the deliveries and subscribers end up as. The store is a real SQLite file.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.model import FeedSpec, Hit, Item, Match, Topic
from bot.store import Store
from bot.telegram.client import build_application
from bot.telegram.delivery import DeliveryWorker
from bot.telegram.pacing import Pacer
from tests.fakebot import FakeBotAPI, fake_bot  # noqa: F401  (fake_bot is a fixture)

FEED = "https://news.example/feed.xml"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
TOPICS = {
    "pos2": Topic("pos2", "Power of Siberia 2", "x", None, context="Gas pipeline via Mongolia.",
                  priority="high"),
    "sanctions": Topic("sanctions", "Secondary sanctions", "x", None),
}
HEADLINES = [
    ("Gazprom and CNPC edge closer on Power of Siberia 2 price", "pos2"),
    ("Pékin et Moscou relancent Force de Sibérie 2", "pos2"),
    ("Treasury lists Hong Kong traders supplying drone parts to Russia", "sanctions"),
    ("Минфин США ввёл санкции против китайских поставщиков", "sanctions"),
]


class Clock:
    """A settable UTC clock for the store's timestamps (pacing keeps real time)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path}/veille.db")
    from bot.model import FeedSpec

    s.sync_feeds([FeedSpec(FEED, "Test feed")])
    yield s
    s.close()


def claim(store: Store, n: int, clock: Clock, topics: tuple[str, ...] = ()) -> list[int]:
    """Queue n new alerts for Telegram (topics cycle over HEADLINES); their alert ids."""
    items, matches = [], {}
    start = store.alert_counts()["pending"] + store.alert_counts()["sent"]
    for k in range(n):
        title, topic = HEADLINES[(start + k) % len(HEADLINES)]
        topic = topics[k % len(topics)] if topics else topic
        guid = f"g{start + k}"
        items.append(Item(FEED, guid, f"https://news.example/{guid}",
                          f"https://news.example/{guid}", f"{title} ({guid})",
                          "Negotiators met again; no price was agreed.", published=clock()))
        word = title.split()[0]
        matches[guid] = [Match(topic, (Hit(word, "title", 0, len(word), word),))]
    result = store.claim(FEED, items, matches, now=clock(), alert_cutoff=None,
                         destinations=("telegram",))
    return [a.id for a in result.alerts]


def make_worker(store: Store, fake: FakeBotAPI, clock: Clock, *, pacer: Pacer | None = None,
                destinations=None, topics=TOPICS):
    pacer = pacer or Pacer(chat_interval=0.0)
    application = build_application(fake.token, fake.base_url, rate_limiter=pacer,
                                    read_timeout=2.0)
    worker = DeliveryWorker(store=store, bot=application.bot, pacer=pacer,
                            topics=topics.get, destinations=lambda: destinations or {},
                            clock=clock)
    return worker, application


def subscribe(store: Store, fake: FakeBotAPI, chat: int, topics: tuple[str, ...], clock: Clock,
              kind: str = "private") -> None:
    fake.add_chat(chat, kind=kind)
    store.upsert_subscriber(chat, kind=kind, now=clock())
    for topic in topics:
        store.subscribe(chat, topic, now=clock())


def statuses(store: Store) -> dict[str, int]:
    return {k: v for k, v in store.delivery_counts().items() if v}


async def run(worker: DeliveryWorker, application, **kw) -> None:
    await application.bot.initialize()
    try:
        await worker.drain_all(**kw)
    finally:
        await application.bot.shutdown()


# ---------------------------------------------------------------- the normal path


async def test_each_subscriber_gets_its_topics_once_and_rows_keep_the_message_ids(
        store, fake_bot):
    clock = Clock()
    subscribe(store, fake_bot, 101, ("pos2",), clock)
    subscribe(store, fake_bot, 102, ("pos2", "sanctions"), clock)
    subscribe(store, fake_bot, 103, (), clock)
    claim(store, 4, clock)
    worker, app = make_worker(store, fake_bot, clock)
    await run(worker, app)
    assert len(fake_bot.messages(101)) == 2
    assert len(fake_bot.messages(102)) == 4
    assert fake_bot.messages(103) == []
    assert statuses(store) == {"sent": 6}
    rows = store.deliveries_of(range(1, 5))
    sent_ids = {(r.chat, r.message_id) for rs in rows.values() for r in rs}
    assert sent_ids == {(str(m.chat_id), m.message_id)
                        for c in (101, 102) for m in fake_bot.messages(c)}
    # a second drain (or a second fan-out) sends nothing again
    await run(worker, app)
    assert fake_bot.sent_count() == 6


async def test_a_subscription_counts_from_its_creation_and_muted_topics_are_skipped(
        store, fake_bot):
    clock = Clock()
    claim(store, 2, clock)  # before anyone subscribed
    clock.now += timedelta(minutes=1)
    subscribe(store, fake_bot, 201, ("pos2", "sanctions"), clock)
    store.mute(201, "sanctions", until=clock.now + timedelta(hours=24))
    clock.now += timedelta(minutes=1)
    claim(store, 4, clock)
    worker, app = make_worker(store, fake_bot, clock)
    await run(worker, app)
    texts = [m.text for m in fake_bot.messages(201)]
    assert len(texts) == 2 and all("Power of Siberia 2" in t for t in texts)


async def test_the_message_is_html_with_link_buttons_and_previews_off(store, fake_bot):
    clock = Clock()
    subscribe(store, fake_bot, 301, ("pos2",), clock)
    claim(store, 1, clock)
    worker, app = make_worker(store, fake_bot, clock)
    await run(worker, app)
    (message,) = fake_bot.messages(301)
    assert message.parse_mode == "HTML"
    assert any(e["type"] == "text_link" and e["url"] == "https://news.example/g0"
               for e in message.entities)
    assert [b["callback_data"] for b in message.buttons()] == ["mute:pos2", "unsub:pos2"]
    assert message.link_preview_options == {"is_disabled": True}


async def test_destination_chats_get_the_topic_without_subscribers_in_their_thread(
        store, fake_bot):
    clock = Clock()
    fake_bot.add_chat(-1001, kind="channel", username="veille_pos2")
    fake_bot.add_chat(-1002, kind="supergroup", is_forum=True, topics=[7])
    claim(store, 2, clock, topics=("pos2",))
    worker, app = make_worker(store, fake_bot, clock, destinations={
        "pos2": (("@veille_pos2", 0), ("-1002", 7))})
    await run(worker, app)
    assert len(fake_bot.messages(-1001)) == 2
    assert [m.message_thread_id for m in fake_bot.messages(-1002)] == [7, 7]
    assert all(m.buttons() == [] for m in fake_bot.messages(-1001))  # no subscriber buttons


# ---------------------------------------------------------------- errors


async def test_a_flood_wait_delays_only_that_chat_and_the_row_is_sent_after_it(
        store, fake_bot):
    clock = Clock()
    subscribe(store, fake_bot, 401, ("pos2",), clock)
    subscribe(store, fake_bot, 402, ("pos2",), clock)
    claim(store, 2, clock, topics=("pos2",))
    fake_bot.fail("sendMessage", chat_id=401, error="retry_after", retry_after=1)
    worker, app = make_worker(store, fake_bot, clock)
    await app.bot.initialize()
    await worker.drain()
    await worker.wait_idle()
    # the other chat got everything while 401 waits; 401 got nothing yet
    assert len(fake_bot.messages(402)) == 2 and fake_bot.messages(401) == []
    assert statuses(store) == {"sent": 2, "pending": 2}
    clock.now += timedelta(seconds=2)  # the wait Telegram asked for has passed
    await worker.drain_all()
    await app.bot.shutdown()
    assert len(fake_bot.messages(401)) == 2
    assert [m.text for m in fake_bot.messages(401)] == [m.text for m in fake_bot.messages(402)]
    assert statuses(store) == {"sent": 4}


async def test_server_errors_are_retried_with_backoff_and_the_row_stays_pending(
        store, fake_bot):
    clock = Clock()
    subscribe(store, fake_bot, 501, ("pos2",), clock)
    claim(store, 1, clock, topics=("pos2",))
    fake_bot.fail("sendMessage", chat_id=501, error="server_error", times=2)
    worker, app = make_worker(store, fake_bot, clock)
    await app.bot.initialize()
    await worker.drain()
    await worker.wait_idle()
    assert statuses(store) == {"pending": 1}
    due = store.next_delivery_at()
    assert due is not None and due > clock.now + timedelta(seconds=3)  # backed off
    clock.now = due
    await worker.drain()
    await worker.wait_idle()
    assert statuses(store) == {"pending": 1}
    second = store.next_delivery_at()
    assert second - clock.now > (due - T0) * 1.3  # the backoff grew
    clock.now = second
    await worker.drain_all()
    await app.bot.shutdown()
    assert len(fake_bot.messages(501)) == 1
    (row,) = store.deliveries_of([1])[1]
    assert row.status == "sent" and row.attempts == 3


@pytest.mark.parametrize("fault", ["blocked", "kicked", "deactivated", "not_found"])
async def test_a_chat_that_removed_the_bot_is_deactivated_and_its_rows_dropped(
        store, fake_bot, fault):
    clock = Clock()
    subscribe(store, fake_bot, 601, ("pos2", "sanctions"), clock)
    subscribe(store, fake_bot, 602, ("pos2",), clock)
    claim(store, 4, clock)
    fake_bot.fail("sendMessage", chat_id=601, error=fault, times=None)
    worker, app = make_worker(store, fake_bot, clock)
    await run(worker, app)
    sub = store.subscriber(601)
    assert sub is not None and not sub.active and sub.dropped == 4
    assert sub.inactive_reason
    assert len(fake_bot.messages(602)) == 2
    assert len(fake_bot.calls_to("sendMessage", 601)) == 1  # no further send tried
    # later alerts are not even fanned out to it
    claim(store, 4, clock)
    await run(worker, app)
    assert len(fake_bot.calls_to("sendMessage", 601)) == 1
    assert statuses(store) == {"sent": 4, "dropped": 4}


async def test_a_group_upgraded_to_a_supergroup_follows_with_its_rows(store, fake_bot):
    clock = Clock()
    subscribe(store, fake_bot, -7001, ("pos2",), clock, kind="group")
    claim(store, 2, clock, topics=("pos2",))
    new_id = fake_bot.migrate_chat(-7001)
    worker, app = make_worker(store, fake_bot, clock)
    await run(worker, app)
    assert len(fake_bot.messages(new_id)) == 2
    assert store.subscriber(-7001) is None
    moved = store.subscriber(new_id)
    assert moved is not None and moved.kind == "supergroup" and moved.active
    assert [s.topic for s in store.subscriptions(new_id)] == ["pos2"]
    assert statuses(store) == {"sent": 2}
    claim(store, 1, clock, topics=("pos2",))
    await run(worker, app)
    assert len(fake_bot.messages(new_id)) == 3


async def test_an_entity_error_is_resent_once_as_plain_text(store, fake_bot, caplog):
    clock = Clock()
    subscribe(store, fake_bot, 801, ("pos2",), clock)
    claim(store, 1, clock, topics=("pos2",))
    fake_bot.fail("sendMessage", chat_id=801, error="bad_request",
                  description="Bad Request: can't parse entities: Unsupported start tag "
                              "\"div\" at byte offset 12")
    worker, app = make_worker(store, fake_bot, clock)
    await run(worker, app)
    (message,) = fake_bot.messages(801)
    assert message.parse_mode is None and "Power of Siberia 2" in message.text
    assert statuses(store) == {"sent": 1}
    assert any(r.getMessage() == "rendering-bug" for r in caplog.records)


async def test_another_bad_request_fails_that_row_with_its_reason_and_the_next_goes(
        store, fake_bot):
    clock = Clock()
    subscribe(store, fake_bot, 901, ("pos2",), clock)
    claim(store, 2, clock, topics=("pos2",))
    fake_bot.fail("sendMessage", chat_id=901, error="bad_request",
                  description="Bad Request: message thread not found")
    worker, app = make_worker(store, fake_bot, clock)
    await run(worker, app)
    rows = [r for rs in store.deliveries_of([1, 2]).values() for r in rs]
    assert sorted(r.status for r in rows) == ["failed", "sent"]
    failed = next(r for r in rows if r.status == "failed")
    assert "thread not found" in failed.last_error.lower()
    assert len(fake_bot.messages(901)) == 1


# ---------------------------------------------------------------- limits


async def test_strict_limits_a_burst_to_fifty_chats_and_a_group_without_a_single_429(
        store, fake_bot):
    strict = FakeBotAPI(strict=True).start()
    try:
        clock = Clock()
        chats = list(range(1001, 1051))
        for chat in chats:
            subscribe(store, strict, chat, ("pos2", "sanctions"), clock)
        subscribe(store, strict, -5001, ("pos2",), clock, kind="supergroup")
        claim(store, 4, clock)  # 4 alerts x 50 chats = 200 messages, + 2 to the group
        worker, app = make_worker(store, strict, clock, pacer=Pacer())
        await run(worker, app)
        assert strict.too_many_requests == 0
        assert all(len(strict.messages(c)) == 4 for c in chats)
        assert len(strict.messages(-5001)) == 2
        assert statuses(store) == {"sent": 202}
    finally:
        strict.stop()


# ---------------------------------------------------------------- story updates


async def test_a_sent_alert_is_edited_when_other_outlets_join_its_story_paced_and_once(
        store, fake_bot):
    from bot.stories import StoryIndex

    clock = Clock()
    index = StoryIndex()
    subscribe(store, fake_bot, 1501, ("pos2",), clock)
    title = "Gazprom and CNPC sign Power of Siberia 2 supply contract in Beijing"
    lead = "The 30-year deal covers 50 billion cubic metres a year through Mongolia."

    def outlet(guid: str, source: str) -> None:
        feed = f"https://{source.lower()}.example/rss"  # each outlet's own feed
        store.sync_feeds([FeedSpec(feed, source)])
        item = Item(feed, guid, f"https://{source.lower()}.example/{guid}",
                    f"https://{source.lower()}.example/{guid}", title, lead, published=clock(),
                    source=source, lang="en")
        hit = Hit("Power of Siberia 2", "title", 25, 43, "Power of Siberia 2")
        store.claim(feed, [item], {guid: [Match("pos2", (hit,))]}, now=clock(),
                    alert_cutoff=None, destinations=("telegram",), stories=index)

    outlet("a", "Reuters")
    worker, app = make_worker(store, fake_bot, clock)
    await app.bot.initialize()
    await worker.drain_all()
    (first,) = fake_bot.messages(1501)
    assert "also" not in first.text
    clock.now += timedelta(minutes=1)
    outlet("b", "TASS")
    outlet("c", "Caixin")
    await worker.drain_all()
    assert len(fake_bot.messages(1501)) == 1  # one alert per story
    assert await worker.refresh_stories() == 0  # too soon after sending
    clock.now += timedelta(minutes=5)
    assert await worker.refresh_stories() == 1
    (message,) = fake_bot.messages(1501)
    assert message.edited == 1 and "TASS" in message.text and "Caixin" in message.text
    assert message.buttons() == first.buttons()
    assert await worker.refresh_stories() == 0  # nothing new: no edit
    # a message the user deleted is not retried until its story changes again
    clock.now += timedelta(minutes=5)
    outlet("d", "Kommersant")
    await app.bot.delete_message(1501, message.message_id)
    assert await worker.refresh_stories() == 0
    assert await worker.refresh_stories() == 0
    assert len(fake_bot.calls_to("editMessageText", 1501)) == 2
    await app.bot.shutdown()


async def test_sends_errors_and_429s_are_counted_in_the_metrics(store, fake_bot):
    from bot.metrics import Metrics

    clock = Clock()
    subscribe(store, fake_bot, 1601, ("pos2",), clock)
    claim(store, 2, clock, topics=("pos2",))
    fake_bot.fail("sendMessage", chat_id=1601, error="retry_after", retry_after=1)
    worker, app = make_worker(store, fake_bot, clock)
    worker.metrics = metrics = Metrics()
    await app.bot.initialize()
    await worker.drain()
    await worker.wait_idle()
    clock.now += timedelta(seconds=2)
    await worker.drain_all()
    await app.bot.shutdown()
    assert metrics.tg_sent.labels("private")._value.get() == 2
    assert metrics.tg_errors.labels("flood")._value.get() == 1
    assert metrics.tg_429._value.get() == 1
