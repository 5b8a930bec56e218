"""Watching the watch: which feeds and topics have gone wrong, decided from values.

Three conditions, each told to the operators once when it begins and once when it ends:

- feed_failing: an active feed every poll of which has failed for `failing` (counted from its
  last success; for a feed that never succeeded, from when the watcher first saw it failing).
- feed_silent: an active feed whose latest poll succeeded, that has brought items before and
  none for max(silence_min, silence_factor x its median gap between new items over the last
  `window`); when the window holds too few arrivals to know its rhythm, none for `window`.
  A feed that never had an item is not silent.
- topic_quiet: a topic with at least `topic_min` stories opened over the last `window` and
  none for `topic_quiet`.

A raised condition is cleared only by what ends it (a successful poll, a new item, a new
story), never because a threshold moved while it lasted: a rhythm that drifts during a long
silence cannot make it flap. A condition whose feed or topic left the watchlist is forgotten
without a notice. Which instance tells, and remembering across restarts, is the store's part
(bot/store/watch.py); the Runner's watch job is the shell (bot/scheduler.py).

The notices are rendered here too (`render`: Telegram HTML in the reader's language, `line`:
the English log line used without Telegram or admins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import Any, Iterable, Mapping, Sequence

from .telegram.render import escape

FEED_FAILING = "feed_failing"
FEED_SILENT = "feed_silent"
TOPIC_QUIET = "topic_quiet"
KINDS = (FEED_FAILING, FEED_SILENT, TOPIC_QUIET)
MIN_GAPS = 3  # fewer gaps between new items than this: the feed's rhythm is not known
WINDOW = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class Rules:
    """The thresholds; a None threshold turns its check off."""

    failing: timedelta | None = timedelta(hours=6)
    silence_min: timedelta | None = timedelta(hours=24)
    silence_factor: float = 5.0
    topic_min: int = 5
    topic_quiet: timedelta | None = timedelta(days=3)
    window: timedelta = WINDOW

    @classmethod
    def from_settings(cls, settings: Any) -> Rules:
        """From the VEILLE_WATCH_* settings (0 turns a check off)."""
        def hours(value: float) -> timedelta | None:
            return timedelta(hours=value) if value > 0 else None

        return cls(failing=hours(settings.watch_failing_hours),
                   silence_min=hours(settings.watch_silence_hours),
                   silence_factor=settings.watch_silence_factor,
                   topic_min=settings.watch_topic_min_stories,
                   topic_quiet=hours(settings.watch_topic_quiet_hours))


@dataclass(frozen=True, slots=True)
class FeedWatch:
    """What the watcher knows of one active feed."""

    url: str
    name: str
    failing_since: datetime | None  # None: its latest poll succeeded (or it was never polled)
    last_error: str | None = None
    latest: datetime | None = None  # when its latest new item was first seen (any time)
    arrivals: tuple[datetime, ...] = ()  # distinct first-seen times within the window


@dataclass(frozen=True, slots=True)
class TopicWatch:
    """What the watcher knows of one topic."""

    id: str
    title: str
    latest: datetime | None  # when its latest story opened (any time)
    stories: int  # stories opened within the window


@dataclass(frozen=True, slots=True)
class Condition:
    """One thing gone wrong, as told and as remembered (key: one per feed or topic and kind)."""

    kind: str
    subject: str  # the feed's declared URL or the topic id
    name: str  # the feed's name or the topic's title
    since: datetime  # last success / last new item / last story (or first seen failing)
    detail: str = ""  # the last error (feed_failing)
    usual: timedelta | None = None  # the usual gap between new items (feed_silent)
    count: int = 0  # stories over the window (topic_quiet)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"


@dataclass(frozen=True, slots=True)
class Changes:
    """What one look found: conditions begun, ended (recovered), and forgotten (keys)."""

    raised: tuple[Condition, ...] = ()
    cleared: tuple[Condition, ...] = ()
    forgotten: tuple[str, ...] = ()


# ---------------------------------------------------------------- detection


def usual_gap(arrivals: Sequence[datetime]) -> timedelta | None:
    """The median gap between distinct arrival times, or None with fewer than MIN_GAPS."""
    times = sorted(set(arrivals))
    gaps = [b - a for a, b in zip(times, times[1:])]
    return median(gaps) if len(gaps) >= MIN_GAPS else None


def silence_limit(feed: FeedWatch, rules: Rules) -> timedelta | None:
    """How long this feed may bring nothing before it counts as silent (None: check off)."""
    if rules.silence_min is None:
        return None
    gap = usual_gap(feed.arrivals)
    return max(rules.silence_min, gap * rules.silence_factor) if gap else rules.window


def failing(feed: FeedWatch, now: datetime, rules: Rules) -> Condition | None:
    if rules.failing is None or feed.failing_since is None:
        return None
    if now - feed.failing_since < rules.failing:
        return None
    return Condition(FEED_FAILING, feed.url, feed.name, feed.failing_since,
                     detail=feed.last_error or "")


def silent(feed: FeedWatch, now: datetime, rules: Rules) -> Condition | None:
    limit = silence_limit(feed, rules)
    if limit is None or feed.latest is None or feed.failing_since is not None:
        return None
    if now - feed.latest < limit:
        return None
    return Condition(FEED_SILENT, feed.url, feed.name, feed.latest,
                     usual=usual_gap(feed.arrivals))


def quiet(topic: TopicWatch, now: datetime, rules: Rules) -> Condition | None:
    if rules.topic_quiet is None or topic.latest is None or topic.stories < rules.topic_min:
        return None
    if now - topic.latest < rules.topic_quiet:
        return None
    return Condition(TOPIC_QUIET, topic.id, topic.title, topic.latest, count=topic.stories)


def conditions(feeds: Iterable[FeedWatch], topics: Iterable[TopicWatch], now: datetime,
               rules: Rules) -> list[Condition]:
    """Every condition that holds now."""
    found = [c for f in feeds for c in (failing(f, now, rules), silent(f, now, rules)) if c]
    return found + [c for t in topics if (c := quiet(t, now, rules))]


def ended(condition: Condition, feeds: Mapping[str, FeedWatch],
          topics: Mapping[str, TopicWatch]) -> bool | None:
    """Whether what ends this condition happened; None when its feed or topic is gone."""
    if condition.kind == TOPIC_QUIET:
        topic = topics.get(condition.subject)
        if topic is None:
            return None
        return topic.latest is not None and topic.latest > condition.since
    feed = feeds.get(condition.subject)
    if feed is None:
        return None
    if condition.kind == FEED_FAILING:
        return feed.failing_since is None
    return feed.latest is not None and feed.latest > condition.since


def evaluate(feeds: Sequence[FeedWatch], topics: Sequence[TopicWatch],
             active: Sequence[Condition], now: datetime, rules: Rules) -> Changes:
    """Compare what holds now with the conditions already raised (`active`)."""
    by_url = {f.url: f for f in feeds}
    by_topic = {t.id: t for t in topics}
    known = {c.key for c in active}
    raised = tuple(c for c in conditions(feeds, topics, now, rules) if c.key not in known)
    cleared, forgotten = [], []
    for condition in active:
        over = ended(condition, by_url, by_topic)
        if over is None:
            forgotten.append(condition.key)
        elif over:
            cleared.append(condition)
    return Changes(raised, tuple(cleared), tuple(forgotten))


# ---------------------------------------------------------------- notices

ICONS = {FEED_FAILING: "⚠️", FEED_SILENT: "🔇", TOPIC_QUIET: "🔇"}
BACK = "✅"


def render(condition: Condition, *, cleared: bool, now: datetime, t: Any,
           tz: str = "UTC") -> str:
    """The notice as Telegram HTML, in the translator `t`'s language, times in zone tz."""
    when = t.datetime(condition.since, tz, zone_name=True)
    lasted = t.duration(max(now - condition.since, timedelta(0)))
    head, body = _texts(condition, cleared, t, when=when, duration=lasted)
    icon = BACK if cleared else ICONS[condition.kind]
    lines = [f"{icon} <b>{escape(head)}</b>"]
    if condition.kind != TOPIC_QUIET:
        lines.append(escape(condition.subject))
    return "\n".join(lines + [escape(b) for b in body])


def _texts(c: Condition, cleared: bool, t: Any, *, when: str,
           duration: str) -> tuple[str, list[str]]:
    """The heading and the lines of a notice, translated (literal ids: pybabel finds them)."""
    if c.kind == FEED_FAILING and cleared:
        return t("Feed working again: {name}", name=c.name), [
            t("Polls succeed again after {duration} of failures.", duration=duration)]
    if c.kind == FEED_FAILING:
        body = [t("Every poll has failed since {when} ({duration}).", when=when,
                  duration=duration)]
        return t("Feed failing: {name}", name=c.name), body + (
            [t("Last error: {error}", error=c.detail[:500])] if c.detail else [])
    if c.kind == FEED_SILENT and cleared:
        return t("Feed active again: {name}", name=c.name), [
            t("A new item arrived after {duration} of silence.", duration=duration)]
    if c.kind == FEED_SILENT:
        body = [t("No new item since {when} ({duration}).", when=when, duration=duration)]
        return t("Feed silent: {name}", name=c.name), body + (
            [t("It usually brings one every {usual}.", usual=t.duration(c.usual))]
            if c.usual else [])
    if cleared:
        return t("Topic covered again: {name}", name=c.name), [
            t("A new story after {duration} without one.", duration=duration)]
    return t("Topic quiet: {name}", name=c.name), [
        t("No new story since {when} ({duration}).", when=when, duration=duration),
        t.n("It had {n} story over the last 14 days.",
            "It had {n} stories over the last 14 days.", c.count)]


def line(condition: Condition, *, cleared: bool, now: datetime) -> dict[str, Any]:
    """The fields of the one warning line logged when no admin can be told on Telegram."""
    fields: dict[str, Any] = {
        "condition": condition.kind, "state": "ended" if cleared else "begun",
        "feed" if condition.kind != TOPIC_QUIET else "topic": condition.name,
        "url": condition.subject if condition.kind != TOPIC_QUIET else None,
        "since": condition.since.isoformat(timespec="seconds"),
        "for": str(max(now - condition.since, timedelta(0))).split(".")[0]}
    if not cleared:
        fields["error"] = condition.detail[:300] or None
        fields["usual_gap"] = str(condition.usual).split(".")[0] if condition.usual else None
        fields["stories_14d"] = condition.count or None
    return fields
