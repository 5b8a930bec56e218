"""The state store, on a real SQLite file and on the machine's real PostgreSQL."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import bot.store.store as store_module
from bot.errors import StoreError
from bot.model import FeedSpec, Hit, Item, Match
from bot.store import FetchRecord, Store
from bot.store.schema import metadata, ours, stories
from bot.stories import title_fingerprint
from tests.conftest import PG_URL, REPO

T = TypeVar("T")

UTC = timezone.utc
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
FEED = "https://news.example.org/world.rss"
OTHER = "https://presse.example.fr/international.xml"
TABLES = {"feeds", "items", "matches", "alerts", "alembic_version", "subscribers",
          "subscriptions", "deliveries", "chat_moves", "instances"}


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="module")
def pg_database() -> Iterator[sa.URL]:
    """A fresh PostgreSQL database for this module, dropped afterwards."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"veille_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable at {PG_URL} (VEILLE_TEST_POSTGRES_URL): {exc.orig}")
    yield sa.make_url(PG_URL).set(database=name)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state/veille.db"
        return
    base: sa.URL = request.getfixturevalue("pg_database")
    schema = f"s_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    s.sync_feeds([FeedSpec(FEED, "World"), FeedSpec(OTHER, "International")])
    yield s
    s.close()


# ---------------------------------------------------------------- values


def item(n: int, *, feed: str = FEED, **changes: object) -> Item:
    values: dict[str, object] = {
        "feed": feed,
        "guid": f"guid-{n}",
        "url": f"https://news.example.org/story/{n}",
        "link": f"https://news.example.org/story/{n}?utm_source=rss",
        "title": f"Power of Siberia 2 financing talks resume, report {n}",
        "summary": f"Summary {n}.",
        "published": NOW - timedelta(hours=1),
        "lang": "en",
        "author": "A. Writer",
        "source": "Example News",
    }
    values.update(changes)
    return Item(**values)  # type: ignore[arg-type]


def match(topic: str = "pos2") -> Match:
    return Match(topic, (Hit('"Power of Siberia 2"', "title", 0, 18, "Power of Siberia 2"),))


def matched(*batch: Item, topics: tuple[str, ...] = ("pos2",)) -> dict[str, list[Match]]:
    return {i.guid: [match(t) for t in topics] for i in batch}


def test_the_title_fingerprint_made_at_parse_time_is_the_one_stored(store: Store) -> None:
    made = item(1, fingerprint="f" * 32)  # made by a parse worker: not made again here
    plain = item(2)  # built elsewhere (no fingerprint): made by the store
    store.sync_feeds([FeedSpec(FEED, "World")])
    store.claim(FEED, [made, plain], {}, now=NOW, alert_cutoff=None)
    with store._engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT guid, title_fp FROM items")).all())
    assert stored == {"guid-1": "f" * 32,
                      "guid-2": title_fingerprint(plain.title, plain.summary)}


def count(store: Store, table: str) -> int:
    with store._engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Run the calls in threads released together; their results, in order. An exception
    in any of them fails the test (after all have finished)."""
    barrier, results, errors = threading.Barrier(len(calls)), [None] * len(calls), []

    def run(k: int, call: Callable[[], T]) -> None:
        barrier.wait()
        try:
            results[k] = call()
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k, c)) for k, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------- migrations


def test_migrations_create_every_table_and_reopening_is_a_no_op(db_url: str) -> None:
    first = Store.open(db_url)
    first.sync_feeds([FeedSpec(FEED, "World")])
    first.close()
    again = Store.open(db_url)
    with again._engine.connect() as conn:
        assert TABLES <= set(sa.inspect(conn).get_table_names())
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
            (_newest_migration(),)
        ]
    assert [f.name for f in again.feeds_overview()] == ["World"]
    again.close()


def test_schema_py_and_the_migrations_describe_the_same_tables(store: Store) -> None:
    with store._engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_name": lambda name, type_, _parents: ours(name, type_)})
        assert compare_metadata(context, metadata) == []


def test_concurrent_opens_of_an_empty_database_migrate_once(db_url: str) -> None:
    opened = at_once(*[lambda: Store.open(db_url)] * 4)
    assert len(opened) == 4
    assert count(opened[0], "alembic_version") == 1
    for s in opened:
        s.close()


def test_a_new_database_locked_while_it_is_switched_to_wal_is_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching a file to WAL mode takes an exclusive lock that SQLite does not wait for:
    a process opening a new database while another holds it must try again, not fail."""
    path = tmp_path / "veille.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # as another process's first connection does
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # refused once: the other one's transaction ends
        waits.append(seconds)
        if holder.in_transaction:
            holder.execute("COMMIT")

    monkeypatch.setattr(store_module, "_sleep", sleep)
    s = Store.open(f"sqlite:///{path}")
    try:
        assert len(waits) == 1
        with s._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert count(s, "alembic_version") == 1
    finally:
        s.close()
        holder.close()


def test_a_database_at_head_opens_while_another_process_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding the schema at head is a read: it does not wait for another process's write
    transaction (a running instance's claim), which could hold a start-up for long."""
    url = f"sqlite:///{tmp_path}/veille.db"
    Store.open(url).close()
    writer = sqlite3.connect(tmp_path / "veille.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process, mid-claim
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 1000)  # a wait for it would fail
    try:
        Store.open(url).close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


OPEN_ON_GO = """
import sys
from bot.store import FetchRecord, Store
print("ready", flush=True)
sys.stdin.readline()
Store.open(sys.argv[1]).close()
"""


def test_processes_opening_an_empty_database_at_once_migrate_once(db_url: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_ON_GO, db_url], cwd=REPO, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    assert [p.stdout.readline() for p in procs] == ["ready\n"] * 3  # type: ignore[union-attr]
    for p in procs:  # every interpreter has imported SQLAlchemy and Alembic: go
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, errors
    s = Store.open(db_url)
    assert count(s, "alembic_version") == 1
    s.close()


def test_the_developer_alembic_ini_finds_the_migrations() -> None:
    ini = Path(store_module.__file__).with_name("alembic.ini")
    assert ScriptDirectory.from_config(Config(str(ini))).get_current_head() == _newest_migration()


def test_our_idea_of_the_head_is_alembics() -> None:
    ini = Path(store_module.__file__).with_name("alembic.ini")
    assert store_module._head() == ScriptDirectory.from_config(Config(str(ini))).get_current_head()


def test_a_database_at_head_opens_without_alembic_and_one_behind_is_upgraded(
        db_url: str) -> None:
    Store.open(db_url).close()
    probe = ("import sys; from bot.store import Store; Store.open(sys.argv[1]).close(); "
             "print('alembic' in sys.modules)")
    run = lambda: subprocess.run([sys.executable, "-c", probe, db_url], capture_output=True,  # noqa: E731
                                 text=True, check=True, cwd=Path(__file__).parent.parent).stdout
    assert run().strip() == "False"
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # as if the last migration had not run yet
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    assert run().strip() == "True"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == \
            _newest_migration()
    engine.dispose()


def _newest_migration() -> str:
    """The revision of the last file in migrations/versions (they are numbered in order)."""
    versions = Path(store_module.__file__).with_name("migrations") / "versions"
    return sorted(p.name for p in versions.glob("[0-9]*.py"))[-1].split("_", 1)[0]


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    s = Store.open(f"sqlite:///{tmp_path}/deep/er/veille.db")
    with s._engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("busy_timeout") == store_module.BUSY_TIMEOUT_MS
    s.close()
    raw = sqlite3.connect(tmp_path / "deep/er/veille.db")  # WAL is a property of the file
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


def test_an_in_memory_sqlite_store_works_across_threads() -> None:
    s = Store.open("sqlite://")
    s.sync_feeds([FeedSpec(FEED, "World")])
    claims = at_once(*[lambda: s.claim(FEED, [item(1)], matched(item(1)), now=NOW,
                                       alert_cutoff=None)] * 3)
    assert sorted(len(c.alerts) for c in claims) == [0, 0, 1]
    created = [a.id for c in claims for a in c.alerts]
    assert [a.id for a in s.pending_alerts(now=NOW)] == created
    s.close()


# ---------------------------------------------------------------- claim


def test_claim_stores_new_items_and_alerts_only_the_matched_ones(store: Store) -> None:
    batch = [item(1), item(2), item(3)]
    got = store.claim(FEED, batch, matched(batch[1]), now=NOW, alert_cutoff=None)
    assert (got.new, got.silent, len(got.alerts)) == (3, 0, 1)
    alert = got.alerts[0]
    assert (alert.topic, alert.item, alert.match, alert.destination) == (
        "pos2", batch[1], match(), "console")
    assert alert.id is not None
    [pending] = store.pending_alerts(now=NOW)
    assert (pending.id, pending.topic, pending.match, pending.destination) == (
        alert.id, "pos2", match(), "console")
    assert pending.item == batch[1]  # rebuilt from the row, timestamps tz-aware UTC
    state = store.feed_state(FEED)
    assert state is not None and (state.items_total, state.first_success_at) == (3, NOW)
    assert count(store, "matches") == 1


def test_claim_queues_one_alert_per_destination_and_topic(store: Store) -> None:
    batch = [item(1)]
    got = store.claim(FEED, batch, matched(*batch, topics=("pos2", "sanctions")), now=NOW,
                      alert_cutoff=None, destinations=("console", "-100123"))
    assert sorted((a.topic, a.destination) for a in got.alerts) == [
        ("pos2", "-100123"), ("pos2", "console"),
        ("sanctions", "-100123"), ("sanctions", "console")]
    assert [a.id for a in store.pending_alerts(now=NOW, destination="-100123")] == [
        a.id for a in got.alerts if a.destination == "-100123"]


def test_a_second_claim_of_the_same_items_creates_nothing_and_refreshes_them(
    store: Store,
) -> None:
    batch = [item(1), item(2)]
    store.claim(FEED, batch, matched(*batch), now=NOW, alert_cutoff=None)
    later = NOW + timedelta(days=2)
    again = store.claim(FEED, batch, matched(*batch), now=later, alert_cutoff=None)
    assert (again.new, again.alerts, again.silent) == (0, (), 0)
    assert count(store, "alerts") == 2
    assert store.feed_state(FEED).items_total == 2  # type: ignore[union-attr]
    # last_seen_at moved to `later`, so a prune before it keeps them
    assert store.prune(before=later - timedelta(hours=1)).items == 0


def test_seen_items_are_refreshed_at_most_every_few_hours(store: Store) -> None:
    """Re-polling a feed every few minutes must not rewrite its rows each time."""
    batch = [item(1), item(2)]
    store.claim(FEED, batch, {}, now=NOW, alert_cutoff=None)
    soon = NOW + store_module.SEEN_REFRESH / 2
    store.claim(FEED, batch, {}, now=soon, alert_cutoff=None)
    assert store.prune(before=NOW + timedelta(seconds=1)).items == 2  # not refreshed at `soon`
    store.claim(FEED, batch, {}, now=NOW, alert_cutoff=None)
    late = NOW + store_module.SEEN_REFRESH * 2
    store.claim(FEED, batch, {}, now=late, alert_cutoff=None)
    assert store.prune(before=late - timedelta(seconds=1)).items == 0  # refreshed at `late`


def test_known_guids_are_only_marked_seen(store: Store) -> None:
    """A guid the pipeline already knows this feed gave is not offered again, even when its
    row was pruned meanwhile (so a prune racing a poll cannot make it alert twice)."""
    store.claim(FEED, [item(1)], {}, now=NOW, alert_cutoff=None)
    assert store.prune(before=NOW + timedelta(seconds=1)).items == 1
    later = NOW + timedelta(days=1)
    got = store.claim(FEED, [item(1), item(2)], matched(item(1), item(2)), now=later,
                      alert_cutoff=None, known={"guid-1"})
    assert [i.guid for i in got.items] == ["guid-2"] and len(got.alerts) == 1
    assert store.seen_guids(FEED) == {"guid-2"}


@pytest.mark.parametrize(
    ("first", "second", "second_feed", "source_key", "is_new"),
    [
        pytest.param(item(1), item(1, url="https://news.example.org/moved/1", title="Other words"),
                     FEED, None, False,
                     id="same guid, other URL"),
        pytest.param(item(1), item(9, feed=OTHER, url=item(1).url), OTHER, None, False,
                     id="same URL, other guid, other feed"),
        pytest.param(item(1), item(9, url="https://news.example.org/x", title=item(1).title),
                     FEED, None, False, id="regenerated guid, same title"),
        pytest.param(item(1), item(9, feed=OTHER, url="https://presse.example.fr/x",
                                   title=item(1).title), OTHER, None, True,
                     id="same title from another source"),
        pytest.param(item(1), item(9, feed=OTHER, url="https://presse.example.fr/x",
                                   title=item(1).title), OTHER, FEED, False,
                     id="same title, same source key"),
        pytest.param(item(1, title="", summary=""), item(9, title="", summary=""), FEED, None,
                     True, id="untitled items do not collide"),
        pytest.param(item(1, url=""), item(9, url=""), FEED, None, True,
                     id="URL-less items do not collide"),
    ],
)
def test_the_database_decides_what_is_new(
    store: Store, first: Item, second: Item, second_feed: str, source_key: str | None,
    is_new: bool,
) -> None:
    store.claim(FEED, [first], matched(first), now=NOW, alert_cutoff=None)
    got = store.claim(second_feed, [second], matched(second), now=NOW, alert_cutoff=None,
                      source_key=source_key)
    assert (got.new, len(got.alerts)) == ((1, 1) if is_new else (0, 0))
    assert count(store, "items") == (2 if is_new else 1)


def test_duplicate_guids_within_one_batch_count_once(store: Store) -> None:
    batch = [item(1), item(1, title="A retitled copy of the same item, once more")]
    got = store.claim(FEED, batch, matched(*batch), now=NOW, alert_cutoff=None)
    assert (got.new, len(got.alerts), got.items) == (1, 1, (batch[0],))


def test_alert_cutoff_records_old_and_undated_items_silently(store: Store) -> None:
    cutoff = NOW - timedelta(hours=24)
    old = item(1, published=NOW - timedelta(days=3))
    undated = item(2, published=None)
    recent = item(3, published=cutoff)
    unmatched_old = item(4, published=NOW - timedelta(days=3))
    batch = [old, undated, recent, unmatched_old]
    got = store.claim(FEED, batch, matched(old, undated, recent), now=NOW, alert_cutoff=cutoff)
    assert (got.new, got.silent) == (4, 2)
    assert [a.item for a in got.alerts] == [recent]
    assert count(store, "matches") == 3  # kept for history even when silent
    assert [a.item.guid for a in store.pending_alerts(now=NOW)] == ["guid-3"]


def test_a_failing_claim_stores_nothing_so_the_next_one_alerts(store: Store) -> None:
    batch = [item(1), item(2)]
    broken = {"guid-1": [match()], "guid-2": [Match(None, ())]}  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="claiming items failed"):
        store.claim(FEED, batch, broken, now=NOW, alert_cutoff=None)
    assert (count(store, "items"), count(store, "matches"), count(store, "alerts")) == (0, 0, 0)
    state = store.feed_state(FEED)
    assert state is not None and (state.items_total, state.first_success_at) == (0, None)
    got = store.claim(FEED, batch, matched(*batch), now=NOW, alert_cutoff=None)
    assert (got.new, len(got.alerts)) == (2, 2)


def test_a_crash_after_the_items_insert_rolls_it_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(store_module, "_match_row", crash)
    batch = [item(1)]
    with pytest.raises(RuntimeError, match="power cut"):
        store.claim(FEED, batch, matched(*batch), now=NOW, alert_cutoff=None)
    assert count(store, "items") == 0
    monkeypatch.undo()
    assert len(store.claim(FEED, batch, matched(*batch), now=NOW, alert_cutoff=None).alerts) == 1


def test_claim_of_an_unknown_feed_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown feed"):
        store.claim("https://nowhere.example/rss", [item(1)], {}, now=NOW, alert_cutoff=None)
    assert count(store, "items") == 0


def test_an_empty_claim_marks_the_first_successful_parse(store: Store) -> None:
    assert store.feed_state(FEED).first_poll  # type: ignore[union-attr]
    assert store.claim(FEED, [], {}, now=NOW, alert_cutoff=None).new == 0
    state = store.feed_state(FEED)
    assert state is not None and not state.first_poll and state.first_success_at == NOW
    store.claim(FEED, [], {}, now=NOW + timedelta(hours=1), alert_cutoff=None)
    assert store.feed_state(FEED).first_success_at == NOW  # type: ignore[union-attr]


def test_timestamps_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2025, 5, 1, 9, 30, 15, 123456, tzinfo=paris)
    store.claim(FEED, [item(1, published=local)], matched(item(1)), now=NOW, alert_cutoff=None)
    [alert] = store.pending_alerts(now=NOW)
    assert alert.item.published == local and alert.item.published.tzinfo == UTC
    assert store.feed_state(FEED).first_success_at.tzinfo == UTC  # type: ignore[union-attr]


def test_seen_guids_lists_the_feeds_own_items(store: Store) -> None:
    store.claim(FEED, [item(1), item(2)], {}, now=NOW, alert_cutoff=None)
    store.claim(OTHER, [item(3, feed=OTHER)], {}, now=NOW, alert_cutoff=None)
    assert store.seen_guids(FEED) == {"guid-1", "guid-2"}
    assert store.seen_guids(OTHER) == {"guid-3"}


def test_two_stores_claiming_the_same_items_at_once_alert_each_exactly_once(
    db_url: str, store: Store
) -> None:
    other = Store.open(db_url)
    stores = [store, other, store, other]
    for round_ in range(5):
        batch = [item(100 * round_ + n) for n in range(20)]
        results = at_once(*[partial(s.claim, FEED, batch, matched(*batch), now=NOW,
                                    alert_cutoff=None) for s in stores])
        created = [a.item.guid for r in results for a in r.alerts]
        assert sorted(created) == sorted(i.guid for i in batch)
        assert sum(r.new for r in results) == 20
    assert count(store, "alerts") == 100
    other.close()


def test_instances_claiming_one_article_from_several_feeds_never_deadlock(db_url: str) -> None:
    """The same articles in four feeds, claimed at once by two stores (two instances): each
    round's new articles are inserted once, and refreshing the ones already stored (rows
    of other feeds) never deadlocks. Before the rows were locked in id order, PostgreSQL
    reported a deadlock in about one round of fifteen."""
    stores = [Store.open(db_url), Store.open(db_url)]
    feeds = [f"https://feed{n}.example/rss" for n in range(4)]
    stores[0].sync_feeds([FeedSpec(f, f"Feed {n}") for n, f in enumerate(feeds)])
    rng = random.Random(7)

    def article(feed: str, n: int, round_: int) -> Item:
        return item(n, feed=feed, guid=f"{feed}#{round_}-{n}", source=feed,
                    url=f"https://news.example.org/{round_}/{n}",
                    title=f"Pipeline talks, round {round_}: report {n}")

    try:
        for round_ in range(1, 31):
            calls = []
            for s, feed in zip(stores * 2, feeds):
                batch = ([article(feed, n, round_) for n in range(25)]
                         + [article(feed, n, round_ - 1) for n in range(10)])
                rng.shuffle(batch)
                calls.append(partial(s.claim, feed, batch, matched(*batch), now=NOW,
                                     alert_cutoff=None))
            results = at_once(*calls)
            created = sorted(a.item.url for r in results for a in r.alerts)
            fresh = sorted(f"https://news.example.org/{round_}/{n}" for n in range(25))
            assert created == (fresh if round_ > 1 else sorted(
                fresh + [f"https://news.example.org/0/{n}" for n in range(10)]))
    finally:
        for s in stores:
            s.close()


# ---------------------------------------------------------------- delivery


def queue(store: Store, *numbers: int, now: datetime = NOW) -> list[int]:
    batch = [item(n) for n in numbers]
    got = store.claim(FEED, batch, matched(*batch), now=now, alert_cutoff=None)
    return [a.id for a in got.alerts]  # type: ignore[misc]


def test_pending_alerts_come_oldest_first_and_only_when_due(store: Store) -> None:
    late = queue(store, 2, now=NOW + timedelta(minutes=5))
    early = queue(store, 1)
    assert [a.id for a in store.pending_alerts(now=NOW)] == early
    assert [a.id for a in store.pending_alerts(now=NOW + timedelta(minutes=5))] == early + late
    assert [a.id for a in store.pending_alerts(now=NOW + timedelta(hours=1), limit=1)] == early


def test_a_sent_alert_keeps_its_message_id_and_leaves_the_queue(store: Store) -> None:
    [alert_id] = queue(store, 1)
    store.mark_sent(alert_id, now=NOW + timedelta(seconds=3), message_id="4242")
    assert store.pending_alerts(now=NOW + timedelta(days=1)) == []
    [row] = store.recent_alerts(since=NOW)
    assert (row.id, row.status, row.message_id, row.attempts) == (alert_id, "sent", "4242", 1)
    assert row.sent_at == NOW + timedelta(seconds=3)
    assert (row.title, row.terms, row.source) == (item(1).title, ("Power of Siberia 2",),
                                                  "Example News")
    assert store.alert_counts() == {"pending": 0, "sent": 1, "failed": 0}


def test_a_failed_alert_is_retried_at_the_time_given(store: Store) -> None:
    [alert_id] = queue(store, 1)
    retry = NOW + timedelta(minutes=5)
    store.mark_failed(alert_id, now=NOW, error="429 Too Many Requests", retry_at=retry)
    assert store.pending_alerts(now=retry - timedelta(seconds=1)) == []
    [again] = store.pending_alerts(now=retry)
    assert (again.id, again.extra["attempts"]) == (alert_id, 1)
    [row] = store.recent_alerts(since=NOW)
    assert (row.status, row.last_error) == ("pending", "429 Too Many Requests")


def test_a_permanent_failure_is_never_retried(store: Store) -> None:
    [alert_id] = queue(store, 1)
    store.mark_failed(alert_id, now=NOW, error="403 bot was blocked", retry_at=None)
    assert store.pending_alerts(now=NOW + timedelta(days=30)) == []
    assert store.alert_counts() == {"pending": 0, "sent": 0, "failed": 1}
    assert store.recent_alerts(since=NOW)[0].status == "failed"


def test_marking_an_unknown_alert_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no alert with id 999"):
        store.mark_sent(999, now=NOW)


def test_recent_alerts_filters_by_time_and_topic_newest_first(store: Store) -> None:
    batch = [item(1), item(2)]
    store.claim(FEED, batch[:1], matched(batch[0], topics=("pos2", "sanctions")), now=NOW,
                alert_cutoff=None)
    store.claim(FEED, batch[1:], matched(batch[1]), now=NOW + timedelta(hours=2),
                alert_cutoff=None)
    assert [(r.topic, r.link) for r in store.recent_alerts(since=NOW, topic="pos2")] == [
        ("pos2", batch[1].link), ("pos2", batch[0].link)]
    assert [r.topic for r in store.recent_alerts(since=NOW + timedelta(hours=1))] == ["pos2"]
    assert len(store.recent_alerts(since=NOW - timedelta(days=1))) == 3


def test_concurrent_leases_hand_out_each_alert_once(db_url: str, store: Store) -> None:
    queued = queue(store, *range(40))
    other = Store.open(db_url)
    stores = [store, other, store, other]
    leased: list[int] = []

    def worker(s: Store) -> None:
        while got := s.lease_alerts(now=NOW, until=NOW + timedelta(minutes=1), limit=3):
            leased.extend(a.id for a in got)

    at_once(*[partial(worker, s) for s in stores])
    assert sorted(leased) == sorted(queued)
    # a lease that is never settled expires, and the alert is due again
    assert len(store.pending_alerts(now=NOW + timedelta(minutes=1))) == 40
    other.close()


# ---------------------------------------------------------------- housekeeping


def test_prune_forgets_old_items_but_keeps_what_pending_alerts_need(store: Store) -> None:
    sent, pending = queue(store, 1, 2)
    store.claim(FEED, [item(3)], {}, now=NOW, alert_cutoff=None)  # old, never matched
    store.mark_sent(sent, now=NOW, message_id="1")
    queue(store, 4, now=NOW + timedelta(days=40))  # recent
    done = store.prune(before=NOW + timedelta(days=30))
    assert (done.items, done.matches, done.alerts) == (2, 1, 1)
    assert [a.id for a in store.pending_alerts(now=NOW)] == [pending]
    assert count(store, "items") == 2
    # a forgotten item is new again
    assert store.claim(FEED, [item(1)], {}, now=NOW, alert_cutoff=None).new == 1


def test_item_times_compare_with_the_times_the_store_binds_within_a_second(store: Store) -> None:
    """Items are inserted by hand-written SQL: their timestamps must be stored exactly as
    SQLAlchemy binds them (on SQLite, text compared as text), or same-day ranges go wrong."""
    store.claim(FEED, [item(1, published=NOW)], {}, now=NOW, alert_cutoff=None)
    assert store.prune(before=NOW - timedelta(seconds=1)).items == 0
    assert store.prune(before=NOW + timedelta(seconds=1)).items == 1
    with store._engine.connect() as conn:  # noqa: SLF001 (the stored text itself)
        store.claim(FEED, [item(2, published=NOW)], {}, now=NOW, alert_cutoff=None)
        queue(store, 3, now=NOW)
        stored = conn.execute(sa.text("SELECT published, first_seen_at FROM items WHERE guid = 'guid-2'")).one()
        created = conn.execute(sa.text("SELECT created_at FROM alerts")).scalar()
    assert stored[0] == stored[1] == created  # one format, whoever wrote it


# ---------------------------------------------------------------- feeds


def test_record_counts_failures_and_a_success_resets_them(store: Store) -> None:
    later = [NOW + timedelta(minutes=m) for m in range(4)]
    store.record(FEED, FetchRecord(200, later[1], None, '"v1"', "Thu, 01 May 2025", "h1"),
                 now=later[0])
    for t in later[1:3]:
        store.record(FEED, FetchRecord(503, t, "HTTP 503"), now=t)
    failing = store.feed_state(FEED)
    assert failing is not None
    assert (failing.error_streak, failing.last_error, failing.last_status) == (2, "HTTP 503", 503)
    assert (failing.etag, failing.last_success_at, failing.polls) == ('"v1"', later[0], 3)
    store.record(FEED, FetchRecord(304, later[3], new_url="https://news.example.org/world-v2.rss"),
                 now=later[3])
    ok = store.feed_state(FEED)
    assert ok is not None
    assert (ok.error_streak, ok.last_error, ok.last_success_at) == (0, None, later[3])
    assert (ok.etag, ok.body_hash, ok.url, ok.declared_url) == (
        '"v1"', "h1", "https://news.example.org/world-v2.rss", FEED)
    assert (ok.polls, ok.next_poll_at, ok.last_poll_at) == (4, later[3], later[3])


def test_recording_a_fetch_of_an_unknown_feed_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown feed"):
        store.record("https://nowhere.example/rss", FetchRecord(200, NOW), now=NOW)


def test_sync_feeds_renames_and_deactivates_without_forgetting(store: Store) -> None:
    third = "https://third.example.net/feed"
    store.record(OTHER, FetchRecord(200, NOW, etag="e"), now=NOW)
    store.sync_feeds([FeedSpec(FEED, "World (renamed)"), FeedSpec(third, "Third")])
    by_url = {f.declared_url: f for f in store.feeds_overview()}
    assert {u: (f.name, f.active) for u, f in by_url.items()} == {
        FEED: ("World (renamed)", True),
        third: ("Third", True),
        OTHER: ("International", False),
    }
    assert by_url[OTHER].etag == "e"
    store.sync_feeds([FeedSpec(OTHER, "International")])
    back = store.feed_state(OTHER)
    assert back is not None and (back.active, back.etag, back.polls) == (True, "e", 1)
    assert [f.declared_url for f in store.feeds_overview() if f.active] == [OTHER]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg://veille:s3cr3t-pw@127.0.0.1:1/veille", "failed on"),
        ("mysql://veille:s3cr3t-pw@127.0.0.1/veille", "unsupported database"),
        ("not a url s3cr3t-pw", "not a database URL"),
        ("postgresql+nodriver://veille:s3cr3t-pw@127.0.0.1/veille", "no database driver"),
    ],
)
def test_store_errors_never_show_the_password(url: str, reason: str) -> None:
    with pytest.raises(StoreError, match=reason) as caught:
        Store.open(url)
    assert "s3cr3t-pw" not in str(caught.value)


def test_an_unwritable_sqlite_directory_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the directory"):
        Store.open(f"sqlite:///{tmp_path}/file/state/veille.db")


def test_migration_0006_rewrites_old_article_keys_and_clears_a_clash(db_url: str) -> None:
    s = Store.open(db_url)
    s.sync_feeds([FeedSpec(FEED, "World")])
    old = [item(1, url="http://news.example.org/a"),
           item(2, url="https://www.news.example.org/b"),
           item(3, url="https://news.example.org/c"),
           item(4, url="http://www.news.example.org/c"),  # the same page as 3, old form
           item(5, url="https://www.com/d")]  # no domain left without www.: unchanged
    s.claim(FEED, old, matched(*old[:2], topics=("pos2",)), now=NOW, alert_cutoff=None)
    with s._engine.begin() as conn:  # as an older release left them
        for it in old:
            conn.execute(sa.text("UPDATE items SET url = :u WHERE guid = :g"),
                         {"u": it.url, "g": it.guid})
        for key in ("http://news.example.org/a", "https://news.example.org/e",
                    "http://www.news.example.org/e"):  # the last one clashes: kept
            conn.execute(stories.insert().values(
                topic="pos2", key=key, item_id=1, title="t", url=key, source="s",
                created_at=NOW, updated_at=NOW))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    s.close()
    again = Store.open(db_url)
    with again._engine.connect() as conn:
        urls = dict(conn.execute(sa.text("SELECT guid, url FROM items")).all())
        keys = set(conn.scalars(sa.text("SELECT key FROM stories")))
    again.close()
    assert urls == {"guid-1": "https://news.example.org/a", "guid-2": "https://news.example.org/b",
                    "guid-3": "https://news.example.org/c", "guid-4": None,
                    "guid-5": "https://www.com/d"}
    assert keys == {"https://news.example.org/a", "https://news.example.org/e",
                    "http://www.news.example.org/e"}
