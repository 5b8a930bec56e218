"""Several `veille run` instances on one PostgreSQL database: who polls, who sends, who listens.

APScheduler in every instance still decides *when* a feed is due; procrastinate, a job queue
that lives in the PostgreSQL database we already have (no broker to run), decides *who* polls
it. Nothing here is coordination of our own making:

- a feed's poll is a job with a queueing lock (never queued twice) and a lock (never run by
  two workers at once); the job polls only if the feed is still due, as stored, so an
  instance whose own timer fires just after another polled it skips, and each feed is fetched
  once per interval whatever the number of instances;
- a chat's deliveries are a job locked on the chat: one chat's sends never run on two
  instances at once, and its order holds (rows are leased oldest first). The bot's overall
  rate is shared: each instance sends at 1/n of it, n being the live instances (workers with
  a fresh heartbeat);
- digests, story edits and housekeeping are singleton jobs (one at a time, anywhere);
- a dead instance's jobs are found by its stale heartbeat and retried by the others, within
  the lease timeout (VEILLE_LEASE_SECONDS), like its leased deliveries;
- exactly one instance consumes Telegram updates (getUpdates answers 409 to a second
  consumer): the one holding a PostgreSQL advisory lock on a dedicated connection. When it
  dies its connection closes, the lock is free, and another instance takes it over.

SQLite (the single-instance default) has no queue: `veille run` polls and delivers itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import procrastinate
import sqlalchemy as sa
from procrastinate.exceptions import AlreadyEnqueued

from .store.instances import UPDATES_LOCK

if TYPE_CHECKING:
    from .app import App
    from .pipeline import PollOutcome

log = logging.getLogger("veille.queue")

POLLS = "polls"
DELIVERIES = "deliveries"
SINGLETONS = "singletons"
POLL_PRIORITY = 10  # a due poll is taken before waiting deliveries: a feed must not starve
CONCURRENT_DELIVERIES = 60  # chat jobs one instance runs at once (~1 s apart per chat)
MAX_ATTEMPTS = 5  # runs of a job that raises (a store error...) before it is given up
BACKOFF_MAX = 300.0  # seconds: the longest wait before running a failed job again
DUE_SLACK = timedelta(seconds=2)  # a poll job skips a feed stored as due later than now + this


def conninfo(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (password included: it
    goes to the driver only, never to a log)."""
    url = sa.engine.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Timing:
    """How fast a dead instance is noticed: heartbeat every `heartbeat` s, dead after
    `timeout` s without one (its jobs then go back to the queue)."""

    timeout: float
    heartbeat: float

    @classmethod
    def from_lease(cls, lease_seconds: float) -> "Timing":
        timeout = max(3.0, lease_seconds)
        return cls(timeout=timeout, heartbeat=max(0.5, min(10.0, timeout / 4)))


class Queue:
    """The procrastinate app of one instance: its tasks, its worker, its sweeps."""

    def __init__(self, app: "App", *, name: str | None = None,
                 on_poll: Callable[["PollOutcome"], None] | None = None) -> None:
        from procrastinate import PsycopgConnector

        self.app = app
        self.name = name or instance_name()
        self.timing = Timing.from_lease(app.settings.lease_seconds)
        self.on_poll = on_poll
        self.connector = PsycopgConnector(
            conninfo=conninfo(app.settings.database_url), min_size=2,
            max_size=max(10, app.settings.concurrency // 5),
            kwargs={"application_name": f"veille {self.name}"[:63]})
        self.procrastinate = procrastinate.App(connector=self.connector)
        self._worker: Any = None
        self._run: asyncio.Task | None = None
        self._open = False
        self.instances = 1
        # Retries are deferred again by the job itself, with backoff: procrastinate's own
        # retry puts the same job back to "todo", which its queueing lock refuses when the
        # next poll of that feed is already queued (and the job would then stay "doing").
        task = self.procrastinate.task
        self.poll_task = task(name="veille.poll", queue=POLLS, priority=POLL_PRIORITY)(
            self._retrying(self._poll, "veille.poll", "feed", "url"))
        self.chat_task = task(name="veille.deliver", queue=DELIVERIES)(
            self._retrying(self._chat, "veille.deliver", "chat", "chat"))
        self.singleton_task = task(name="veille.singleton", queue=SINGLETONS)(
            self._retrying(self._singleton, "veille.singleton", "singleton", "name"))
        self.singletons: dict[str, Callable[[], Awaitable[Any]]] = {}

    # ------------------------------------------------------------ life

    async def start(self) -> None:
        """Open the pool and start this instance's worker beside the scheduler."""
        await self.procrastinate.open_async()
        self._open = True
        await self._start_worker()

    async def _start_worker(self) -> None:
        from procrastinate.worker import Worker

        self._worker = Worker(
            app=self.procrastinate, queues=[POLLS, DELIVERIES, SINGLETONS],
            name=self.name, concurrency=self.app.settings.concurrency + CONCURRENT_DELIVERIES,
            install_signal_handlers=False, listen_notify=True, delete_jobs="successful",
            fetch_job_polling_interval=1.0, abort_job_polling_interval=5.0,
            update_heartbeat_interval=self.timing.heartbeat,
            stalled_worker_timeout=self.timing.timeout, shutdown_graceful_timeout=30.0)
        self._run = asyncio.get_running_loop().create_task(self._worker.run())
        for _ in range(100):  # the worker registers itself (and its heartbeat) first
            if self._worker.worker_id is not None or self._run.done():
                break
            await asyncio.sleep(0.05)
        if self._run.done():
            await self._run  # raises what stopped it
        await self.app.store.run(self.app.store.instance_started, self._worker.worker_id,
                                 self.name, now=self.app.clock())
        log.info("queue", extra={"fields": {"instance": self.name,
                                            "worker": self._worker.worker_id}})

    def running(self) -> bool:
        """Whether this instance's worker takes jobs."""
        return self._run is not None and not self._run.done()

    async def stop(self) -> None:
        """Let the jobs in progress finish (up to 30 s), unregister, close the pool."""
        if self._worker is not None and self._run is not None and not self._run.done():
            self._worker.stop()
            try:
                await self._run
            except Exception:  # noqa: BLE001 (stopping: logged, never raised)
                log.exception("queue-stop", extra={"fields": {}})
        if self._open:
            self._open = False
            await self.procrastinate.close_async()

    # ------------------------------------------------------------ deferring

    async def defer_poll(self, url: str) -> bool:
        """Queue a poll of this feed unless one is already waiting; whether it was queued."""
        return await self._defer(self.poll_task, lock=f"feed:{url}", args={"url": url})

    async def defer_chats(self, chats: list[str]) -> int:
        """Queue a delivery job per chat, unless one is already waiting; how many queued."""
        queued = 0
        for chat in chats:
            queued += await self._defer(self.chat_task, lock=f"chat:{chat}",
                                        args={"chat": chat})
        return queued

    async def defer_singleton(self, name: str) -> bool:
        """Queue a singleton job (digests, edits, housekeeping): one at a time, anywhere."""
        return await self._defer(self.singleton_task, lock=f"singleton:{name}",
                                 args={"name": name})

    async def _defer(self, task: Any, *, lock: str, args: dict[str, Any],
                     delay: float = 0.0) -> bool:
        options: dict[str, Any] = {"lock": lock, "queueing_lock": lock}
        if delay:
            options["schedule_in"] = {"seconds": delay}
        try:
            await task.configure(**options).defer_async(**args)
        except AlreadyEnqueued:
            return False
        return True

    def _retrying(self, job: Callable[..., Awaitable[None]], name: str, prefix: str, key: str):
        """The job, logged when it fails and queued again (as task `name`, locked on
        "prefix:args[key]") with backoff, up to MAX_ATTEMPTS runs; `attempt` counts them."""
        async def run(attempt: int = 1, **args: str) -> None:
            try:
                await job(**args)
            except Exception as exc:  # noqa: BLE001 (logged; retried below)
                subject = args[key]
                again = attempt < MAX_ATTEMPTS
                log.exception("job-failed", extra={"fields": {
                    "task": name, "subject": subject, "attempt": attempt,
                    "error": type(exc).__name__, "retry": again}})
                if again:
                    await self._defer(self.procrastinate.tasks[name], lock=f"{prefix}:{subject}",
                                      args={key: subject, "attempt": attempt + 1},
                                      delay=min(BACKOFF_MAX, 2.0 ** attempt))
        run.__name__ = job.__name__
        return run

    # ------------------------------------------------------------ the jobs

    async def _poll(self, url: str) -> None:
        app = self.app
        feed = next((f for f in app.feeds() if f.url == url), None)
        if feed is None:
            return  # no longer in this instance's watchlist
        state = await app.store.run(app.store.feed_state, url)
        if state and state.next_poll_at and state.next_poll_at > app.clock() + DUE_SLACK:
            app.metrics.queue_skipped()
            return  # polled already (by this instance or another) since it was queued
        outcome = await app.pipeline.poll(feed, state)
        if outcome.alerts:
            app.deliver_soon()
        if self.on_poll is not None:
            self.on_poll(outcome)

    async def _chat(self, chat: str) -> None:
        worker = self.app.telegram.worker if self.app.telegram else None
        if worker is not None:
            await worker.deliver_chat(chat)

    async def _singleton(self, name: str) -> None:
        job = self.singletons.get(name)
        if job is not None:
            await job()

    # ------------------------------------------------------------ sweeps

    async def prune(self, hours: int = 72) -> None:
        """Forget finished jobs (failed and aborted ones too) older than `hours`."""
        await self.procrastinate.job_manager.delete_old_jobs(
            nb_hours=hours, include_failed=True, include_cancelled=True, include_aborted=True)

    async def sweep(self) -> None:
        """Give a dead instance's jobs back to the queue and count the live instances (the
        Telegram rate is shared between them)."""
        from procrastinate.exceptions import UniqueViolation
        from procrastinate.jobs import Status

        if self._run is not None and self._run.done() and self._open:
            # the worker stopped by itself (the database went away and its side tasks
            # failed, say): without it this instance would poll and send nothing
            crash = self._run.exception() if not self._run.cancelled() else None
            log.error("queue-worker", extra={"fields": {
                "instance": self.name, "state": "stopped; starting a new one",
                "error": type(crash).__name__ if crash else "cancelled"}})
            await self._start_worker()
        manager = self.procrastinate.job_manager
        mine = self._worker.worker_id if self._worker is not None else None
        for job in await manager.get_stalled_jobs(seconds_since_heartbeat=self.timing.timeout):
            if mine is not None and job.worker_id == mine:
                continue  # this instance is alive (it is sweeping), only late with its beat
            fields = {"job": job.id, "task": job.task_name, "lock": job.lock,
                      "why": "its instance stopped"}
            try:
                await manager.retry_job(job)
                log.warning("job-retried", extra={"fields": fields})
            except UniqueViolation:  # the same job is queued again already: that one runs
                await manager.finish_job(job, status=Status.ABORTED, delete_job=False)
                log.warning("job-retried", extra={"fields": {**fields, "by": "a later job"}})
        self.instances = await self.app.store.run(self.app.store.live_instances,
                                                  within=self.timing.timeout)
        self.app.metrics.instances.set(self.instances)
        if self.app.telegram is not None:
            self.app.telegram.pacer.share(self.instances)


class UpdatesLeader:
    """Consume Telegram updates only while holding the advisory lock (one consumer at a time).

    The lock is session-level, on a connection of its own: it is released when the
    instance stops or dies (its connection closes), and the others try to take it every
    `every` seconds. The holder checks its connection as often and stops consuming when it
    is lost (another instance may then take over).
    """

    def __init__(self, database_url: str, start: Callable[[], Awaitable[None]],
                 stop: Callable[[], Awaitable[None]], *, every: float = 2.0,
                 name: str | None = None) -> None:
        self._conninfo = conninfo(database_url)
        self._start = start
        self._stop = stop
        self.every = every
        self.name = name or instance_name()
        self.leading = False
        self._closing = False
        self._task: asyncio.Task | None = None

    def begin(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def end(self) -> None:
        """Stop consuming, then release the lock (closing its connection)."""
        self._closing = True
        if self.leading:
            await self._stop_consuming()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True,
                        application_name=f"veille {self.name} updates"[:63]) as conn:
                    while True:
                        if self._closing:
                            pass
                        elif not self.leading:
                            got = await (await conn.execute(
                                "SELECT pg_try_advisory_lock(%s)", (UPDATES_LOCK,))).fetchone()
                            if got and got[0]:
                                log.info("updates", extra={"fields": {
                                    "consumer": self.name, "state": "taking over"}})
                                self.leading = True
                                await self._start()
                        else:
                            await conn.execute("SELECT 1")
                        await asyncio.sleep(self.every)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (the database is away: retry)
                log.warning("updates", extra={"fields": {
                    "consumer": self.name, "state": "lost the database",
                    "error": type(exc).__name__}})
                if self.leading:
                    await self._stop_consuming()
                await asyncio.sleep(self.every)

    async def _stop_consuming(self) -> None:
        self.leading = False
        try:
            await self._stop()
        except Exception:  # noqa: BLE001
            log.exception("updates-stop", extra={"fields": {}})

