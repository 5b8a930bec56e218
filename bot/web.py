"""The operators' HTTP server, inside `veille run`'s event loop: health, metrics, status page.

    /healthz   200 while the process answers (Docker HEALTHCHECK, liveness probes)
    /readyz    200, or 503 with the reasons: scheduler not running, database unreachable,
               no periodic job finished for READY_STALE seconds
    /metrics   Prometheus text format (metrics.py)
    /          the status page (status.py), read-only

aiohttp: a well-kept asyncio HTTP server whose AppRunner runs in an existing loop without
touching its signal handlers (`veille run` owns SIGINT/SIGTERM). With VEILLE_HTTP_AUTH set,
`/` and `/metrics` ask for HTTP basic auth (compared in constant time); the probes stay open
and say nothing secret. Store reads run on a thread of their own, not queued behind the
store's writers, so a scrape during a busy cycle still answers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import web

from . import __version__
from .errors import ConfigError, StoreError
from .metrics import CONTENT_TYPE, StoreFigures
from .status import DAYS, build_page, render_page

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("veille.web")

READY_STALE = 120.0  # seconds; the reload job alone finishes every 10 s
DB_TIMEOUT = 5.0  # seconds /readyz waits for the database
PROTECTED = ("/", "/metrics")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    """Serves one App on VEILLE_HTTP_HOST:VEILLE_HTTP_PORT until stopped."""

    def __init__(self, app: "App") -> None:
        self.app = app
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve (returns once listening)."""
        settings = self.app.settings
        self._runner = web.AppRunner(self.application(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"VEILLE_HTTP_PORT={settings.http_port}: cannot listen on "
                              f"{settings.http_host}:{settings.http_port}: "
                              f"{exc.strerror or exc}") from None
        log.info("http", extra={"fields": {"host": settings.http_host,
                                           "port": settings.http_port,
                                           "auth": settings.http_auth is not None}})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def application(self) -> web.Application:
        """The aiohttp application: routes, and basic auth when configured."""
        auth = self.app.settings.http_auth
        middlewares = [_basic_auth(auth.get_secret_value())] if auth is not None else []
        application = web.Application(middlewares=middlewares)
        application.router.add_get("/healthz", self.healthz)
        application.router.add_get("/readyz", self.readyz)
        application.router.add_get("/metrics", self.metrics)
        application.router.add_get("/", self.status)
        return application

    # ------------------------------------------------------------ handlers

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, _request: web.Request) -> web.Response:
        reasons = await readiness(self.app)
        if reasons:
            return web.Response(status=503, text="not ready: " + "; ".join(reasons) + "\n")
        return web.Response(text="ready\n")

    async def metrics(self, _request: web.Request) -> web.Response:
        store = self.app.store
        try:
            figures = await asyncio.to_thread(
                lambda: StoreFigures(store.pending_counts(), store.feeds_overview()))
        except StoreError as exc:  # the process counters are still worth a scrape
            log.warning("metrics", extra={"fields": {"error": str(exc)}})
        else:
            self.app.metrics.refresh(_active(figures))
        return web.Response(body=self.app.metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE})

    async def status(self, _request: web.Request) -> web.Response:
        now = self.app.clock()
        reasons = await readiness(self.app)
        try:
            inputs = await asyncio.to_thread(_page_inputs, self.app.store, now,
                                             self.app.queue)
        except StoreError as exc:
            return web.Response(status=503, text=f"status unavailable: {exc}\n")
        page = build_page(now=now, version=__version__, ready="; ".join(reasons) or "ready",
                          topics=self.app.watchlist.topics, **inputs)
        return web.Response(text=render_page(page), content_type="text/html")


async def readiness(app: "App") -> list[str]:
    """Why this instance is not ready (empty when it is)."""
    reasons = []
    if not app.metrics.scheduler_running:
        reasons.append("scheduler not running")
    try:
        await asyncio.wait_for(asyncio.to_thread(app.store.ping), DB_TIMEOUT)
    except asyncio.TimeoutError:
        reasons.append(f"database did not answer within {DB_TIMEOUT:.0f} s")
    except StoreError as exc:  # its message names the database, never its password
        reasons.append(f"database unreachable: {exc}")
    if app.queue is not None and not app.queue.running():
        reasons.append("queue worker stopped (restarted at the next sweep)")
    last = app.metrics.last_cycle
    if last is None:
        reasons.append("no scheduler job finished yet")
    elif time.time() - last > READY_STALE:
        reasons.append(f"last scheduler job finished {time.time() - last:.0f} s ago "
                       f"(more than {READY_STALE:.0f} s)")
    return reasons


def _page_inputs(store, now, queue=None) -> dict:
    """Everything the status page reads from the store (one thread, one pass); with a queue
    (several instances on PostgreSQL), the instances too."""
    from .store.instances import UPDATES_LOCK

    return {"feeds": store.feeds_overview(),
            "volume": store.alerts_per_topic_per_day(now=now, days=DAYS),
            "alerts": store.recent_alerts(since=now - timedelta(days=DAYS), limit=300),
            "subscribers": store.subscriber_counts_by_topic(), "pending": store.pending_counts(),
            "queue": store.queue_overview(within=queue.timing.timeout,
                                          updates_lock=UPDATES_LOCK) if queue else None}


def _active(figures: StoreFigures) -> StoreFigures:
    return StoreFigures(figures.pending, [f for f in figures.feeds if f.active])


def _basic_auth(expected: str):
    """Middleware: `/` and `/metrics` need the configured user:password."""
    wanted = expected.encode("utf-8")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PROTECTED and not authorized(request.headers.get("Authorization"),
                                                         wanted):
            return web.Response(status=401, text="authentication required\n",
                                headers={"WWW-Authenticate": 'Basic realm="veille", '
                                                             'charset="UTF-8"'})
        return await handler(request)

    return middleware


def authorized(header: str | None, wanted: bytes) -> bool:
    """Whether an Authorization header carries exactly `wanted` (user:password), compared in
    constant time."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, wanted)
