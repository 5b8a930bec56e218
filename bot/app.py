"""The composition root: builds every I/O object once from Settings; nothing is global."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import random
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from .config import Settings
from .deliver import ConsoleSink, Sink, drain
from .fetch import Fetcher
from .model import FeedSpec
from .pipeline import Pipeline, PollSettings, utcnow
from .store import Store
from .watchlist import Watchlist, load_watchlist
from .workers import exit_with

log = logging.getLogger("veille.app")


@dataclass
class App:
    """A running veille: settings, state, HTTP client, parse pool, current watchlist, sink."""

    settings: Settings
    store: Store
    fetcher: Fetcher
    watchlist: Watchlist
    sink: Sink
    executor: Executor | None = None
    clock: Callable = utcnow
    pipeline: Pipeline = field(init=False)
    _drain_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _drain_task: asyncio.Task | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        poll = PollSettings(
            first_poll_max_age=timedelta(hours=self.settings.first_poll_max_age_hours),
            max_backoff=self.settings.max_backoff, jitter=self.settings.jitter,
            destinations=(self.sink.destination,), rng=random.Random())
        self.pipeline = Pipeline(fetcher=self.fetcher, store=self.store,
                                 watchlist=lambda: self.watchlist, executor=self.executor,
                                 settings=poll, clock=self.clock)

    @classmethod
    def create(cls, settings: Settings, *, sink: Sink | None = None,
               watchlist: Watchlist | None = None, parse_in_processes: bool = True) -> "App":
        """Open the store (migrating it), build the fetcher and the parse pool."""
        wl = watchlist or load_watchlist(settings.watchlists)
        if settings.telegram_token is not None:
            log.warning("telegram", extra={"fields": {
                "note": "Telegram delivery is not built yet; alerts are printed to the console"}})
        store = Store.open(settings.database_url)
        store.sync_feeds(wl.all_feeds(news_search=settings.news_search))
        return cls(settings=settings, store=store, fetcher=Fetcher.from_settings(settings),
                   watchlist=wl, sink=sink or ConsoleSink(),
                   executor=_parse_pool(settings) if parse_in_processes else None)

    def feeds(self) -> tuple[FeedSpec, ...]:
        return self.watchlist.all_feeds(news_search=self.settings.news_search)

    async def deliver(self) -> int:
        """Drain the outbox to the sink (one drain at a time)."""
        async with self._drain_lock:
            return await drain(self.store, self.sink, clock=self.clock,
                               topics=self.watchlist.topic)

    def deliver_soon(self) -> None:
        """Start draining in the background, unless a drain is already under way.

        A drain running now may miss alerts created after its last lease: callers that need
        everything delivered await deliver() at the end (as cycle() does).
        """
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(self._drain_logged())

    async def _drain_logged(self) -> None:
        try:
            await self.deliver()
        except Exception:  # noqa: BLE001 (the alerts stay pending; the next drain retries)
            log.exception("deliver", extra={"fields": {}})

    async def aclose(self) -> None:
        if self._drain_task is not None:
            await self._drain_task
        await self.fetcher.aclose()
        if self.executor is not None:
            await asyncio.to_thread(self.executor.shutdown, True, cancel_futures=True)
        self.pipeline.close()
        self.store.close()


def _parse_pool(settings: Settings) -> Executor:
    """Parsing is CPU-bound: a process pool keeps it off the event loop and uses every core."""
    workers = settings.parse_workers or max(1, os.cpu_count() or 1)
    context = multiprocessing.get_context("forkserver")
    # workers start with the parsers and the matcher imported
    context.set_forkserver_preload(["bot.workers", "bot.match"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=exit_with, initargs=(os.getpid(),))
