"""The instances sharing a PostgreSQL database, as procrastinate's tables and the server see
them: for the rate share (queue.py) and `veille workers`. Read-only but for the names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from .schema import deliveries, instances


@dataclass(frozen=True, slots=True)
class Job:
    """A job being run: its task, what it is about (a feed URL, a chat), since when."""

    id: int
    task: str
    subject: str
    attempts: int
    started_at: datetime | None


@dataclass(frozen=True, slots=True)
class Instance:
    """One `veille run` worker: its name (host:pid), last heartbeat, jobs in progress."""

    worker_id: int
    name: str
    started_at: datetime | None
    heartbeat_at: datetime
    alive: bool
    jobs: list[Job] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueueOverview:
    instances: list[Instance]
    queued: dict[str, int]  # queue -> jobs waiting
    orphans: list[Job]  # running jobs of an instance that stopped (to be retried)
    failed: int  # jobs that used every retry
    updates_consumer: str | None  # who consumes Telegram updates (application_name)
    leased: int  # deliveries leased by a chat job right now, across instances


UPDATES_LOCK = 0x7665696C7570  # "veilup": the advisory lock of the one updates consumer
_WORKERS = sa.table("procrastinate_workers", sa.column("id"))  # procrastinate's own table
_LIVE = sa.text("SELECT count(*) FROM procrastinate_workers "
                "WHERE last_heartbeat > now() - make_interval(secs => :within)")


class InstanceStore:
    """Mixed into Store (store.py)."""

    def instance_started(self, worker_id: int, name: str, *, now: datetime) -> None:
        """Name this instance's worker; forget the names of workers no longer registered."""
        if self.backend != "postgresql":
            return
        with self._tx("naming this instance") as conn:
            conn.execute(sa.delete(instances).where(instances.c.worker_id.not_in(
                sa.select(_WORKERS.c.id))))
            conn.execute(self._insert_ignore(instances).values(
                worker_id=worker_id, name=name, started_at=now))

    def live_instances(self, *, within: float) -> int:
        """Workers whose heartbeat is younger than `within` seconds (at least 1)."""
        if self.backend != "postgresql":
            return 1
        with self._tx("counting instances", write=False) as conn:
            return max(1, conn.execute(_LIVE, {"within": within}).scalar_one())

    def queue_overview(self, *, within: float, updates_lock: int) -> QueueOverview:
        """`veille workers`: instances, their jobs, the queues, the updates consumer."""
        if self.backend != "postgresql":
            raise ValueError("several instances need PostgreSQL (VEILLE_DATABASE_URL); "
                             "on SQLite one `veille run` does everything itself")
        with self._tx("reading the queue", write=False) as conn:
            workers = conn.execute(sa.text(
                "SELECT w.id, w.last_heartbeat, i.name, i.started_at, "
                "w.last_heartbeat > now() - make_interval(secs => :within) AS alive "
                "FROM procrastinate_workers w LEFT JOIN instances i ON i.worker_id = w.id "
                "ORDER BY w.id"), {"within": within}).all()
            running = conn.execute(sa.text(
                "SELECT j.id, j.task_name, j.args, j.attempts, j.worker_id, "
                "(SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id "
                " AND e.type = 'started') AS started_at "
                "FROM procrastinate_jobs j WHERE j.status = 'doing' ORDER BY j.id")).all()
            queued = dict(conn.execute(sa.text(
                "SELECT queue_name, count(*) FROM procrastinate_jobs WHERE status = 'todo' "
                "GROUP BY queue_name")).all())
            failed = conn.execute(sa.text(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'")).scalar_one()
            consumer = conn.execute(sa.text(
                "SELECT a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"),
                {"hi": (updates_lock >> 32) & 0xFFFFFFFF,
                 "lo": updates_lock & 0xFFFFFFFF}).scalar()
            chats = [_subject(r.args) for r in running if r.task_name == "veille.deliver"]
            leased = conn.scalar(sa.select(sa.func.count()).where(
                deliveries.c.status == "pending", deliveries.c.chat.in_(chats),
                deliveries.c.next_attempt_at > sa.func.now())) if chats else 0
        jobs: dict[int | None, list[Job]] = {}
        for r in running:
            jobs.setdefault(r.worker_id, []).append(
                Job(r.id, r.task_name, _subject(r.args), r.attempts, r.started_at))
        known = {w.id for w in workers}
        return QueueOverview(
            instances=[Instance(w.id, w.name or f"worker {w.id}", w.started_at,
                                w.last_heartbeat, bool(w.alive), jobs.get(w.id, []))
                       for w in workers],
            queued=queued, failed=failed,
            orphans=[j for wid, js in jobs.items() if wid not in known for j in js],
            updates_consumer=consumer, leased=leased or 0)


def _subject(args: dict) -> str:
    return str(args.get("url") or args.get("chat") or args.get("name") or "")
