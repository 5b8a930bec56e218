"""Subscribers and subscriptions in the store, on a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Iterator

import pytest
import sqlalchemy as sa

from bot.model import FeedSpec, Hit, Item, Match, Subscriber
from bot.store import Store
from bot.store.schema import deliveries
from tests.test_store import db_url, pg_database  # noqa: F401 (fixtures)

UTC = timezone.utc
NOW = datetime(2025, 6, 3, 9, 30, tzinfo=UTC)
FEED = "https://actu.example.fr/monde.xml"
ALICE, GROUP, BOB = 1001, -100200300, 1002


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811 (db_url is the imported fixture)
    s = Store.open(db_url)
    s.sync_feeds([FeedSpec(FEED, "Actu Monde")])
    yield s
    s.close()


def _item(n: int) -> Item:
    return Item(feed=FEED, guid=f"g{n}", url=f"https://actu.example.fr/a/{n}",
                link=f"https://actu.example.fr/a/{n}", title=f"Gazoduc : la banque chinoise {n}",
                summary="Un prêt envisagé.", published=NOW - timedelta(hours=1), source="Actu")


def _alert(store: Store, n: int, topics: tuple[str, ...], *, at: datetime,
           destinations: tuple[str, ...] = ("telegram",)) -> list[int]:
    """Claim item n matched to topics at `at`; the ids of its alerts."""
    hit = Hit("gazoduc", "title", 0, 7, "Gazoduc")
    result = store.claim(FEED, [_item(n)], {f"g{n}": [Match(t, (hit,)) for t in topics]},
                         now=at, alert_cutoff=None, destinations=destinations)
    return [a.id for a in result.alerts]


def _count(store: Store, table: str, where: str = "") -> int:
    with store._engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} {where}")).scalar_one()


# ---------------------------------------------------------------- subscribers


def test_upsert_creates_then_refreshes_and_reactivates(store: Store) -> None:
    first = store.upsert_subscriber(ALICE, kind="private", title="Alice", user_lang="fr", now=NOW)
    assert first == Subscriber(ALICE, "private", "Alice", user_lang="fr", created_at=NOW,
                               updated_at=NOW)
    assert first.language == "fr"
    with store._engine.begin() as conn:  # the delivery worker found the chat gone
        conn.execute(sa.text("UPDATE subscribers SET active = false, "
                             "inactive_reason = 'blocked' WHERE chat_id = :c"), {"c": ALICE})
    later = NOW + timedelta(days=1)
    again = store.upsert_subscriber(ALICE, kind="private", title=None, user_lang=None, now=later)
    assert (again.title, again.user_lang) == ("Alice", "fr")  # None keeps what was known
    assert (again.active, again.inactive_reason) == (True, None)
    assert (again.created_at, again.updated_at) == (NOW, later)
    assert store.subscriber(BOB) is None


def test_upsert_refuses_an_unknown_kind(store: Store) -> None:
    with pytest.raises(ValueError, match="chat 1001: unknown chat kind 'bot'"):
        store.upsert_subscriber(ALICE, kind="bot", now=NOW)


def test_update_subscriber_changes_only_what_is_given(store: Store) -> None:
    store.upsert_subscriber(GROUP, kind="supergroup", title="Veille Asie", now=NOW)
    until = NOW + timedelta(hours=2)
    s = store.update_subscriber(GROUP, now=NOW, tz="Europe/Paris", mode="digest",
                                digest_every="daily", digest_at="07:30", quiet_start="22:00",
                                quiet_end="06:45", paused_until=until, lang="fr")
    assert s is not None
    assert (s.tz, s.mode, s.digest_every, s.digest_at) == ("Europe/Paris", "digest", "daily",
                                                          "07:30")
    assert (s.quiet_start, s.quiet_end, s.paused_until, s.lang) == ("22:00", "06:45", until, "fr")
    s = store.update_subscriber(GROUP, now=NOW, quiet_start=None, quiet_end=None,
                                paused_until=None, lang=None)
    assert (s.quiet_start, s.quiet_end, s.paused_until, s.lang, s.tz) == (
        None, None, None, None, "Europe/Paris")
    assert store.update_subscriber(BOB, now=NOW, tz="UTC") is None
    with pytest.raises(ValueError, match="not a subscriber setting: active"):
        store.update_subscriber(GROUP, now=NOW, active=False)


def test_the_database_refuses_an_unknown_mode(store: Store) -> None:
    store.upsert_subscriber(ALICE, kind="private", now=NOW)
    with pytest.raises(Exception, match="mode"):
        store.update_subscriber(ALICE, now=NOW, mode="sometimes")


# ---------------------------------------------------------------- subscriptions


def test_subscribe_unsubscribe_and_mute(store: Store) -> None:
    store.upsert_subscriber(ALICE, kind="private", now=NOW)
    assert store.subscribe(ALICE, "power-of-siberia-2", now=NOW) is True
    assert store.subscribe(ALICE, "power-of-siberia-2", now=NOW + timedelta(hours=1)) is False
    assert store.subscribe(ALICE, "joint-declaration", now=NOW) is True
    subs = store.subscriptions(ALICE)
    assert [(s.topic, s.created_at, s.muted_until) for s in subs] == [
        ("joint-declaration", NOW, None), ("power-of-siberia-2", NOW, None)]  # first time kept
    until = NOW + timedelta(hours=24)
    assert store.mute(ALICE, "joint-declaration", until=until) is True
    assert store.mute(ALICE, "secondary-sanctions", until=until) is False
    assert store.subscriptions(ALICE)[0].muted_until == until
    assert store.unsubscribe(ALICE, "joint-declaration") == ["joint-declaration"]
    assert store.unsubscribe(ALICE, "joint-declaration") == []
    store.subscribe(ALICE, "secondary-sanctions", now=NOW)
    assert store.unsubscribe(ALICE) == ["power-of-siberia-2", "secondary-sanctions"]
    assert store.subscriptions(ALICE) == []


def test_delete_subscriber_forgets_its_rows_and_only_its_rows(store: Store) -> None:
    for chat in (ALICE, BOB):
        store.upsert_subscriber(chat, kind="private", now=NOW)
        store.subscribe(chat, "power-of-siberia-2", now=NOW)
    alert_id = _alert(store, 1, ("power-of-siberia-2",), at=NOW)[0]
    with store._engine.begin() as conn:
        conn.execute(sa.insert(deliveries), [
            {"alert_id": alert_id, "chat": str(chat), "kind": "subscriber", "status": status,
             "created_at": NOW, "next_attempt_at": NOW}
            for chat in (ALICE, BOB) for status in ("pending",)])
    assert store.delete_subscriber(ALICE) is True
    assert store.subscriber(ALICE) is None and store.subscriptions(ALICE) == []
    assert _count(store, "deliveries", f"WHERE chat = '{ALICE}'") == 0
    assert _count(store, "deliveries", f"WHERE chat = '{BOB}'") == 1
    assert store.subscriber(BOB) is not None and len(store.subscriptions(BOB)) == 1
    assert store.delete_subscriber(ALICE) is False


def test_counts_by_topic_count_active_chats(store: Store) -> None:
    for chat, topics in ((ALICE, ("a", "b")), (BOB, ("b",)), (GROUP, ("b", "c"))):
        store.upsert_subscriber(chat, kind="private" if chat > 0 else "group", now=NOW)
        for topic in topics:
            store.subscribe(chat, topic, now=NOW)
    assert store.subscriber_counts_by_topic() == {"a": 1, "b": 3, "c": 1}
    with store._engine.begin() as conn:
        conn.execute(sa.text("UPDATE subscribers SET active = false WHERE chat_id = :c"),
                     {"c": GROUP})
    assert store.subscriber_counts_by_topic() == {"a": 1, "b": 2}
    overview = store.subscribers_overview()
    assert [(s.chat_id, s.active, topics) for s, topics in overview] == [
        (ALICE, True, ("a", "b")), (BOB, True, ("b",)), (GROUP, False, ("b", "c"))]


# ---------------------------------------------------------------- read-outs


def test_latest_alerts_newest_first_each_item_once(store: Store) -> None:
    for n in range(1, 8):
        _alert(store, n, ("pos2", "decl") if n == 7 else ("pos2",),
               at=NOW + timedelta(minutes=n), destinations=("telegram", "console"))
    _alert(store, 20, ("other",), at=NOW + timedelta(hours=1))
    latest = store.latest_alerts(["pos2", "decl"], limit=5)
    assert [a.title for a in latest] == [f"Gazoduc : la banque chinoise {n}"
                                         for n in (7, 6, 5, 4, 3)]
    assert latest[0].link == "https://actu.example.fr/a/7" and latest[0].source == "Actu"
    assert latest[1].created_at == NOW + timedelta(minutes=6)
    assert [a.title[-2:] for a in store.latest_alerts(["decl"])] == [" 7"]
    assert store.latest_alerts([]) == []
    assert store.latest_alerts(["nothing-here"]) == []


def test_alerts_per_topic_per_day_over_the_window(store: Store) -> None:
    today = NOW.date()
    _alert(store, 1, ("pos2",), at=NOW, destinations=("telegram", "console"))  # counts once
    _alert(store, 2, ("pos2", "decl"), at=NOW - timedelta(days=1))
    _alert(store, 3, ("pos2",), at=NOW - timedelta(days=1, hours=2))
    _alert(store, 4, ("pos2",), at=NOW - timedelta(days=13))  # first day of the window
    _alert(store, 5, ("pos2",), at=NOW - timedelta(days=14))  # before it
    counts = store.alerts_per_topic_per_day(now=NOW, days=14)
    assert counts == {
        "pos2": {today: 1, today - timedelta(days=1): 2, today - timedelta(days=13): 1},
        "decl": {today - timedelta(days=1): 1}}
    assert store.alerts_per_topic_per_day(now=NOW + timedelta(days=30)) == {}
    assert isinstance(next(iter(counts["decl"])), date)


# ---------------------------------------------------------------- veille subscribers


def test_cli_subscribers_text_and_json(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from bot.cli import app

    url = f"sqlite:///{tmp_path}/state/veille.db"
    monkeypatch.setenv("VEILLE_DATABASE_URL", url)
    runner = CliRunner()
    missing = runner.invoke(app, ["subscribers"])
    assert missing.exit_code == 2 and "VEILLE_DATABASE_URL" in missing.output  # never created
    with Store.open(url) as store:
        store.upsert_subscriber(ALICE, kind="private", title="Alice", user_lang="fr", now=NOW)
        store.update_subscriber(ALICE, now=NOW, tz="Europe/Paris", mode="digest",
                                digest_every="daily", digest_at="07:30", quiet_start="22:00",
                                quiet_end="07:00")
        store.upsert_subscriber(GROUP, kind="supergroup", title="Veille  Asie", now=NOW)
        for chat, topic in ((ALICE, "pos2"), (ALICE, "decl"), (GROUP, "pos2")):
            store.subscribe(chat, topic, now=NOW)
        store.upsert_subscriber(BOB, kind="private", now=NOW)
        store.subscribe(BOB, "decl", now=NOW)
        with store._engine.begin() as conn:
            conn.execute(sa.text("UPDATE subscribers SET active = false, inactive_reason = "
                                 "'blocked by the user' WHERE chat_id = :c"), {"c": BOB})
    result = runner.invoke(app, ["subscribers"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["chat", "kind", "title", "lang", "zone", "delivery", "state",
                                "topics"]
    assert lines[1].split() == ["-100200300", "supergroup", "Veille", "Asie", "en", "UTC",
                                "instant", "active", "pos2"]
    assert lines[2].split() == ["1001", "private", "Alice", "fr", "Europe/Paris", "digest",
                                "daily", "07:30", "active", "decl,", "pos2"]
    assert lines[3].split()[-5:] == ["(blocked", "by", "the", "user)", "decl"]
    assert lines[4:] == ["3 subscribers, 2 active", "  pos2: 2 chats", "  decl: 1 chat"]
    result = runner.invoke(app, ["subscribers", "--json"])
    doc = json.loads(result.output)
    assert doc["counts_by_topic"] == {"decl": 1, "pos2": 2}
    alice = next(s for s in doc["subscribers"] if s["chat_id"] == ALICE)
    assert alice == {
        "chat_id": ALICE, "kind": "private", "title": "Alice", "language": "fr", "lang": None,
        "user_lang": "fr", "tz": "Europe/Paris", "mode": "digest", "digest_every": "daily",
        "digest_at": "07:30", "quiet": ["22:00", "07:00"], "paused_until": None,
        "active": True, "inactive_reason": None, "dropped": 0, "created": NOW.isoformat(),
        "topics": ["decl", "pos2"]}
    assert [s["active"] for s in doc["subscribers"]] == [True, True, False]
