"""Time: one cycle for `veille once`, and APScheduler jobs for `veille run`.

Each feed is a one-shot job that reschedules itself at the time its poll computed (interval
with jitter, or backoff / Retry-After after a failure); that time is also stored, so a
restart resumes the same schedule. Housekeeping, watchlist reload, outbox delivery and the
watch (watcher.py) are interval jobs. Stopping waits for polls in flight, so their transactions finish.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timedelta
from typing import Awaitable, Callable, Iterable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .app import App
from .errors import StoreError, WatchlistError
from .model import FeedSpec
from .pipeline import PollOutcome
from .watchlist import fingerprint, load_watchlist
from .watcher import EVERY as WATCH_EVERY, Watcher

log = logging.getLogger("veille.scheduler")

RELOAD_EVERY = 10  # seconds between checks of watchlists/ for edits
DELIVER_EVERY = 5  # seconds between outbox drains (retries; new alerts drain at once)
DIGEST_EVERY = 60  # seconds between looks for due digests
REFRESH_EVERY = 60  # seconds between looks for sent alerts whose story gained outlets
HOUSEKEEPING_EVERY = 3600
STOP_GRACE = 30  # seconds polls in flight get to finish when stopping


async def cycle(app: App, feeds: Iterable[FeedSpec] | None = None,
                on_done: Callable[[PollOutcome], None] | None = None) -> list[PollOutcome]:
    """Poll every feed once, concurrently (the fetcher bounds concurrency), and deliver.

    Delivery starts as soon as a poll queued alerts, beside the polls still running, and
    everything queued is delivered before this returns.
    """

    states = {s.declared_url: s for s in await app.store.run(app.store.feeds_overview)}

    async def one(feed: FeedSpec) -> PollOutcome:
        outcome = await app.pipeline.poll(feed, states.get(feed.url))
        if outcome.alerts:
            app.deliver_soon()
        if on_done:
            on_done(outcome)
        return outcome

    started = time.monotonic()
    outcomes = await asyncio.gather(*(one(f) for f in (feeds or app.feeds())))
    await app.deliver(wait=True)
    app.metrics.cycle_done("cycle", time.monotonic() - started)
    return list(outcomes)


class Runner:
    """`veille run`: polls on schedule until stopped."""

    def __init__(self, app: App, *, rng: random.Random | None = None) -> None:
        self.app = app
        self.rng = rng or random.Random()
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.in_flight: set[asyncio.Task] = set()
        self.stopping = False
        self.examined = app.watchlist.fingerprint  # the last watchlists/ state looked at
        self.failed: dict[str, bool] = {}  # feed url -> whether its latest poll failed
        self.warned_all_failed = False

    async def run(self, stop: asyncio.Event) -> None:
        """Start the jobs, wait for stop, then wind down cleanly."""
        self.app.reloader = self.reload_now
        if self.app.queued():  # several instances on PostgreSQL: polls go through the queue
            from .queue import Queue

            self.app.queue = Queue(self.app, on_poll=self._after_poll)
            self.app.queue.singletons.update(digests=self._digests, stories=self._refresh_stories,
                                             housekeeping=self._housekeeping)
        await self.app.start(listen=True)
        self.scheduler.start()
        self.app.metrics.scheduler_started()
        now = self.app.clock()
        for feed in self.app.feeds():
            state = await self.app.store.run(self.app.store.feed_state, feed.url)
            due = state.next_poll_at if state and state.next_poll_at else None
            spread = min(self.app.settings.startup_spread, feed.interval)
            self._schedule(feed.url, due or now + timedelta(seconds=self.rng.uniform(0, spread)))
        self._every(DELIVER_EVERY, "deliver", self._deliver)
        if self.app.telegram is not None:
            self._every(DIGEST_EVERY, "digests", self._singleton("digests", self._digests))
            self._every(REFRESH_EVERY, "stories",
                        self._singleton("stories", self._refresh_stories))
        if self.app.queue is not None:
            await self.app.queue.sweep()
            self._every(self.app.queue.timing.heartbeat, "sweep", self.app.queue.sweep)
        self._every(RELOAD_EVERY, "reload", self._reload)
        self.watcher = Watcher.for_app(self.app)  # failing, silent feeds; quiet topics
        self._every(WATCH_EVERY, "watch", self.watcher.check)
        self._every(HOUSEKEEPING_EVERY, "housekeeping",
                    self._singleton("housekeeping", self._housekeeping), first=now)
        log.info("started", extra={"fields": {"feeds": len(self.app.feeds()),
                                              "topics": len(self.app.watchlist.topics)}})
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop scheduling, let polls in flight finish (their transactions), deliver."""
        self.stopping = True
        self.app.metrics.scheduler_stopped()
        # pause, not shutdown, while waiting: the asyncio executor's shutdown cancels the
        # coroutine jobs still running, which would cut a poll off between its claim and its
        # delivery (or leave a lease taken and its result dropped)
        self.scheduler.pause()
        if self.in_flight:
            done, pending = await asyncio.wait(self.in_flight, timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self.scheduler.shutdown(wait=False)
        if self.app.queue is not None:  # its jobs in progress finish; the rest stays queued
            await self.app.queue.stop()
            return
        await self.app.deliver()
        log.info("stopped", extra={"fields": {}})

    # ------------------------------------------------------------ jobs

    def _schedule(self, url: str, when: datetime) -> None:
        if self.stopping:
            return
        self.scheduler.add_job(self._poll, "date", run_date=when, args=[url], id=f"feed:{url}",
                               replace_existing=True, misfire_grace_time=None)

    def _singleton(self, name: str, job: Callable[[], Awaitable[None]]):
        """A periodic job that must not run in two instances at once: queued when there is
        a queue (whoever takes it runs it), else run here."""
        async def run() -> None:
            if self.app.queue is None:
                await job()
            elif await self.app.queue.defer_singleton(name):
                self.app.metrics.queued("singleton")
        return run

    def _every(self, seconds: float, name: str, job: Callable[[], Awaitable[None]],
               first: datetime | None = None) -> None:
        when = {"next_run_time": first} if first else {}  # None would add the job paused
        self.scheduler.add_job(self._guarded(name, job, heartbeat=True), "interval",
                               seconds=seconds, id=name,
                               coalesce=True, max_instances=1, **when)

    def _guarded(self, name: str, job: Callable[[], Awaitable[None]], heartbeat: bool = False):
        async def run() -> None:
            if self.stopping:
                return
            task = asyncio.current_task()
            self.in_flight.add(task)
            try:
                started = time.monotonic()
                await job()
                if heartbeat:  # a periodic job finished: the scheduler is alive (/readyz)
                    self.app.metrics.cycle_done(name, time.monotonic() - started)
            except Exception:  # one failing job never stops the others
                log.exception(name, extra={"fields": {}})
            finally:
                self.in_flight.discard(task)
        return run

    async def _poll(self, url: str) -> None:
        feed = next((f for f in self.app.feeds() if f.url == url), None)
        if feed is None or self.stopping:
            return  # removed from the watchlist since it was scheduled
        if self.app.queue is not None:
            await self._guarded(f"queue {feed.name}", lambda: self._queue_poll(feed))()
            return
        outcome: PollOutcome | None = None

        async def body() -> None:
            nonlocal outcome
            outcome = await self.app.pipeline.poll(feed)
            if outcome.alerts:
                await self.app.deliver()

        await self._guarded(f"poll {feed.name}", body)()
        if outcome is not None:
            self._all_failed_check(url, outcome)
        retry = self.app.clock() + timedelta(seconds=feed.interval)
        self._schedule(url, outcome.next_poll_at if outcome and outcome.next_poll_at else retry)

    async def _queue_poll(self, feed) -> None:
        """Queue mode: this instance's timer says the feed is due; if the store agrees, queue
        its poll (once: a poll already waiting is not queued again), then look again when
        it should next be due. Whichever instance's worker takes the job polls it."""
        now = self.app.clock()
        look = now + timedelta(seconds=feed.interval * (1 - self.app.settings.jitter))
        try:
            state = await self.app.store.run(self.app.store.feed_state, feed.url)
            due = state.next_poll_at if state and state.next_poll_at else now
            if due > now:
                look = due  # polled since (here or elsewhere): look again when it is due
            elif await self.app.queue.defer_poll(feed.url):
                self.app.metrics.queued("poll")
        finally:
            self._schedule(feed.url, look)

    def _after_poll(self, outcome: PollOutcome) -> None:
        self._all_failed_check(outcome.feed.url, outcome)

    def _all_failed_check(self, url: str, outcome: PollOutcome) -> None:
        """Warn once when the latest poll of every feed failed (no network, a proxy, DNS)."""
        self.failed[url] = outcome.status == "error"
        if not self.failed[url]:
            self.warned_all_failed = False  # one feed answers again: warn again next time
            return
        feeds = self.app.feeds()
        if self.warned_all_failed or not all(self.failed.get(f.url) for f in feeds):
            return
        self.warned_all_failed = True
        log.warning("every feed failing", extra={"fields": {
            "feeds": len(feeds), "last_error": outcome.error,
            "hint": "the latest poll of every feed failed: is the network, a proxy or DNS down?"}})

    async def _deliver(self) -> None:
        await self.app.deliver()

    async def _digests(self) -> None:
        await self.app.telegram.worker.send_digests()

    async def _refresh_stories(self) -> None:
        await self.app.telegram.worker.refresh_stories()

    async def _housekeeping(self) -> None:
        before = self.app.clock() - timedelta(days=self.app.settings.retention_days)
        pruned = await self.app.store.run(self.app.store.prune, before=before)
        if self.app.queue is not None:
            await self.app.queue.prune()
        log.info("housekeeping", extra={"fields": {"items": pruned.items, "alerts": pruned.alerts,
                                                   "before": before.isoformat()}})

    async def _reload(self) -> None:
        seen = fingerprint(self.app.watchlist.directory)
        if seen == self.examined:
            return
        self.examined = seen  # a broken edit is reported once, not every RELOAD_EVERY
        await self.reload_now()

    async def reload_now(self) -> list[str]:
        """Re-read watchlists/ and swap it in; the problems (the last good one stays) or []."""
        directory = self.app.watchlist.directory
        try:
            fresh = await asyncio.to_thread(
                load_watchlist, directory, allow_private_urls=self.app.settings.allow_private_urls)
        except WatchlistError as exc:
            for p in exc.problems:  # one line each: the caret under a query is for `validate`
                log.error("watchlist", extra={"fields": {
                    "at": f"{p.file}:{p.line}:{p.col}", "problem": p.message.splitlines()[0]}})
            log.error("reload", extra={"fields": {"kept": "last good watchlist",
                                                  "problems": len(exc.problems)}})
            return [str(p) for p in exc.problems]
        await self._swap(fresh)
        return []

    async def _swap(self, fresh) -> None:
        old = {f.url for f in self.app.feeds()}
        self.app.watchlist = fresh
        feeds = self.app.feeds()
        try:
            await self.app.store.run(self.app.store.sync_feeds, feeds)
        except StoreError as exc:
            log.error("reload", extra={"fields": {"error": str(exc)}})
        now = self.app.clock()
        for feed in feeds:
            if feed.url not in old:
                self._schedule(feed.url, now)
        for url in old - {f.url for f in feeds}:
            job = self.scheduler.get_job(f"feed:{url}")
            if job:
                job.remove()
        log.info("reload", extra={"fields": {"topics": len(fresh.topics), "feeds": len(feeds)}})
