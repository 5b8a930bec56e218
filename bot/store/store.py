"""The state database: feeds' polling state, seen items, their matches, and the alert outbox.

One Engine, one short connection and one transaction per call, so a Store can be shared by
threads (async code calls it through Store.run, on the store's own threads). The database's
uniqueness constraints, not Python sets, decide which items are new: two instances never
alert twice.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from functools import lru_cache, partial
from typing import (Any, Callable, Collection, ContextManager, Iterator, Mapping, Sequence,
                    TypeVar)

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ..errors import StoreError
from ..model import Alert, FeedSpec, Hit, Item, Match
from ..stories import StoryIndex, title_fingerprint
from .deliveries import DeliveryStore
from .instances import InstanceStore
from .subscribers import SubscriberStore
from .stories import StoryStore
from .watch import WatchStore
from .schema import UTCDateTime, alerts, deliveries, feeds, items, matches

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
BACKENDS = ("sqlite", "postgresql")
BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK = 0x7665696C6C65  # "veille": the pg_advisory_lock key held around upgrades
_WRITE = "veille_write"  # execution option: this transaction will write (SQLite: BEGIN IMMEDIATE)
_CHUNK = 500  # values per IN (...) list
SEEN_REFRESH = timedelta(hours=6)  # last_seen_at is refreshed when older than this
_MIGRATING = threading.Lock()  # alembic's `context` and `op` are process-wide globals
T = TypeVar("T")


# ---------------------------------------------------------------- values returned


@dataclass(frozen=True, slots=True)
class FeedState:
    """One row of `feeds`: what veille remembers about polling a declared feed."""

    id: int
    declared_url: str
    url: str
    name: str
    active: bool
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    first_success_at: datetime | None
    next_poll_at: datetime | None
    error_streak: int
    last_error: str | None
    last_status: int | None
    polls: int
    items_total: int

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> FeedState:
        return cls(**row._mapping)

    @property
    def first_poll(self) -> bool:
        """Whether no poll of this feed has been parsed yet (its items are the backlog)."""
        return self.first_success_at is None


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """The outcome of one poll's fetch, as the feeds row keeps it."""

    status: int | None
    next_poll_at: datetime | None
    error: str | None = None  # None: the fetch succeeded (the error streak resets)
    etag: str | None = None  # None validators keep the stored ones
    last_modified: str | None = None
    body_hash: str | None = None
    new_url: str | None = None  # a permanent redirect moved the feed here

    def params(self, declared_url: str, now: datetime, *, parsed: bool) -> dict[str, Any]:
        """The parameters of _RECORD for this fetch."""
        return {"r_url": declared_url, "r_now": now, "r_ok": self.error is None,
                "r_parsed": parsed, "r_status": self.status, "r_next": self.next_poll_at,
                "r_error": self.error, "r_etag": self.etag, "r_modified": self.last_modified,
                "r_hash": self.body_hash, "r_moved": self.new_url}


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What one claim stored: the new items, the alerts it queued, the matches kept silent."""

    items: tuple[Item, ...]
    alerts: tuple[Alert, ...]
    silent: int  # new matched items recorded without alerts (older than alert_cutoff or undated)

    @property
    def new(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One outbox row with its item, for `veille alerts`."""

    id: int
    topic: str
    destination: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    title: str
    link: str
    source: str
    published: datetime | None
    terms: tuple[str, ...]
    story: str | None
    message_id: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PruneResult:
    """How many rows prune deleted."""

    items: int
    matches: int
    alerts: int


# ---------------------------------------------------------------- the store


class Store(DeliveryStore, SubscriberStore, StoryStore, WatchStore, InstanceStore):
    """veille's state; build it with Store.open(url)."""

    def __init__(self, engine: sa.Engine, *, serialize: bool = False) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        # An in-memory SQLite database is one shared connection: take turns.
        self._lock: ContextManager[Any] = threading.Lock() if serialize else nullcontext()
        # The threads that run() uses: one for SQLite (its writes are serial anyway, and more
        # threads only fight over the GIL and its write lock), a few for PostgreSQL.
        workers = 1 if engine.dialect.name == "sqlite" else 8
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store")
        self.url = engine.url.render_as_string(hide_password=True)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Connect, migrate to the latest schema, and return the store.

        create=False (read-only commands): a SQLite file that does not exist is a StoreError,
        never a new empty database (nor the folders of a mistyped path).
        """
        parsed = _parse_url(url)
        engine, memory = _make_engine(parsed, create=create)
        store = cls(engine, serialize=memory)
        try:
            with store._errors("migrating"):
                _migrate(store._engine, store._writer)
        except BaseException:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        """Close every pooled connection (after the calls already queued by run())."""
        self._threads.shutdown(wait=True)
        self._engine.dispose()

    async def run(self, method: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Await a Store method run off the event loop, on the store's own threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, partial(method, *args, **kwargs))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._engine.dialect.name

    # ------------------------------------------------------------ feeds

    def sync_feeds(self, specs: Sequence[FeedSpec]) -> None:
        """Register declared feeds, refresh their names; feeds no longer declared go inactive."""
        named = {s.url: s.name for s in specs}
        with self._tx("syncing feeds") as conn:
            if named:
                rows = [{"declared_url": u, "url": u, "name": n} for u, n in named.items()]
                conn.execute(self._insert_ignore(feeds), rows)
                conn.execute(_RENAME, [{"d_url": u, "d_name": n} for u, n in named.items()])
            gone = sa.update(feeds).where(feeds.c.declared_url.not_in(list(named)))
            conn.execute(gone.values(active=False))

    def feed_state(self, declared_url: str) -> FeedState | None:
        """The polling state of one declared feed, or None if it was never synced."""
        with self._tx("reading a feed", write=False) as conn:
            row = conn.execute(sa.select(feeds).where(feeds.c.declared_url == declared_url)).first()
        return FeedState.from_row(row) if row else None

    def feeds_overview(self) -> list[FeedState]:
        """Every feed ever declared, active ones first, by name."""
        query = sa.select(feeds).order_by(feeds.c.active.desc(), feeds.c.name, feeds.c.id)
        with self._tx("listing feeds", write=False) as conn:
            return [FeedState.from_row(r) for r in conn.execute(query)]

    def record(self, declared_url: str, record: FetchRecord, *, now: datetime) -> None:
        """Record one poll that stored no items (failed, 304, unchanged body)."""
        with self._tx("recording a fetch") as conn:
            if conn.execute(_RECORD, record.params(declared_url, now, parsed=False)).first() is None:
                raise StoreError(_unknown_feed(declared_url))

    def seen_guids(self, declared_url: str) -> set[str]:
        """The guids already stored for this feed (to skip matching known items)."""
        query = (
            sa.select(items.c.guid)
            .join(feeds, feeds.c.id == items.c.feed_id)
            .where(feeds.c.declared_url == declared_url)
        )
        with self._tx("reading guids", write=False) as conn:
            return set(conn.scalars(query))

    # ------------------------------------------------------------ items and the outbox

    def claim(
        self,
        declared_url: str,
        items: Sequence[Item],  # shadows the table, which claim itself never names
        matches: Mapping[str, Sequence[Match]],
        *,
        now: datetime,
        alert_cutoff: datetime | None,
        destinations: Sequence[str] = ("console",),
        source_key: str | None = None,
        fetch: FetchRecord | None = None,
        known: Collection[str] = (),
        stories: StoryIndex | None = None,
    ) -> ClaimResult:
        """Store the items never seen before, their matches, and their alerts, atomically.

        `matches` is keyed by guid. A new matched item published before `alert_cutoff` (or
        undated, when there is a cutoff) is recorded without alerts. `fetch`, when given, is
        recorded in the same transaction (what record() would do). `known`: guids this feed is
        known to have given already (seen_guids): not offered again, only marked seen.
        `stories`, when given, puts each new matched item in a story (stories.py) and alerts
        only on the items that open one: one alert per (destination, topic, story).
        """
        batch = _first_per_guid(items)
        offered = [i for i in batch if i.guid not in known] if known else batch
        told: list[tuple[str, str]] = []  # what the story index was told, undone on rollback
        try:
            return self._claim(declared_url, batch, offered, matches, now, alert_cutoff,
                               destinations, source_key, fetch, stories, told)
        except BaseException:
            for topic, key in told if stories is not None else ():
                stories.remove(topic, key)
            raise

    def _claim(self, declared_url: str, batch: list[Item], offered: list[Item],
               matches: Mapping[str, Sequence[Match]], now: datetime,
               alert_cutoff: datetime | None, destinations: Sequence[str],
               source_key: str | None, fetch: FetchRecord | None,
               index: StoryIndex | None, told: list[tuple[str, str]]) -> ClaimResult:
        with self._tx("claiming items") as conn:
            feed_id = _lock_feed(conn, declared_url, now, fetch)
            ids = self._insert_items(conn, feed_id, source_key or declared_url, offered, now)
            _touch_seen(conn, feed_id, [i for i in batch if i.guid not in ids], now)
            fresh = [i for i in batch if i.guid in ids]
            queued, silent = self._queue(
                conn, fresh, ids, matches, now, alert_cutoff, destinations, index, told
            )
            if fresh:
                conn.execute(_COUNT_ITEMS, {"c_id": feed_id, "c_new": len(fresh)})
        return ClaimResult(tuple(fresh), tuple(queued), silent)

    def _insert_items(
        self, conn: sa.Connection, feed_id: int, source_key: str, batch: list[Item], now: datetime
    ) -> dict[str, int]:
        """Insert what no uniqueness constraint refuses; guid -> id of the rows inserted.

        One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING per 500 items, written in
        the driver's own parameter style: SQLAlchemy's per-row parameter handling cost three
        times the database's own work here, on the hottest statement of a cycle.
        """
        if not batch:
            return {}
        when = _datetime_bind(conn.dialect)
        stamp = when(now)
        rows = [
            (feed_id, i.guid, i.url or None,  # NULLs never collide in a UNIQUE constraint
             (i.fingerprint or title_fingerprint(i.title, i.summary)) or None, source_key,
             i.title, i.summary,
             i.link, i.source, i.lang, i.author,
             when(i.published) if i.published is not None else None, stamp, stamp)
            for i in batch
        ]
        rows.sort(key=lambda r: r[2] or "")  # one lock order for every instance
        ids: dict[str, int] = {}
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start : start + _ROWS_PER_INSERT]
            sql = _items_insert_sql(conn.dialect.paramstyle, len(chunk))
            params = tuple(value for row in chunk for value in row)
            ids.update((guid, id_) for id_, guid in conn.exec_driver_sql(sql, params))
        return ids

    def _queue(
        self,
        conn: sa.Connection,
        fresh: list[Item],
        ids: Mapping[str, int],
        matches_: Mapping[str, Sequence[Match]],
        now: datetime,
        cutoff: datetime | None,
        destinations: Sequence[str],
        index: StoryIndex | None = None,
        told: list[tuple[str, str]] | None = None,
    ) -> tuple[list[Alert], int]:
        """Insert the matches of new items and one pending alert per (destination, topic),
        or, with a story index, per (destination, topic, story) for the items opening one."""
        match_rows, wanted, silent, pairs = [], [], 0, []
        for item in fresh:
            found = _one_per_topic(matches_.get(item.guid, ()))
            match_rows += [_match_row(ids[item.guid], m) for m in found]
            pairs += [(item, m) for m in found]
            if found and not _alertable(item, cutoff):
                silent += 1
                continue
            wanted += [(item, m, d) for m in found for d in destinations]
        if match_rows:
            conn.execute(_INSERT_MATCHES, match_rows)
        story: dict[tuple[str, str], str | None] = {}
        if index is not None:  # silent items open or join stories too: later copies stay quiet
            placed = self._place_stories(conn, pairs, ids, index, now,
                                         told if told is not None else [])
            wanted = [(i, m, d) for i, m, d in wanted if placed[(i.guid, m.topic)].opened]
            story = {k: p.story for k, p in placed.items()}
        if not wanted:
            return [], silent
        rows = [_alert_row(ids[i.guid], m.topic, d, now, story.get((i.guid, m.topic)))
                for i, m, d in wanted]
        got = {(r.item_id, r.topic, r.destination): r.id
               for r in conn.execute(_INSERT_ALERTS, rows)}
        return [
            Alert(m.topic, i, m, destination=d, story=story.get((i.guid, m.topic)),
                  id=got[(ids[i.guid], m.topic, d)])
            for i, m, d in wanted
        ], silent

    def pending_alerts(
        self, *, now: datetime, limit: int = 100, destination: str | None = None
    ) -> list[Alert]:
        """Alerts due for delivery (pending, next attempt not in the future), oldest first."""
        with self._tx("reading pending alerts", write=False) as conn:
            rows = conn.execute(_due(now, limit, destination))
            return [_alert_from_row(r) for r in rows]

    def lease_alerts(
        self,
        *,
        now: datetime,
        until: datetime,
        limit: int = 100,
        destination: str | None = None,
    ) -> list[Alert]:
        """Take due alerts for delivery: each is returned to one caller only, until `until`.

        Concurrent workers (threads or instances) never lease the same alert twice; one that
        crashes leaves its alerts to be retried after `until`.
        """
        with self._tx("leasing alerts") as conn:
            due = {r.id: r for r in conn.execute(_due(now, limit, destination))}
            if not due:
                return []
            taken = set(conn.scalars(_lease(list(due), now, until)))
        return [_alert_from_row(r) for id_, r in due.items() if id_ in taken]

    def mark_sent(self, alert_id: int, *, now: datetime, message_id: str | None = None) -> None:
        """The alert was delivered (as `message_id`, when the destination gives one)."""
        params = {"a_id": alert_id, "a_now": now, "a_message": message_id}
        self._update_alert(_SENT, params, alert_id, "marking an alert sent")

    def mark_failed(
        self, alert_id: int, *, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """A delivery failed: retry at `retry_at`, or give up for good when it is None."""
        params = {"a_id": alert_id, "a_error": error, "a_retry": retry_at}
        self._update_alert(_FAILED, params, alert_id, "marking an alert failed")

    def _update_alert(self, stmt: Any, params: dict[str, Any], alert_id: int, what: str) -> None:
        with self._tx(what) as conn:
            if conn.execute(stmt, params).rowcount == 0:
                raise StoreError(f"no alert with id {alert_id} in {self.url}")

    def recent_alerts(
        self, *, since: datetime, topic: str | None = None, limit: int = 1000
    ) -> list[AlertRow]:
        """Alerts created since `since`, newest first, with their items."""
        query = _ALERT_ROWS.where(alerts.c.created_at >= since)
        if topic is not None:
            query = query.where(alerts.c.topic == topic)
        query = query.order_by(alerts.c.created_at.desc(), alerts.c.id.desc()).limit(limit)
        with self._tx("listing alerts", write=False) as conn:
            return [_alert_row_from(r) for r in conn.execute(query)]

    def alert_counts(self) -> dict[str, int]:
        """Number of alerts per status ('pending', 'sent', 'failed'), zeros included."""
        query = sa.select(alerts.c.status, sa.func.count()).group_by(alerts.c.status)
        with self._tx("counting alerts", write=False) as conn:
            counted = dict(conn.execute(query).all())
        return {s: counted.get(s, 0) for s in ("pending", "sent", "failed")}

    def prune(self, *, before: datetime) -> PruneResult:
        """Forget items last seen before `before`, with their matches and finished alerts.

        Items that a pending alert or an unsent delivery still refers to are kept.
        """
        pending = alerts.alias("pending")
        doomed = sa.select(items.c.id).where(
            items.c.last_seen_at < before,
            ~sa.exists().where(pending.c.item_id == items.c.id, pending.c.status == "pending"),
            ~sa.exists().where(pending.c.item_id == items.c.id,
                               deliveries.c.alert_id == pending.c.id,
                               deliveries.c.status.in_(("pending", "digest"))),
        )
        with self._tx("pruning") as conn:
            gone = sa.select(alerts.c.id).where(alerts.c.item_id.in_(doomed))
            conn.execute(sa.delete(deliveries).where(deliveries.c.alert_id.in_(gone)))
            a = conn.execute(sa.delete(alerts).where(alerts.c.item_id.in_(doomed))).rowcount
            m = conn.execute(sa.delete(matches).where(matches.c.item_id.in_(doomed))).rowcount
            i = conn.execute(sa.delete(items).where(items.c.id.in_(doomed))).rowcount
        self.prune_stories(before=before)  # stories no item joined within the retention
        return PruneResult(items=i, matches=m, alerts=a)

    # ------------------------------------------------------------ operators
    # Read-only views for the status page, /metrics, /readyz and `veille replay` (alerts per
    # topic per day and subscribers per topic: subscribers.py).

    def ping(self) -> str:
        """The schema revision, read from the database: it answers and is migrated."""
        with self._tx("checking the database", write=False) as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()

    def pending_counts(self) -> dict[str, int]:
        """What waits to be sent: 'outbox' (pending alerts, every destination), 'telegram'
        (per-chat deliveries due), 'digest' (per-chat deliveries held for a digest)."""
        open_ = sa.select(deliveries.c.status, sa.func.count()).where(
            deliveries.c.status.in_(("pending", "digest"))).group_by(deliveries.c.status)
        outbox = sa.select(sa.func.count()).where(alerts.c.status == "pending")
        with self._tx("counting pending deliveries", write=False) as conn:
            waiting = dict(conn.execute(open_).all())
            return {"outbox": conn.execute(outbox).scalar_one(),
                    "telegram": waiting.get("pending", 0), "digest": waiting.get("digest", 0)}

    def stored_items(self, *, since: datetime) -> list[Item]:
        """Items first seen since `since`, oldest first, with the text they were matched on."""
        query = (sa.select(feeds.c.declared_url.label("feed"), items.c.guid, items.c.url,
                           items.c.link, items.c.title, items.c.summary, items.c.published,
                           items.c.lang, items.c.author, items.c.source)
                 .join(feeds, feeds.c.id == items.c.feed_id)
                 .where(items.c.first_seen_at >= since)
                 .order_by(items.c.first_seen_at, items.c.id))
        with self._tx("reading stored items", write=False) as conn:
            return [Item(**{**r._mapping, "url": r.url or ""}) for r in conn.execute(query)]

    # ------------------------------------------------------------ plumbing

    def _insert_ignore(self, table: sa.Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING (any constraint), in this database's dialect."""
        dialect = postgresql if self.backend == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    @contextmanager
    def _tx(self, what: str, *, write: bool = True) -> Iterator[sa.Connection]:
        """One connection, one transaction; database errors come out as StoreError."""
        engine = self._writer if write else self._engine
        with self._errors(what), self._lock, engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(self._describe(what, exc)) from exc

    def _describe(self, what: str, exc: SQLAlchemyError) -> str:
        """A one-line reason naming the database, never its password."""
        cause = getattr(exc, "orig", None) or exc
        reason = " ".join(str(cause).split())[:500]
        message = f"{what} failed on {self.url}: {type(cause).__name__}: {reason}"
        password = self._engine.url.password
        return message.replace(str(password), "***") if password else message


# ---------------------------------------------------------------- opening


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("not a database URL SQLAlchemy understands") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() not in BACKENDS:
        raise StoreError(f"unsupported database {shown}: use SQLite or PostgreSQL")
    try:
        parsed.get_dialect()
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"no database driver for {shown}: {exc}") from None
    return parsed


def _make_engine(url: URL, *, create: bool = True) -> tuple[sa.Engine, bool]:
    """An Engine configured for this backend; True when it is an in-memory SQLite database."""
    if url.get_backend_name() == "postgresql":
        args = {} if "connect_timeout" in url.query else {"connect_timeout": 10}
        return sa.create_engine(url, pool_pre_ping=True, connect_args=args), False
    memory = url.database in (None, "", ":memory:")
    if memory:
        args = {"check_same_thread": False}  # one connection, used in turns (Store._lock)
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args=args)
    else:
        if not url.database.startswith("file:"):
            path = Path(url.database).expanduser()
            if not create and not path.is_file():
                raise StoreError(f"no database at {path.resolve()}: nothing polled there yet, "
                                 "or a mistyped path")
            _make_parent(path)
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine, memory


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory of {path}: {exc.strerror}") from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL, relaxed fsync, a busy timeout and foreign keys, on every new connection."""
    dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _sqlite_begin)
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _wal(cursor: Any) -> None:
    """Put the database in WAL mode (a setting the file keeps), or find it there.

    The switch takes an exclusive lock and SQLite does not wait for it (the busy timeout does
    not apply): when several processes or threads open a new database at once, all but one
    are refused with "database is locked". They try again, for as long as the busy timeout,
    instead of failing to start. A database already in WAL mode is only read.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        _sleep(delay)
        delay = min(delay * 2, 0.25)


_sleep = time.sleep  # a seam for the test that holds a new database locked


def _sqlite_begin(conn: sa.Connection) -> None:
    # A writer takes the write lock up front: a read lock upgraded later cannot wait for a
    # busy database in WAL mode and fails with "database is locked" instead.
    write = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _head() -> str:
    """The latest migration's revision: our revisions are their file's 4-digit prefix, in one
    line (test_store checks this against alembic's own idea of the head)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def _at_head(engine: sa.Engine) -> bool:
    """Whether the schema is already the latest (read without alembic). A database that
    cannot be reached raises here, once, rather than being tried again by the upgrade."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):  # a new database
            return False
        found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        return list(found) == [_head()]


def _migrate(reader: sa.Engine, writer: sa.Engine) -> None:
    """Upgrade to head in one transaction, one process at a time.

    A database already at head is only read, through `reader` (on SQLite, without waiting for
    another process's write transaction): alembic is not even imported (about 10 MB a
    process keeps for its whole life, and half a second at startup).
    """
    if _at_head(reader):
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with _MIGRATING, writer.connect() as conn, conn.begin():
        # SQLite: BEGIN IMMEDIATE already holds the write lock. PostgreSQL: an advisory lock,
        # released at commit, makes a second process wait and then find the schema at head.
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


# ---------------------------------------------------------------- rows


def _unknown_feed(declared_url: str) -> str:
    return f"unknown feed {declared_url!r}: call Store.sync_feeds with its spec first"


_RENAME = (
    sa.update(feeds)
    .where(feeds.c.declared_url == sa.bindparam("d_url"))
    .values(name=sa.bindparam("d_name"), active=True)
)


def _lock_feed(conn: sa.Connection, declared_url: str, now: datetime,
               fetch: FetchRecord | None) -> int:
    """Mark the feed parsed once at least (and record the fetch); its row lock orders
    concurrent claims of it."""
    if fetch is None:
        row = conn.execute(_PARSED, {"p_url": declared_url, "p_now": now}).first()
    else:
        row = conn.execute(_RECORD, fetch.params(declared_url, now, parsed=True)).first()
    if row is None:
        raise StoreError(_unknown_feed(declared_url))
    return row.id


def _bind(name: str, type_: Any = None) -> Any:
    return sa.bindparam(name, type_=type_)


_WHEN = UTCDateTime()
_OK = _bind("r_ok", sa.Boolean())
# Statements built once: constructing a statement per call cost more than running it.
# One poll's fetch: None validators keep the stored ones, a failure grows the error streak,
# a success resets it; r_parsed also marks the feed parsed once at least.
_RECORD = (
    sa.update(feeds)
    .where(feeds.c.declared_url == _bind("r_url"))
    .values(
        last_poll_at=_bind("r_now", _WHEN),
        polls=feeds.c.polls + 1,
        last_status=_bind("r_status", sa.Integer()),
        next_poll_at=_bind("r_next", _WHEN),
        error_streak=sa.case((_OK, 0), else_=feeds.c.error_streak + 1),
        last_success_at=sa.case((_OK, _bind("r_now", _WHEN)), else_=feeds.c.last_success_at),
        last_error=_bind("r_error", sa.Text()),
        etag=sa.func.coalesce(_bind("r_etag", sa.Text()), feeds.c.etag),
        last_modified=sa.func.coalesce(_bind("r_modified", sa.Text()), feeds.c.last_modified),
        body_hash=sa.func.coalesce(_bind("r_hash", sa.Text()), feeds.c.body_hash),
        url=sa.func.coalesce(_bind("r_moved", sa.Text()), feeds.c.url),
        first_success_at=sa.case(
            (_bind("r_parsed", sa.Boolean()),
             sa.func.coalesce(feeds.c.first_success_at, _bind("r_now", _WHEN))),
            else_=feeds.c.first_success_at),
    )
    .returning(feeds.c.id)
)
_PARSED = (
    sa.update(feeds)
    .where(feeds.c.declared_url == _bind("p_url"))
    .values(first_success_at=sa.func.coalesce(feeds.c.first_success_at, _bind("p_now", _WHEN)))
    .returning(feeds.c.id)
)
_SENT = (
    sa.update(alerts)
    .where(alerts.c.id == _bind("a_id"))
    .values(status="sent", sent_at=_bind("a_now", _WHEN), message_id=_bind("a_message", sa.Text()),
            last_error=None, attempts=alerts.c.attempts + 1)
)
# a_retry NULL: a permanent failure (status failed); else pending again from a_retry on
_RETRY = _bind("a_retry", _WHEN)
_FAILED = (
    sa.update(alerts)
    .where(alerts.c.id == _bind("a_id"))
    .values(last_error=_bind("a_error", sa.Text()), attempts=alerts.c.attempts + 1,
            status=sa.case((_RETRY.is_(None), "failed"), else_=alerts.c.status),
            next_attempt_at=sa.func.coalesce(_RETRY, alerts.c.next_attempt_at))
)
_INSERT_MATCHES = sa.insert(matches)
_INSERT_ALERTS = sa.insert(alerts).returning(
    alerts.c.id, alerts.c.item_id, alerts.c.topic, alerts.c.destination
)
_COUNT_ITEMS = (
    sa.update(feeds)
    .where(feeds.c.id == _bind("c_id"))
    .values(items_total=feeds.c.items_total + _bind("c_new", sa.Integer()))
)


def _touch_seen(conn: sa.Connection, feed_id: int, known: list[Item], now: datetime) -> None:
    """Refresh last_seen_at of the stored rows that these items are copies of, where it is
    older than SEEN_REFRESH (so a feed polled every few minutes does not rewrite its rows
    each time; retention is counted in days).

    The rows are found first and locked in id order: two instances refreshing overlapping
    rows (the same article in several feeds) then wait for each other instead of deadlocking.
    """
    ids: set[int] = set()
    stale = items.c.last_seen_at < now - SEEN_REFRESH
    for chunk in _chunks([i.guid for i in known]):
        mine = sa.and_(items.c.feed_id == feed_id, items.c.guid.in_(chunk), stale)
        ids.update(conn.scalars(sa.select(items.c.id).where(mine)))
    for chunk in _chunks([i.url for i in known if i.url]):
        ids.update(conn.scalars(sa.select(items.c.id).where(items.c.url.in_(chunk), stale)))
    for chunk in _chunks(sorted(ids)):
        if conn.dialect.name == "postgresql":  # SQLite has one writer: no row locks to order
            lock = sa.select(items.c.id).where(items.c.id.in_(chunk)).order_by(items.c.id)
            conn.execute(lock.with_for_update())
        conn.execute(sa.update(items).where(items.c.id.in_(chunk)).values(last_seen_at=now))


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _first_per_guid(batch: Sequence[Item]) -> list[Item]:
    first: dict[str, Item] = {}
    for item in batch:
        first.setdefault(item.guid, item)
    return list(first.values())


def _one_per_topic(found: Sequence[Match]) -> list[Match]:
    first: dict[str, Match] = {}
    for match in found:
        first.setdefault(match.topic, match)
    return list(first.values())


def _alertable(item: Item, cutoff: datetime | None) -> bool:
    """Whether a new item is recent enough to alert (the caller's first-poll / age rule)."""
    if cutoff is None:
        return True
    return item.published is not None and item.published >= cutoff


_ITEM_COLUMNS = ("feed_id", "guid", "url", "title_fp", "source_key", "title", "summary", "link",
                 "source", "lang", "author", "published", "first_seen_at", "last_seen_at")
_ROWS_PER_INSERT = 500  # 7,000 parameters: under SQLite's and PostgreSQL's limits


@lru_cache(maxsize=64)
def _items_insert_sql(paramstyle: str, n_rows: int) -> str:
    """INSERT INTO items ... VALUES (...) x n_rows ON CONFLICT DO NOTHING RETURNING id, guid."""
    mark = "?" if paramstyle == "qmark" else "%s"  # sqlite3 / psycopg (format, pyformat)
    row = "(" + ", ".join([mark] * len(_ITEM_COLUMNS)) + ")"
    return (f"INSERT INTO items ({', '.join(_ITEM_COLUMNS)}) VALUES "
            + ", ".join([row] * n_rows) + " ON CONFLICT DO NOTHING RETURNING id, guid")


def _datetime_bind(dialect: sa.Dialect) -> Callable[[datetime], Any]:
    """A datetime as this dialect stores it in a UTCDateTime column (what SQLAlchemy binds)."""
    process = items.c.first_seen_at.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda value: value)


def _match_row(item_id: int, match: Match) -> dict[str, Any]:
    hits = [
        {"term": h.term, "field": h.field, "start": h.start, "end": h.end, "text": h.text}
        for h in match.hits
    ]
    return {
        "item_id": item_id,
        "topic": match.topic,
        "terms": json.dumps(list(match.terms), ensure_ascii=False),
        "hits": json.dumps(hits, ensure_ascii=False),
    }


def _alert_row(item_id: int, topic: str, destination: str, now: datetime,
               story: str | None = None) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "topic": topic,
        "destination": destination,
        "story_id": story,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


_ALERT_JOIN = (
    alerts.join(items, items.c.id == alerts.c.item_id)
    .join(feeds, feeds.c.id == items.c.feed_id)
    .outerjoin(
        matches, sa.and_(matches.c.item_id == alerts.c.item_id, matches.c.topic == alerts.c.topic)
    )
)

_ALERTS = sa.select(
    alerts.c.id,
    alerts.c.topic,
    alerts.c.destination,
    alerts.c.story_id,
    alerts.c.attempts,
    alerts.c.created_at,
    feeds.c.declared_url.label("feed"),
    items.c.guid,
    items.c.url,
    items.c.link,
    items.c.title,
    items.c.summary,
    items.c.published,
    items.c.lang,
    items.c.author,
    items.c.source,
    matches.c.hits,
).select_from(_ALERT_JOIN)

_ALERT_ROWS = sa.select(
    alerts.c.id,
    alerts.c.topic,
    alerts.c.destination,
    alerts.c.status,
    alerts.c.attempts,
    alerts.c.created_at,
    alerts.c.sent_at,
    items.c.title,
    items.c.link,
    items.c.source,
    items.c.published,
    matches.c.terms,
    alerts.c.story_id,
    alerts.c.message_id,
    alerts.c.last_error,
).select_from(_ALERT_JOIN)


def _due(now: datetime, limit: int, destination: str | None) -> sa.Select[Any]:
    query = _ALERTS.where(alerts.c.status == "pending", alerts.c.next_attempt_at <= now)
    if destination is not None:
        query = query.where(alerts.c.destination == destination)
    return query.order_by(alerts.c.created_at, alerts.c.id).limit(limit)


def _lease(ids: list[int], now: datetime, until: datetime) -> Any:
    """Push the next attempt of those still due to `until`; returns the ids it moved."""
    # The WHERE is re-checked after waiting on a row another worker holds (PostgreSQL) or
    # under the write lock (SQLite), so a row is moved, and returned, once.
    return (
        sa.update(alerts)
        .where(alerts.c.id.in_(ids), alerts.c.status == "pending", alerts.c.next_attempt_at <= now)
        .values(next_attempt_at=until)
        .returning(alerts.c.id)
    )


def _alert_from_row(row: sa.Row[Any]) -> Alert:
    item = Item(
        feed=row.feed,
        guid=row.guid,
        url=row.url or "",
        link=row.link,
        title=row.title,
        summary=row.summary,
        published=row.published,
        lang=row.lang,
        author=row.author,
        source=row.source,
    )
    hits = tuple(Hit(**h) for h in json.loads(row.hits or "[]"))
    extra = {"attempts": row.attempts, "created_at": row.created_at}
    match = Match(row.topic, hits)
    return Alert(row.topic, item, match, row.destination, row.story_id, row.id, extra)


def _alert_row_from(row: sa.Row[Any]) -> AlertRow:
    values = dict(row._mapping)
    values["terms"] = tuple(json.loads(values["terms"] or "[]"))
    values["story"] = values.pop("story_id")
    return AlertRow(**values)
