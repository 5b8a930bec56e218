"""Coverage surges: the pure detection on an injected clock, and a burst of new stories in
the store giving one surge alert per destination, then a cool-down (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest

from bot.model import FeedSpec, Hit, Item, Match, Topic
from bot.pipeline import Pipeline, PollSettings
from bot.stories import StoryIndex, Surge, SurgeRule, detect_surge
from bot.store import Store
from tests.test_store import db_url, pg_database  # noqa: F401 (fixtures)

UTC = timezone.utc
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RULE = SurgeRule(recent=timedelta(hours=3), baseline=timedelta(days=7), factor=3.0,
                 min_stories=5, cooldown=timedelta(hours=12))


def hours_ago(*hours: float) -> list[datetime]:
    return [NOW - timedelta(hours=h) for h in hours]


QUIET_WEEK = hours_ago(*range(4, 168, 12))  # 14 stories over the week: 0.25 per 3 hours


@pytest.mark.parametrize("opened,factor,cooling,expected", [
    (QUIET_WEEK, None, None, None),  # an ordinary day
    (QUIET_WEEK + hours_ago(0.5, 1, 1.5, 2), None, None, None),  # 4 < the minimum of 5
    (QUIET_WEEK + hours_ago(0.5, 1, 1.5, 2, 2.5), None, None, Surge(5, 0.25)),
    (QUIET_WEEK + hours_ago(0.5, 1, 1.5, 2, 2.5), 6.0, None, None),  # the topic asks for 6x
    (QUIET_WEEK + hours_ago(0.5, 1, 1.5, 2, 2.5), None, NOW + timedelta(hours=1), None),
    (QUIET_WEEK + hours_ago(0.5, 1, 1.5, 2, 2.5), None, NOW - timedelta(seconds=1),
     Surge(5, 0.25)),  # the cool-down is over
    (hours_ago(*[h / 10 for h in range(1, 29)]) + hours_ago(*[4 + h / 10 for h in range(0, 1500)]),
     None, None, None),  # a busy topic: 28 in 3 h against ~27 usually
    (hours_ago(0.5, 1, 3.5, 4, 5, 6), None, None, None),  # stories just before the window
    ([NOW + timedelta(minutes=5)] * 9, None, None, None),  # from the future: not counted
])
def test_detect_surge(opened, factor, cooling, expected) -> None:
    assert detect_surge(opened, now=NOW, rule=RULE, factor=factor,
                        cooling_until=cooling) == expected


@pytest.mark.parametrize("days, expected", [
    (1, None),  # a new install's first day: its backlog is no surge
    (7, None),  # not yet a whole baseline before the recent window
    (7.2, Surge(5, 0.0)),
])
def test_no_surge_before_a_whole_baseline_has_been_watched(days, expected) -> None:
    burst = hours_ago(0.5, 1, 1.5, 2, 2.5)
    assert detect_surge(burst, now=NOW, rule=RULE,
                        watching_since=NOW - timedelta(days=days)) == expected


def test_the_rule_comes_from_the_settings() -> None:
    from bot.config import Settings

    settings = Settings(_env_file=None, surge_hours=2, surge_baseline_days=3, surge_factor=4,
                        surge_min_stories=7, surge_cooldown_hours=6)
    assert SurgeRule.from_settings(settings) == SurgeRule(
        timedelta(hours=2), timedelta(days=3), 4.0, 7, timedelta(hours=6))


# ---------------------------------------------------------------- through the store

FEED = "https://wire.example/feed"
WORDS = ["amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor", "indigo",
         "juniper", "kestrel", "lagoon", "meadow", "nickel", "orchid", "prairie", "quartz"]


def distinct_item(n: int, published: datetime) -> Item:
    """A story of its own: its words shared with no other."""
    a, b, c = WORDS[n % 17], WORDS[(n * 5 + 3) % 17], f"w{n}x"
    link = f"https://wire.example/{n}"
    return Item(feed=FEED, guid=f"g{n}", url=link, link=link, lang="en", source="Wire",
                title=f"Pipeline {a} {b} {c} report number {n}", summary="", published=published)


class OneTopic:
    def __init__(self, topic: Topic) -> None:
        self._topic = topic

    def topic(self, topic_id: str) -> Topic | None:
        return self._topic if topic_id == self._topic.id else None


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811 (the fixture imported above)
    with Store.open(db_url) as s:
        s.sync_feeds([FeedSpec(FEED, "Wire")])
        yield s


def _open_stories(store: Store, index: StoryIndex, at: list[datetime], first: int = 0) -> None:
    for n, when in enumerate(at, first):
        item = distinct_item(n, when)
        store.claim(FEED, [item], {item.guid: [Match("pos2", (Hit("Pipeline", "title", 0, 8,
                                                                   "Pipeline"),))]},
                    now=when, alert_cutoff=None, destinations=("console",), stories=index)


def test_a_burst_of_stories_gives_one_surge_alert_per_destination_then_cools_down(
        store: Store) -> None:
    import asyncio

    index = StoryIndex(window=timedelta(days=30))
    _open_stories(store, index, hours_ago(200, 30, 60, 90))  # watched for over a week
    _open_stories(store, index, hours_ago(2.5, 2, 1.5, 1, 0.5), first=10)
    topic = Topic("pos2", "Power of Siberia 2", "x", compiled=None, surge=None)
    pipeline = Pipeline(fetcher=None, store=store, watchlist=lambda: OneTopic(topic),
                        settings=PollSettings(destinations=("console", "telegram"), surge=RULE))
    asyncio.run(pipeline._surges({"pos2"}, NOW))
    asyncio.run(pipeline._surges({"pos2"}, NOW + timedelta(hours=1)))  # cooling down
    surges = [a for a in store.pending_alerts(now=NOW + timedelta(hours=2), limit=100)
              if a.topic.startswith("surge:")]
    assert sorted((a.topic, a.destination) for a in surges) == [
        ("surge:pos2", "console"), ("surge:pos2", "telegram")]
    surge_id = int(surges[0].story.removeprefix("surge:"))
    recorded = store.surge(surge_id)
    assert (recorded["recent"], len(recorded["stories"])) == (5, 5)
    assert recorded["stories"][0].keys() == {"story", "title", "url", "source", "outlets"}
    assert store.last_surge_until("pos2") == NOW + RULE.cooldown


def test_a_topic_asking_for_a_higher_factor_gets_no_surge(store: Store) -> None:
    import asyncio

    index = StoryIndex(window=timedelta(days=30))
    _open_stories(store, index, hours_ago(2.5, 2, 1.5, 1, 0.5))
    topic = Topic("pos2", "Power of Siberia 2", "x", compiled=None, surge=10.0)
    pipeline = Pipeline(fetcher=None, store=store, watchlist=lambda: OneTopic(topic),
                        settings=PollSettings(surge=RULE))
    asyncio.run(pipeline._surges({"pos2"}, NOW))
    assert store.last_surge_until("pos2") is None


def test_the_store_records_one_surge_per_cool_down_whoever_asks(store: Store) -> None:
    """Two instances may both see the surge: the store's own check keeps one."""
    index = StoryIndex(window=timedelta(days=30))
    _open_stories(store, index, hours_ago(1))
    [top] = store.recent_stories(since=NOW - timedelta(hours=3))
    first = store.record_surge("pos2", recent=5, baseline=0.2, top=[top], now=NOW,
                               until=NOW + RULE.cooldown, destinations=("console",))
    again = store.record_surge("pos2", recent=6, baseline=0.2, top=[top],
                               now=NOW + timedelta(hours=1),
                               until=NOW + timedelta(hours=13), destinations=("console",))
    later = store.record_surge("pos2", recent=6, baseline=0.2, top=[top],
                               now=NOW + RULE.cooldown, until=NOW + 2 * RULE.cooldown,
                               destinations=("console",))
    assert first is not None and again is None and later not in (None, first)
