"""Operators' numbers: the Prometheus metrics of one running veille, and its liveness marks.

prometheus-client (the reference Python client: text exposition, histograms, labels) with a
registry owned by the App, never the process-wide default one, so two Apps in one process
(tests) never share counters. Process events (polls, sends) are counted as they happen; what
the database already knows (pending deliveries, feeds' error streaks) is read from the store
at each scrape (web.py calls `refresh`), so every instance reports the same truth.

Hooks for other stages, all cheap and never raising:
    observe_poll(outcome)          pipeline.Pipeline, after every poll
    cycle_done(job, seconds)       scheduler: a full `cycle()` or a periodic job finished
    scheduler_started/stopped()    scheduler.Runner
    telegram_sent(chat_kind)       Telegram delivery: one message sent (private, group, ...)
    telegram_error(kind)           Telegram delivery: a send failed (kind: a short error class)
    telegram_rate_limited(retry)   Telegram delivery: a 429 with its retry_after seconds
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from .pipeline import PollOutcome
    from .store import FeedState

CONTENT_TYPE = CONTENT_TYPE_LATEST
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PARSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
RETRY_BUCKETS = (1, 2, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class StoreFigures:
    """What a scrape reads from the store: pending deliveries per queue, every active feed."""

    pending: Mapping[str, int]
    feeds: Sequence["FeedState"]


class Metrics:
    """Every veille_* metric of one App, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("veille_polls", "Feed polls, by result "
                             "(new, not-modified, unchanged, error).", ["result"], registry=r)
        self.fetch_seconds = Histogram("veille_fetch_seconds", "Time of one feed's HTTP fetch.",
                                       buckets=FETCH_BUCKETS, registry=r)
        self.parse_seconds = Histogram("veille_parse_seconds", "Time to parse and match one "
                                       "changed feed body (worker process).",
                                       buckets=PARSE_BUCKETS, registry=r)
        self.items = Counter("veille_items", "New items stored.", registry=r)
        self.matches = Counter("veille_matches", "Matches of new items, by topic.", ["topic"],
                               registry=r)
        self.alerts = Counter("veille_alerts", "Alerts queued (one per item and topic), by topic.",
                              ["topic"], registry=r)
        self.last_poll = Gauge("veille_last_poll_timestamp_seconds",
                               "Unix time the last poll finished.", registry=r)
        self.cycle_seconds = Gauge("veille_last_cycle_seconds", "Duration of the last run of a "
                                   "cycle: `cycle` (every feed once) or a periodic job of "
                                   "`veille run` (deliver, reload, housekeeping).", ["job"],
                                   registry=r)
        self.cycle_at = Gauge("veille_last_cycle_timestamp_seconds",
                              "Unix time a cycle or periodic job last finished.", ["job"],
                              registry=r)
        self.running = Gauge("veille_scheduler_running", "1 while the scheduler runs.",
                             registry=r)
        self.pending = Gauge("veille_pending_deliveries", "Deliveries waiting, by queue "
                             "(outbox: alerts per destination; telegram: per-chat sends).",
                             ["queue"], registry=r)
        self.feeds = Gauge("veille_feeds", "Active feeds, by health (ok, failing, never).",
                           ["health"], registry=r)
        self.error_streak = Gauge("veille_feed_error_streak", "Consecutive failed polls of a "
                                  "feed (0 when its last poll succeeded).", ["feed"], registry=r)
        self.tg_sent = Counter("veille_telegram_sends", "Telegram messages sent, by chat kind.",
                               ["chat_kind"], registry=r)
        self.tg_errors = Counter("veille_telegram_errors", "Telegram sends that failed, by kind.",
                                 ["kind"], registry=r)
        self.tg_429 = Counter("veille_telegram_rate_limited", "Telegram 429 answers.",
                              registry=r)
        self.tg_retry = Histogram("veille_telegram_retry_after_seconds", "retry_after of "
                                  "Telegram 429 answers.", buckets=RETRY_BUCKETS, registry=r)
        self.queue_jobs = Counter("veille_queue_jobs", "Jobs queued for the instances on "
                                  "PostgreSQL, by kind (poll, deliver, singleton).", ["kind"],
                                  registry=r)
        self.queue_skips = Counter("veille_queue_poll_skips", "Queued polls skipped: the feed "
                                   "had been polled since (by this or another instance).",
                                   registry=r)
        self.instances = Gauge("veille_instances", "Live instances sharing the database "
                               "(workers with a fresh heartbeat).", registry=r)
        self.scheduler_running = False
        self.last_cycle: float | None = None  # unix time any cycle or periodic job finished

    # ------------------------------------------------------------ hooks

    def observe_poll(self, outcome: "PollOutcome") -> None:
        """Count one poll: its result, timings, new items, matches and alerts by topic."""
        self.polls.labels(outcome.status).inc()
        if outcome.fetch_seconds:
            self.fetch_seconds.observe(outcome.fetch_seconds)
        if outcome.parse_seconds:
            self.parse_seconds.observe(outcome.parse_seconds)
        if outcome.new_items:
            self.items.inc(outcome.new_items)
        for topic, count in outcome.topic_matches:
            self.matches.labels(topic).inc(count)
        for topic, _guid in {(a.topic, a.item.guid) for a in outcome.alerts}:  # one per item
            self.alerts.labels(topic).inc()
        self.last_poll.set(time.time())

    def cycle_done(self, job: str, seconds: float) -> None:
        """A full cycle or a periodic scheduler job finished (the readiness heartbeat)."""
        self.last_cycle = time.time()
        self.cycle_seconds.labels(job).set(seconds)
        self.cycle_at.labels(job).set(self.last_cycle)

    def scheduler_started(self) -> None:
        self.scheduler_running = True
        self.running.set(1)

    def scheduler_stopped(self) -> None:
        self.scheduler_running = False
        self.running.set(0)

    def queued(self, kind: str, count: int = 1) -> None:
        """Jobs handed to the queue (several instances on PostgreSQL)."""
        if count:
            self.queue_jobs.labels(kind).inc(count)

    def queue_skipped(self) -> None:
        self.queue_skips.inc()

    def telegram_sent(self, chat_kind: str) -> None:
        """One Telegram message sent to a chat of this kind (private, group, supergroup, channel)."""
        self.tg_sent.labels(chat_kind).inc()

    def telegram_error(self, kind: str) -> None:
        """One Telegram send failed; kind is short and fixed (forbidden, bad-request, network...)."""
        self.tg_errors.labels(kind).inc()

    def telegram_rate_limited(self, retry_after: float) -> None:
        """Telegram answered 429 and asked to wait retry_after seconds."""
        self.tg_429.inc()
        self.tg_retry.observe(retry_after)

    # ------------------------------------------------------------ scrape

    def refresh(self, figures: StoreFigures) -> None:
        """Set the gauges the store knows: pending deliveries, feeds' health, error streaks."""
        self.pending.clear()
        for queue, count in figures.pending.items():
            self.pending.labels(queue).set(count)
        health = {"ok": 0, "failing": 0, "never": 0}
        self.error_streak.clear()
        for feed in figures.feeds:
            health[feed_health(feed)] += 1
            self.error_streak.labels(feed.declared_url).set(feed.error_streak)
        for name, count in health.items():
            self.feeds.labels(name).set(count)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def feed_health(feed: "FeedState") -> str:
    """ok, failing (its last poll failed) or never (not polled yet)."""
    if feed.last_poll_at is None:
        return "never"
    return "failing" if feed.error_streak else "ok"
