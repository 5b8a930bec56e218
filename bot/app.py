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
from typing import Any, Callable

from .config import Settings
from .deliver import ConsoleSink, Sink, drain
from .fetch import Fetcher
from .metrics import Metrics
from .model import FeedSpec
from .pipeline import Pipeline, PollSettings, utcnow
from .llm import LLM
from .stories import SurgeRule
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
    sink: Sink | None
    executor: Executor | None = None
    telegram: "Telegram | None" = None
    queue: Any = None  # queue.Queue: several instances on PostgreSQL (`veille run`)
    reloader: Callable | None = None  # set by the Runner: re-read watchlists/ now
    clock: Callable = utcnow
    metrics: Metrics = field(default_factory=Metrics)
    pipeline: Pipeline = field(init=False)
    _drain_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _drain_task: asyncio.Task | None = field(default=None, init=False)
    _web: object | None = field(default=None, init=False)  # web.WebServer, when serving

    def __post_init__(self) -> None:
        destinations = (("telegram",) if self.telegram else ()) + (
            (self.sink.destination,) if self.sink else ())
        poll = PollSettings(
            first_poll_max_age=timedelta(hours=self.settings.first_poll_max_age_hours),
            max_backoff=self.settings.max_backoff, jitter=self.settings.jitter,
            destinations=destinations, rng=random.Random(),
            surge=SurgeRule.from_settings(self.settings),
            fetch_articles=self.settings.fetch_articles, llm=LLM.from_settings(self.settings))
        self.pipeline = Pipeline(fetcher=self.fetcher, store=self.store,
                                 watchlist=lambda: self.watchlist, executor=self.executor,
                                 settings=poll, clock=self.clock,
                                 observe=self.metrics.observe_poll)

    @classmethod
    def create(cls, settings: Settings, *, sink: Sink | None = None,
               watchlist: Watchlist | None = None, parse_in_processes: bool = True) -> "App":
        """Open the store (migrating it), build the fetcher and the parse pool."""
        wl = watchlist or load_watchlist(settings.watchlists)
        store = Store.open(settings.database_url)
        store.sync_feeds(wl.all_feeds(news_search=settings.news_search))
        telegram = Telegram.create(settings) if settings.telegram_token is not None else None
        # with a token the console is off unless asked for (a --json sink always prints)
        if sink is None and (telegram is None or settings.console):
            sink = ConsoleSink()
        app = cls(settings=settings, store=store, fetcher=Fetcher.from_settings(settings),
                  watchlist=wl, sink=sink, telegram=telegram,
                  executor=_parse_pool(settings) if parse_in_processes else None)
        if telegram is not None:
            telegram.attach(app)
        return app

    def feeds(self) -> tuple[FeedSpec, ...]:
        return self.watchlist.all_feeds(news_search=self.settings.news_search)

    def queued(self) -> bool:
        """Whether `veille run` goes through the job queue: PostgreSQL, unless turned off."""
        return self.settings.queue == "auto" and self.store.backend == "postgresql"

    async def start(self, *, listen: bool = False) -> None:
        """Connect to Telegram when a token is set; listen: also take commands (`run`).

        With a queue (set by the Runner), start its worker; chats' deliveries then go through
        it, and Telegram updates are consumed only by the instance holding the updates lock.
        """
        if self.telegram is not None:
            await self.telegram.start(
                listen=listen, context=self.bot_context() if listen else None,
                leader_of=self.settings.database_url if listen and self.queue else None)
        if self.queue is not None:
            await self.queue.start()
            if self.telegram is not None:
                self.telegram.worker.dispatch = self._dispatch_chats

    async def _dispatch_chats(self, chats: list[str]) -> None:
        self.metrics.queued("deliver", await self.queue.defer_chats(chats))

    def bot_context(self) -> Any:
        """What the command handlers may use (bot.telegram.commands.BotContext)."""
        from .telegram.commands import BotContext

        return BotContext(store=self.store, watchlist=lambda: self.watchlist, clock=self.clock,
                          admins=tuple(self.settings.admins), reload=self._reload_for_admin,
                          status=self.status_report)

    async def _reload_for_admin(self) -> list[str]:
        """/reload: re-read watchlists/ now; the problems (the last good set stays) or []."""
        if self.reloader is None:
            return ["reloading is only possible while `veille run` is running"]
        return await self.reloader()

    async def status_report(self) -> Any:
        """/status: feeds healthy and failing, the last poll, pending deliveries, chats."""
        from .telegram.commands import StatusReport

        feeds = [f for f in await self.store.run(self.store.feeds_overview) if f.active]
        counts = await self.store.run(self.store.delivery_counts)
        chats = [s for s, _ in await self.store.run(self.store.subscribers_overview)]
        polls = [f.last_poll_at for f in feeds if f.last_poll_at is not None]
        return StatusReport(
            feeds_healthy=sum(f.error_streak == 0 for f in feeds),
            feeds_failing=sum(f.error_streak > 0 for f in feeds),
            last_cycle_at=max(polls) if polls else None,
            pending_deliveries=counts["pending"] + counts["digest"],
            subscribers=sum(s.active for s in chats),
            inactive_subscribers=sum(not s.active for s in chats))

    async def deliver(self, *, wait: bool = False) -> int:
        """Drain the outbox to the console sink (one drain at a time) and hand Telegram
        deliveries to their chats' queues; wait: until every chat's queue is empty too."""
        delivered = 0
        if self.sink is not None:
            async with self._drain_lock:
                delivered = await drain(self.store, self.sink, clock=self.clock,
                                        topics=self.watchlist.topic,
                                        lease=timedelta(seconds=self.settings.lease_seconds))
        if self.telegram is not None:
            if wait:
                await self.telegram.worker.drain_all()
            else:
                delivered += await self.telegram.worker.drain()
        return delivered

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

    async def start_http(self) -> None:
        """Serve /healthz, /readyz, /metrics and the status page, when VEILLE_HTTP_PORT is set."""
        if self.settings.http_port is None:
            return
        from .web import WebServer  # aiohttp is imported only by instances that serve

        self._web = WebServer(self)
        await self._web.start()

    async def aclose(self) -> None:
        if self._web is not None:
            await self._web.stop()
        if self._drain_task is not None:
            await self._drain_task
        if self.queue is not None:
            await self.queue.stop()
        if self.telegram is not None:
            await self.telegram.aclose()
        await self.fetcher.aclose()
        if self.executor is not None:
            await asyncio.to_thread(self.executor.shutdown, True, cancel_futures=True)
        self.pipeline.close()
        self.store.close()


def _parse_pool(settings: Settings) -> Executor:
    """Parsing is CPU-bound: a process pool keeps it off the event loop and uses every core."""
    workers = settings.parse_workers or max(1, os.cpu_count() or 1)
    context = multiprocessing.get_context("forkserver")
    # workers start with the parsers and the matcher imported, and text's tables built
    context.set_forkserver_preload(["bot.workers", "bot.match", "bot.preload"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=exit_with, initargs=(os.getpid(),))


@dataclass
class Telegram:
    """The Telegram side of a running veille: the PTB Application, the pacer, the worker."""

    application: Any
    pacer: Any
    worker: Any = None
    listening: bool = False
    leader: Any = None  # queue.UpdatesLeader: updates only while holding the lock

    @classmethod
    def create(cls, settings: Settings) -> "Telegram":
        from .telegram.client import build_application
        from .telegram.pacing import Pacer

        pacer = Pacer()
        application = build_application(settings.telegram_token.get_secret_value(),
                                         settings.telegram_api_url, rate_limiter=pacer)
        return cls(application=application, pacer=pacer)

    def attach(self, app: App) -> None:
        """Build the delivery worker over the app's store and current watchlist."""
        from .telegram.delivery import DeliveryWorker

        self.worker = DeliveryWorker(
            store=app.store, bot=self.application.bot, pacer=self.pacer,
            topics=lambda topic: app.watchlist.topic(topic),
            destinations=lambda: {t.id: t.destinations for t in app.watchlist.topics
                                  if t.destinations},
            clock=app.clock, translator=_translator(),
            lease=timedelta(seconds=app.settings.lease_seconds), metrics=app.metrics)

    async def start(self, *, listen: bool, context: Any = None,
                    leader_of: str | None = None) -> None:
        """Connect (getMe); with listen, also take commands (long polling getUpdates);
        leader_of (a PostgreSQL URL): poll updates only while this instance holds the
        updates lock there (several instances; Telegram refuses a second consumer).

        A refused token or an unreachable Bot API stops the start with a ConfigError.
        """
        from .errors import ConfigError
        from .telegram.client import classify

        try:
            await self.application.initialize()
        except Exception as exc:  # noqa: BLE001 (mapped to one clear line)
            raise ConfigError(f"Telegram Bot API at VEILLE_TELEGRAM_API_URL: "
                              f"{classify(exc).reason}") from None
        if not listen:
            return
        if context is not None:
            from .telegram import commands

            commands.register(self.application, context)
            await commands.set_commands(self.application.bot, context.admins)
        await self.application.start()
        self.listening = True
        if leader_of is None:
            await self._poll_updates()
            return
        from .queue import UpdatesLeader

        self.leader = UpdatesLeader(leader_of, start=self._poll_updates,
                                    stop=self._stop_updates)
        self.leader.begin()

    async def _poll_updates(self) -> None:
        await self.application.updater.start_polling(
            allowed_updates=["message", "channel_post", "callback_query", "my_chat_member"])

    async def _stop_updates(self) -> None:
        if self.application.updater.running:
            await self.application.updater.stop()

    async def aclose(self) -> None:
        if self.worker is not None:
            await self.worker.close()
        if self.leader is not None:
            await self.leader.end()
            self.leader = None
        if self.listening:
            await self._stop_updates()
            await self.application.stop()
            self.listening = False
        await self.application.shutdown()  # a no-op when it was never initialized


def _translator():
    """gettext per language (bot.i18n), English as is when catalogs are not available."""
    try:
        from .i18n import translator
    except ImportError:
        return lambda _lang: (lambda text: text)
    return translator
