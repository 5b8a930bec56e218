"""Queue mode, in process: the delivery worker hands chats to the queue instead of sending,
a chat job keeps the per-chat and per-group limits across instances (read from the store),
the overall rate is shared between live instances, and the job wrapper retries a failing
job with backoff. Real SQLite / PostgreSQL and the fake Bot API; the multi-process
behaviour is in test_instances.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.queue import MAX_ATTEMPTS, Queue, Timing, conninfo
from bot.store.schema import deliveries
from bot.telegram.pacing import GROUP_PER_MINUTE, OVERALL_PER_SECOND, Pacer
from tests.fakebot import fake_bot  # noqa: F401  (fixture)
from tests.test_delivery import Clock, claim, make_worker, statuses, store, subscribe  # noqa: F401
from tests.test_web import pg_db  # noqa: F401  (fixture)


async def test_in_queue_mode_drain_fans_out_and_dispatches_each_due_chat_once(
        store, fake_bot) -> None:
    clock = Clock()
    subscribe(store, fake_bot, 301, ("pos2",), clock)
    subscribe(store, fake_bot, 302, ("pos2", "sanctions"), clock)
    claim(store, 4, clock)
    worker, _app = make_worker(store, fake_bot, clock)
    handed: list[list[str]] = []

    async def dispatch(chats: list[str]) -> None:
        handed.append(chats)

    worker.dispatch = dispatch
    assert await worker.drain() == 2
    assert handed == [["301", "302"]]
    assert fake_bot.sent_count() == 0  # nothing sent: the chats' jobs will
    assert statuses(store) == {"pending": 6}


async def test_a_chat_job_sends_that_chat_only_and_in_order(store, fake_bot) -> None:
    clock = Clock()
    subscribe(store, fake_bot, 311, ("pos2", "sanctions"), clock)
    subscribe(store, fake_bot, 312, ("pos2", "sanctions"), clock)
    claim(store, 4, clock)
    worker, app = make_worker(store, fake_bot, clock)
    worker.dispatch = lambda chats: _nothing()
    await worker.drain()
    await app.bot.initialize()
    try:
        assert await worker.deliver_chat("311") == 4
    finally:
        await app.bot.shutdown()
    assert len(fake_bot.messages(311)) == 4 and fake_bot.messages(312) == []
    rows = [r for rs in store.deliveries_of(range(1, 5)).values() for r in rs
            if r.chat == "311"]
    ids = [r.message_id for r in sorted(rows, key=lambda r: r.alert_id)]
    assert len(ids) == 4 and ids == sorted(ids)  # oldest alert first


async def _nothing() -> None:
    return None


def _sent_earlier(store, chat: str, times) -> None:
    """Rows of this chat marked sent at these times (as another instance would have)."""
    with store._engine.begin() as conn:
        ids = list(conn.scalars(sa.select(deliveries.c.id).where(
            deliveries.c.chat == chat, deliveries.c.status == "pending")
            .order_by(deliveries.c.id).limit(len(times))))
        for delivery_id, at in zip(ids, times):
            conn.execute(sa.update(deliveries).where(deliveries.c.id == delivery_id)
                         .values(status="sent", sent_at=at, message_id=1))


@pytest.mark.parametrize("earlier, leased", [(0, GROUP_PER_MINUTE), (15, GROUP_PER_MINUTE - 15),
                                             (GROUP_PER_MINUTE, 0)])
async def test_a_group_job_takes_only_what_the_minute_has_left(
        store, fake_bot, earlier, leased) -> None:
    clock = Clock()
    subscribe(store, fake_bot, -1001, ("pos2", "sanctions"), clock, kind="supergroup")
    claim(store, 45, clock)
    worker, app = make_worker(store, fake_bot, clock)
    worker.dispatch = lambda chats: _nothing()
    await worker.drain()
    # `earlier` messages went to the group in the last minute, from another instance
    _sent_earlier(store, "-1001", [clock.now - timedelta(seconds=50 - i)
                                   for i in range(earlier)])
    await app.bot.initialize()
    try:
        assert await worker.deliver_chat("-1001") == leased
    finally:
        await app.bot.shutdown()
    assert len(fake_bot.messages(-1001)) == leased
    assert statuses(store)["pending"] == 45 - earlier - leased


async def test_a_chat_job_waits_the_chat_interval_after_another_instances_send(
        store, fake_bot) -> None:
    clock = Clock()
    subscribe(store, fake_bot, 321, ("pos2", "sanctions"), clock)
    claim(store, 3, clock)
    worker, _app = make_worker(store, fake_bot, clock, pacer=Pacer(clock=lambda: 100.0))
    worker.dispatch = lambda chats: _nothing()
    await worker.drain()
    _sent_earlier(store, "321", [clock.now - timedelta(seconds=0.4)])
    assert worker.pacer.waiting("321") == 0.0
    worker.store = _Peek(store, worker)  # look at the pacer once the lease is taken
    await worker.deliver_chat("321")
    assert worker.store.seen == pytest.approx(0.7)  # 1.1 s after the send 0.4 s ago


class _Peek:
    """The store, recording how long the pacer holds the chat when the rows are leased."""

    def __init__(self, store, worker) -> None:
        self._store, self._worker, self.seen = store, worker, None

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def run(self, method, *args, **kwargs):
        if method == self._store.lease_deliveries:
            self.seen = self._worker.pacer.waiting("321")
            return []
        return await self._store.run(method, *args, **kwargs)


def test_the_overall_rate_is_split_between_live_instances() -> None:
    pacer = Pacer()
    rate = lambda: pacer._overall.max_rate / pacer._overall.time_period  # noqa: E731
    assert rate() == pytest.approx(OVERALL_PER_SECOND)
    pacer.share(3)
    assert rate() == pytest.approx(OVERALL_PER_SECOND / 3)
    pacer.share(1)
    assert rate() == pytest.approx(OVERALL_PER_SECOND)


def test_a_dead_instance_is_noticed_within_the_lease() -> None:
    timing = Timing.from_lease(120)
    assert timing.timeout == 120 and timing.heartbeat == 10
    quick = Timing.from_lease(4)
    assert quick.timeout == 4 and quick.heartbeat == 1


def test_conninfo_keeps_the_password_for_the_driver_only() -> None:
    url = conninfo("postgresql+psycopg://veille:s3cret@db.internal:5433/veille")
    assert url == "postgresql://veille:s3cret@db.internal:5433/veille"


class _App:
    """What Queue reads of an App, without a database."""

    class settings:  # noqa: N801
        lease_seconds = 4.0
        concurrency = 10
        database_url = "postgresql+psycopg://postgres@127.0.0.1/none"


async def test_a_failing_job_is_queued_again_with_backoff_until_the_last_attempt() -> None:
    queue = Queue(_App())
    deferred: list[tuple[str, dict, float]] = []

    async def record(task, *, lock, args, delay=0.0) -> bool:
        assert task is poll_task
        deferred.append((lock, args, delay))
        return True

    queue._defer = record
    poll_task = queue.procrastinate.tasks["veille.poll"]

    async def broken(url: str) -> None:
        raise RuntimeError("store away")

    job = queue._retrying(broken, "veille.poll", "feed", "url")
    await job(url="http://f/1.xml")
    await job(attempt=3, url="http://f/1.xml")
    await job(attempt=MAX_ATTEMPTS, url="http://f/1.xml")  # the last: given up
    assert deferred == [("feed:http://f/1.xml", {"url": "http://f/1.xml", "attempt": 2}, 2.0),
                        ("feed:http://f/1.xml", {"url": "http://f/1.xml", "attempt": 4}, 8.0)]


# ---------------------------------------------------------------- on PostgreSQL


class _PgApp:
    """A Queue's view of an App on a real PostgreSQL store (no Telegram)."""

    telegram = None

    def __init__(self, url: str) -> None:
        from bot.pipeline import utcnow
        from bot.store import Store

        from bot.metrics import Metrics

        self.clock = utcnow
        self.metrics = Metrics()

        self.store = Store.open(url)
        self.settings = type("S", (), {"lease_seconds": 4.0, "concurrency": 10,
                                       "database_url": url})()


@pytest.fixture
async def pg_queue(pg_db):
    from tests.test_instances import db_url

    app = _PgApp(db_url(pg_db))
    queue = Queue(app, name="test:1")
    await queue.procrastinate.open_async()
    queue._open = True
    yield queue
    await queue.stop()
    app.store.close()


def _sql(queue, text: str, **params):
    with queue.app.store._engine.begin() as conn:
        result = conn.execute(sa.text(text), params)
        return result.all() if result.returns_rows else []


async def test_a_feed_is_queued_once_while_its_poll_waits(pg_queue) -> None:
    assert await pg_queue.defer_poll("http://f/1.xml") is True
    assert await pg_queue.defer_poll("http://f/1.xml") is False  # already waiting
    assert await pg_queue.defer_poll("http://f/2.xml") is True
    assert await pg_queue.defer_chats(["42", "42", "-100"]) == 2
    rows = _sql(pg_queue, "SELECT task_name, lock, queueing_lock FROM procrastinate_jobs "
                          "ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("veille.poll", "feed:http://f/1.xml", "feed:http://f/1.xml"),
        ("veille.poll", "feed:http://f/2.xml", "feed:http://f/2.xml"),
        ("veille.deliver", "chat:42", "chat:42"), ("veille.deliver", "chat:-100", "chat:-100")]


async def test_a_dead_instances_jobs_go_back_to_the_queue(pg_queue) -> None:
    from procrastinate.jobs import Status

    manager = pg_queue.procrastinate.job_manager
    await pg_queue.defer_poll("http://f/1.xml")
    await pg_queue.defer_poll("http://f/2.xml")
    dead = await manager.register_worker()
    for _ in range(2):  # a worker that took both jobs, then stopped beating
        await manager.fetch_job(queues=None, worker_id=dead)
    _sql(pg_queue, "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
                   "WHERE id = :id", id=dead)
    await pg_queue.defer_poll("http://f/2.xml")  # f/2's next poll is queued meanwhile
    live = await manager.register_worker()
    assert pg_queue.app.store.live_instances(within=4.0) == 1  # `live`, not the dead one
    assert live != dead
    await pg_queue.sweep()
    rows = _sql(pg_queue, "SELECT lock, status FROM procrastinate_jobs ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("feed:http://f/1.xml", "todo"),  # retried: another worker takes it
        ("feed:http://f/2.xml", Status.ABORTED.value),  # the later job of f/2 does it
        ("feed:http://f/2.xml", "todo")]
    await pg_queue.prune(hours=0)
    left = _sql(pg_queue, "SELECT status FROM procrastinate_jobs ORDER BY id")
    assert [r.status for r in left] == ["todo", "todo"]  # the aborted one is forgotten


async def test_a_worker_that_stopped_by_itself_is_started_again_and_runs_jobs(pg_queue) -> None:
    ran: list[str] = []

    async def job() -> None:
        ran.append("housekeeping")

    pg_queue.singletons["housekeeping"] = job
    await pg_queue._start_worker()
    first = pg_queue._run
    first.cancel()  # as if its side tasks had failed
    await asyncio.gather(first, return_exceptions=True)
    await pg_queue.sweep()
    assert pg_queue._run is not first and not pg_queue._run.done()
    await pg_queue.defer_singleton("housekeeping")
    for _ in range(200):
        if ran:
            break
        await asyncio.sleep(0.05)
    assert ran == ["housekeeping"]


def test_veille_workers_on_sqlite_says_what_it_needs(tmp_path) -> None:
    import subprocess
    import sys

    from bot.store import Store
    from tests.test_run import env_for

    Store.open(f"sqlite:///{tmp_path}/veille.db").close()
    done = subprocess.run([sys.executable, "-m", "bot", "workers"], env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "several instances need PostgreSQL (VEILLE_DATABASE_URL)" in done.stderr
    assert "Traceback" not in done.stderr
