"""The subscriber side of the state: chats, their settings and topic subscriptions, and the
read-outs their commands show (/latest, /stats, `veille subscribers`).

Mixed into Store (store.py); uses its _tx and _insert_ignore. A chat's settings change only
through these methods, each one short transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Collection

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..model import Subscriber
from .schema import SUBSCRIBER_KINDS, alerts, deliveries, items, subscribers, subscriptions

# What update_subscriber may change (everything else is the chat's identity or delivery state).
SETTINGS = ("tz", "mode", "digest_every", "digest_at", "quiet_start", "quiet_end",
            "paused_until", "lang")


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic a chat follows: since when, and muted until when (None: not muted)."""

    topic: str
    created_at: datetime
    muted_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class LatestAlert:
    """An alerted item, for /latest: the topic it was alerted for and what it links to."""

    topic: str
    title: str
    link: str
    source: str
    published: datetime | None
    created_at: datetime


class SubscriberStore:
    """Subscribers and subscriptions (a mixin of Store)."""

    _tx: Any
    _insert_ignore: Any
    backend: str

    def upsert_subscriber(self, chat_id: int, *, kind: str, now: datetime,
                          title: str | None = None, user_lang: str | None = None) -> Subscriber:
        """Create the chat's row, or refresh its kind, title and language; a chat that talks
        to the bot again is active again (it had blocked or removed it)."""
        if kind not in SUBSCRIBER_KINDS:
            raise ValueError(f"chat {chat_id}: unknown chat kind {kind!r}")
        values = {"chat_id": chat_id, "kind": kind, "title": title, "user_lang": user_lang,
                  "created_at": now, "updated_at": now}
        dialect = postgresql if self.backend == "postgresql" else sqlite
        insert = dialect.insert(subscribers).values(values)
        new = insert.excluded
        insert = insert.on_conflict_do_update(
            index_elements=[subscribers.c.chat_id],
            set_={"kind": new.kind, "updated_at": new.updated_at,
                  "title": sa.func.coalesce(new.title, subscribers.c.title),
                  "user_lang": sa.func.coalesce(new.user_lang, subscribers.c.user_lang),
                  "active": sa.true(), "inactive_reason": None})
        with self._tx("saving a subscriber") as conn:
            conn.execute(insert)
            return Subscriber.from_row(conn.execute(_one(chat_id)).one())

    def subscriber(self, chat_id: int) -> Subscriber | None:
        """The chat's row, or None if it never subscribed (or asked to be forgotten)."""
        with self._tx("reading a subscriber", write=False) as conn:
            row = conn.execute(_one(chat_id)).first()
        return Subscriber.from_row(row) if row else None

    def update_subscriber(self, chat_id: int, *, now: datetime, **changes: Any
                          ) -> Subscriber | None:
        """Change some of the chat's SETTINGS (None clears quiet hours, pause or /lang);
        None if there is no such chat."""
        unknown = set(changes) - set(SETTINGS)
        if unknown:
            raise ValueError(f"not a subscriber setting: {', '.join(sorted(unknown))}")
        stmt = (sa.update(subscribers).where(subscribers.c.chat_id == chat_id)
                .values(updated_at=now, **changes))
        with self._tx("updating a subscriber") as conn:
            if conn.execute(stmt).rowcount == 0:
                return None
            return Subscriber.from_row(conn.execute(_one(chat_id)).one())

    def subscribe(self, chat_id: int, topic: str, *, now: datetime) -> bool:
        """Follow topic from now on; False if the chat already did (nothing changes then)."""
        insert = (self._insert_ignore(subscriptions)
                  .values(chat_id=chat_id, topic=topic, created_at=now)
                  .returning(subscriptions.c.topic))
        with self._tx("subscribing") as conn:
            return conn.execute(insert).first() is not None

    def unsubscribe(self, chat_id: int, topic: str | None = None) -> list[str]:
        """Stop following topic (None: every topic); the topics that were followed."""
        mine = subscriptions.c.chat_id == chat_id
        if topic is not None:
            mine = sa.and_(mine, subscriptions.c.topic == topic)
        with self._tx("unsubscribing") as conn:
            gone = sorted(conn.scalars(sa.select(subscriptions.c.topic).where(mine)))
            conn.execute(sa.delete(subscriptions).where(mine))
        return gone

    def subscriptions(self, chat_id: int) -> list[Subscription]:
        """The topics the chat follows, by topic id."""
        query = (sa.select(subscriptions.c.topic, subscriptions.c.created_at,
                           subscriptions.c.muted_until)
                 .where(subscriptions.c.chat_id == chat_id).order_by(subscriptions.c.topic))
        with self._tx("listing subscriptions", write=False) as conn:
            return [Subscription(*r) for r in conn.execute(query)]

    def mute(self, chat_id: int, topic: str, *, until: datetime | None) -> bool:
        """Hold back the topic's alerts until `until` (None unmutes); False if not followed."""
        stmt = (sa.update(subscriptions)
                .where(subscriptions.c.chat_id == chat_id, subscriptions.c.topic == topic)
                .values(muted_until=until))
        with self._tx("muting a topic") as conn:
            return conn.execute(stmt).rowcount > 0

    def delete_subscriber(self, chat_id: int) -> bool:
        """Forget the chat: its row, its subscriptions and every delivery row addressed to it.
        False if there was nothing to forget."""
        with self._tx("forgetting a subscriber") as conn:
            d = conn.execute(sa.delete(deliveries).where(deliveries.c.chat == str(chat_id)))
            s = conn.execute(sa.delete(subscriptions).where(subscriptions.c.chat_id == chat_id))
            c = conn.execute(sa.delete(subscribers).where(subscribers.c.chat_id == chat_id))
        return (d.rowcount or 0) + (s.rowcount or 0) + (c.rowcount or 0) > 0

    def subscribers_overview(self) -> list[tuple[Subscriber, tuple[str, ...]]]:
        """Every chat with the topics it follows, active ones first, then by chat id."""
        query = sa.select(subscribers).order_by(subscribers.c.active.desc(), subscribers.c.chat_id)
        pairs = sa.select(subscriptions.c.chat_id, subscriptions.c.topic).order_by(
            subscriptions.c.topic)
        with self._tx("listing subscribers", write=False) as conn:
            chats = [Subscriber.from_row(r) for r in conn.execute(query)]
            topics: dict[int, list[str]] = {}
            for chat_id, topic in conn.execute(pairs):
                topics.setdefault(chat_id, []).append(topic)
        return [(s, tuple(topics.get(s.chat_id, ()))) for s in chats]

    def subscriber_counts_by_topic(self) -> dict[str, int]:
        """How many active chats follow each topic (topics nobody follows are absent)."""
        query = (sa.select(subscriptions.c.topic, sa.func.count())
                 .join(subscribers, subscribers.c.chat_id == subscriptions.c.chat_id)
                 .where(subscribers.c.active).group_by(subscriptions.c.topic)
                 .order_by(subscriptions.c.topic))
        with self._tx("counting subscribers", write=False) as conn:
            return {topic: n for topic, n in conn.execute(query)}

    def latest_alerts(self, topics: Collection[str], *, limit: int = 5) -> list[LatestAlert]:
        """The newest alerted items of these topics, newest first, each item once (an item
        alerted for several topics or destinations is listed under its newest alert)."""
        if not topics:
            return []
        query = (sa.select(alerts.c.item_id, alerts.c.topic, items.c.title, items.c.link,
                           items.c.source, items.c.published, alerts.c.created_at)
                 .join(items, items.c.id == alerts.c.item_id)
                 .where(alerts.c.topic.in_(sorted(topics)))
                 .order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
                 .limit(limit * 8))  # room for one item's several alerts
        found: dict[int, LatestAlert] = {}
        with self._tx("reading the latest alerts", write=False) as conn:
            for item_id, *values in conn.execute(query):
                found.setdefault(item_id, LatestAlert(*values))
        return list(found.values())[:limit]

    def alerts_per_topic_per_day(self, *, now: datetime, days: int = 14
                                 ) -> dict[str, dict[date, int]]:
        """Items alerted per topic per UTC day, over the `days` days ending today (now's
        day); an item alerted for several destinations counts once. Days without alerts
        are absent."""
        today = now.astimezone(timezone.utc).date()
        since = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(),
                                 tzinfo=timezone.utc)
        query = (sa.select(alerts.c.topic, alerts.c.item_id, sa.func.min(alerts.c.created_at))
                 .where(alerts.c.created_at >= since)
                 .group_by(alerts.c.topic, alerts.c.item_id))
        counts: dict[str, dict[date, int]] = {}
        with self._tx("counting alerts per day", write=False) as conn:
            for topic, _item, first in conn.execute(query):
                day = _utc(first).date()
                per_day = counts.setdefault(topic, {})
                per_day[day] = per_day.get(day, 0) + 1
        return counts


def _one(chat_id: int) -> sa.Select[Any]:
    return sa.select(subscribers).where(subscribers.c.chat_id == chat_id)


def _utc(value: Any) -> datetime:
    """min() over a UTCDateTime column comes back untyped on SQLite: a string, or naive."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
