"""The Telegram side of the outbox: fan-out into per-chat deliveries, leases, outcomes.

An alert for the "telegram" destination is fanned out once, in one transaction, into one
`deliveries` row per subscribed chat and per destination chat the watchlist names (the
uniqueness constraint on (alert, chat, thread) makes a second fan-out, by this instance or
another, a no-op); the alert is then done. The delivery worker leases due rows, sends them,
and records the message id only after Telegram accepted the message, so a crash repeats at
most the message in flight for a chat and loses nothing.

Mixed into Store (store.py); uses its _tx and _insert_ignore.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa

from ..model import Alert, Subscriber
from .schema import alerts, chat_moves, deliveries, subscribers, subscriptions

TELEGRAM = "telegram"  # the outbox destination that fan-out turns into deliveries
PER_CHAT = 20  # rows leased per chat at a time: a chat's share is sent well within a lease
OPEN = ("pending", "digest")  # statuses of rows still to be sent
SURGE_PREFIX = "surge:"  # a coverage surge's alert has topic "surge:<topic>" (store/stories.py)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert for one chat, leased for sending; subscriber is None for destinations."""

    id: int
    alert: Alert
    chat: str
    thread: int
    kind: str  # subscriber | destination
    attempts: int
    created_at: datetime
    subscriber: Subscriber | None = None
    status: str = "pending"
    message_id: int | None = None  # once sent

    @property
    def chat_id(self) -> int | str:
        """The id PTB takes: an int, or "@channel"."""
        return chat_key(self.chat)


@dataclass(frozen=True, slots=True)
class FanOut:
    """What one fan-out did: alerts done, rows created for subscribers and destinations."""

    alerts: int
    subscribers: int
    destinations: int


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One delivery for `veille alerts`: where an alert went and how it fared."""

    alert_id: int
    chat: str
    thread: int
    kind: str
    status: str
    attempts: int
    sent_at: datetime | None
    message_id: int | None
    last_error: str | None


def base_topic(topic: str) -> str:
    """The watchlist topic an outbox topic belongs to ("surge:pos2" -> "pos2")."""
    return topic.removeprefix(SURGE_PREFIX)


def chat_key(chat: str) -> int | str:
    """'-1001' -> -1001; '@news' stays a string."""
    try:
        return int(chat)
    except ValueError:
        return chat


class DeliveryStore:
    """Store methods for Telegram deliveries (see the module docstring)."""

    _tx: Any
    _insert_ignore: Any

    # ------------------------------------------------------------ fan-out

    def fan_out(self, *, now: datetime, destinations: Mapping[str, Sequence[tuple[str, int]]],
                limit: int = 500) -> FanOut:
        """Turn pending Telegram alerts into deliveries, in one transaction.

        destinations: topic -> (chat, thread) pairs the watchlist names for it. A subscriber
        gets an alert created at or after its subscription, unless muted or paused then;
        a digest-mode subscriber's rows wait as 'digest'.
        """
        with self._tx("fanning out alerts") as conn:
            due = conn.execute(
                sa.select(alerts.c.id, alerts.c.topic, alerts.c.created_at)
                .where(alerts.c.status == "pending", alerts.c.destination == TELEGRAM)
                .order_by(alerts.c.id).limit(limit)).all()
            if not due:
                return FanOut(0, 0, 0)
            ids = [r.id for r in due]
            taken = set(conn.scalars(
                sa.update(alerts).where(alerts.c.id.in_(ids), alerts.c.status == "pending")
                .values(status="sent", sent_at=now).returning(alerts.c.id)))
            if not taken:
                return FanOut(0, 0, 0)
            for_subscribers = conn.execute(self._insert_ignore(deliveries).from_select(
                _FROM_SUBSCRIBERS_COLUMNS, _from_subscribers(sorted(taken), now))).rowcount
            moved = dict(conn.execute(sa.select(chat_moves.c.old_chat, chat_moves.c.new_chat)).all())
            rows = [_delivery_row(r.id, moved.get(chat, chat), thread, "destination", now)
                    for r in due if r.id in taken
                    for chat, thread in destinations.get(base_topic(r.topic), ())]
            for_destinations = conn.execute(self._insert_ignore(deliveries), rows).rowcount \
                if rows else 0
        return FanOut(len(taken), max(for_subscribers, 0), max(for_destinations, 0))

    # ------------------------------------------------------------ leasing

    def lease_deliveries(self, *, now: datetime, until: datetime, limit: int = 1000,
                         busy: Iterable[str] = (), chat: str | None = None,
                         per_chat: int = PER_CHAT) -> list[Delivery]:
        """Take due rows, oldest first, at most per_chat per chat, none of the busy chats
        (chat: only that chat's).

        Each row is returned to one caller only until `until`; a worker that dies leaves
        them to be retried after that.
        """
        busy = set(busy)
        due = [deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now]
        if chat is not None:
            due.append(deliveries.c.chat == chat)
        ranked = sa.select(
            deliveries.c.id, deliveries.c.chat,
            sa.func.row_number().over(partition_by=deliveries.c.chat,
                                      order_by=deliveries.c.id).label("n"),
        ).where(*due).subquery()
        pick = sa.select(ranked.c.id, ranked.c.chat).where(ranked.c.n <= per_chat)
        if busy:
            pick = pick.where(ranked.c.chat.not_in(sorted(busy)))
        pick = pick.order_by(ranked.c.id).limit(limit)
        with self._tx("leasing deliveries") as conn:
            wanted = [r.id for r in conn.execute(pick)]
            if not wanted:
                return []
            taken = set(conn.scalars(
                sa.update(deliveries)
                .where(deliveries.c.id.in_(wanted), deliveries.c.status == "pending",
                       deliveries.c.next_attempt_at <= now)
                .values(next_attempt_at=until).returning(deliveries.c.id)))
            return self._deliveries(conn, sorted(taken))

    def chats_due(self, *, now: datetime) -> list[str]:
        """Chats that have rows due now (queue mode: one delivery job each), oldest first."""
        query = (sa.select(deliveries.c.chat)
                 .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
                 .group_by(deliveries.c.chat).order_by(sa.func.min(deliveries.c.id)))
        with self._tx("finding chats to deliver to", write=False) as conn:
            return list(conn.scalars(query))

    def recent_sends(self, chat: str, *, since: datetime) -> list[datetime]:
        """When messages to this chat were accepted since `since`, oldest first (whichever
        instance sent them: the per-chat and per-group limits hold across instances)."""
        query = (sa.select(deliveries.c.sent_at).distinct()
                 .where(deliveries.c.chat == chat, deliveries.c.sent_at >= since)
                 .order_by(deliveries.c.sent_at))
        with self._tx("reading a chat's recent sends", write=False) as conn:
            return list(conn.scalars(query))

    def digest_deliveries(self, chat: str) -> list[Delivery]:
        """The rows of one chat waiting for its next digest, oldest first."""
        with self._tx("reading a digest", write=False) as conn:
            ids = list(conn.scalars(sa.select(deliveries.c.id).where(
                deliveries.c.chat == chat, deliveries.c.status == "digest")
                .order_by(deliveries.c.id)))
            return self._deliveries(conn, ids)

    def chats_with_digest(self) -> list[Subscriber]:
        """Subscribers that have rows waiting for a digest."""
        waiting = sa.select(deliveries.c.chat).where(deliveries.c.status == "digest").distinct()
        query = sa.select(subscribers).where(
            sa.cast(subscribers.c.chat_id, sa.Text).in_(waiting), subscribers.c.active)
        with self._tx("finding digests", write=False) as conn:
            return [Subscriber.from_row(r) for r in conn.execute(query)]

    def _deliveries(self, conn: sa.Connection, ids: list[int]) -> list[Delivery]:
        from .store import _ALERT_JOIN, _ALERTS, _alert_from_row  # the outbox's row reader

        if not ids:
            return []
        chat_text = sa.cast(subscribers.c.chat_id, sa.Text)
        query = (sa.select(deliveries.c.id.label("d_id"), deliveries.c.chat, deliveries.c.thread,
                           deliveries.c.kind, deliveries.c.status.label("d_status"),
                           deliveries.c.attempts.label("d_attempts"),
                           deliveries.c.created_at.label("d_created"),
                           deliveries.c.message_id.label("d_message"),
                           *_ALERTS.selected_columns)
                 .select_from(_ALERT_JOIN.join(deliveries,
                                               deliveries.c.alert_id == alerts.c.id))
                 .where(deliveries.c.id.in_(ids)).order_by(deliveries.c.id))
        rows = conn.execute(query).all()
        chats = {r.chat for r in rows}
        subs = {str(r.chat_id): Subscriber.from_row(r) for r in conn.execute(
            sa.select(subscribers).where(chat_text.in_(sorted(chats))))}
        return [Delivery(r.d_id, _alert_from_row(r), r.chat, r.thread, r.kind, r.d_attempts,
                         r.d_created, subs.get(r.chat), r.d_status, r.d_message) for r in rows]

    # ------------------------------------------------------------ story updates

    def deliveries_to_refresh(self, *, now: datetime, window: timedelta, every: timedelta,
                              limit: int = 200) -> list[Delivery]:
        """Messages sent within `window` whose story gained items since the message was
        sent or last edited, and that were not sent or edited within `every`."""
        from .schema import stories

        last = sa.func.coalesce(deliveries.c.edited_at, deliveries.c.sent_at)
        query = (sa.select(deliveries.c.id)
                 .select_from(deliveries.join(alerts, alerts.c.id == deliveries.c.alert_id)
                              .join(stories, sa.cast(stories.c.id, sa.Text) == alerts.c.story_id))
                 .where(deliveries.c.status == "sent", deliveries.c.message_id.is_not(None),
                        deliveries.c.sent_at >= now - window, stories.c.updated_at > last,
                        last <= now - every)
                 .order_by(deliveries.c.id).limit(limit))
        with self._tx("finding messages to refresh", write=False) as conn:
            return self._deliveries(conn, list(conn.scalars(query)))

    def delivery_edited(self, delivery_id: int, *, now: datetime) -> None:
        """The message now shows its story as of `now` (or cannot be edited any more)."""
        with self._tx("recording an edit") as conn:
            conn.execute(sa.update(deliveries).where(deliveries.c.id == delivery_id)
                         .values(edited_at=now))

    # ------------------------------------------------------------ outcomes

    def delivery_sent(self, ids: Sequence[int], *, now: datetime, message_id: int | None,
                      silent: bool = False) -> None:
        """Telegram accepted the message carrying these rows (one row, or a digest's)."""
        with self._tx("marking deliveries sent") as conn:
            conn.execute(sa.update(deliveries).where(deliveries.c.id.in_(list(ids))).values(
                status="sent", sent_at=now, message_id=message_id, silent=silent,
                attempts=deliveries.c.attempts + 1, last_error=None))

    def delivery_retry(self, ids: Sequence[int], *, at: datetime, error: str | None,
                       attempted: bool = True) -> None:
        """Send these rows again at `at` (in id order, as before)."""
        values: dict[str, Any] = {"status": "pending", "next_attempt_at": at}
        if attempted:
            values.update(attempts=deliveries.c.attempts + 1, last_error=error)
        with self._tx("rescheduling deliveries") as conn:
            conn.execute(sa.update(deliveries).where(
                deliveries.c.id.in_(list(ids)), deliveries.c.status.in_(OPEN)).values(**values))

    def delivery_failed(self, delivery_id: int, *, error: str) -> None:
        """This row will never be sent (Telegram refused it for good)."""
        with self._tx("marking a delivery failed") as conn:
            conn.execute(sa.update(deliveries).where(deliveries.c.id == delivery_id).values(
                status="failed", attempts=deliveries.c.attempts + 1, last_error=error))

    def hold_for_digest(self, ids: Sequence[int]) -> None:
        """These rows wait for the chat's next digest instead of going now."""
        with self._tx("holding deliveries") as conn:
            conn.execute(sa.update(deliveries).where(
                deliveries.c.id.in_(list(ids)), deliveries.c.status == "pending")
                .values(status="digest"))

    def digest_sent(self, chat: str, *, now: datetime) -> None:
        """Remember when the chat last had a digest (due times count from it)."""
        key = chat_key(chat)
        if isinstance(key, str):
            return
        with self._tx("recording a digest") as conn:
            conn.execute(sa.update(subscribers).where(subscribers.c.chat_id == key)
                         .values(last_digest_at=now))

    def deactivate_chat(self, chat: str, *, reason: str, now: datetime) -> int:
        """The chat blocked or removed the bot: no more sends; its open rows are dropped.

        Returns how many rows were dropped (also added to the subscriber's count).
        """
        with self._tx("deactivating a chat") as conn:
            dropped = conn.execute(sa.update(deliveries).where(
                deliveries.c.chat == chat, deliveries.c.status.in_(OPEN))
                .values(status="dropped", last_error=reason)).rowcount
            key = chat_key(chat)
            if isinstance(key, int):
                conn.execute(sa.update(subscribers).where(subscribers.c.chat_id == key).values(
                    active=False, inactive_reason=reason, updated_at=now,
                    dropped=subscribers.c.dropped + dropped))
        return dropped

    def move_chat(self, old: str, new: str, *, now: datetime) -> None:
        """A group became a supergroup: its subscriber, subscriptions and open rows follow."""
        old_key, new_key = chat_key(old), chat_key(new)
        with self._tx("moving a chat") as conn:
            conn.execute(self._insert_ignore(chat_moves),
                         [{"old_chat": old, "new_chat": new, "moved_at": now}])
            conn.execute(sa.update(chat_moves).where(chat_moves.c.new_chat == old)
                         .values(new_chat=new))  # a chain of moves ends at the newest id
            if isinstance(old_key, int) and isinstance(new_key, int):
                _move_subscriber(conn, old_key, new_key, now)
            clash = sa.select(deliveries.c.alert_id).where(deliveries.c.chat == new)
            conn.execute(sa.update(deliveries).where(
                deliveries.c.chat == old, deliveries.c.status.in_(OPEN),
                deliveries.c.alert_id.not_in(clash)).values(chat=new))

    def moved_chats(self) -> dict[str, str]:
        """old chat -> the chat it became."""
        with self._tx("reading moved chats", write=False) as conn:
            return dict(conn.execute(sa.select(chat_moves.c.old_chat, chat_moves.c.new_chat)).all())

    def next_delivery_at(self) -> datetime | None:
        """When the earliest pending row is due (None when there is none)."""
        query = sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
            deliveries.c.status == "pending")
        with self._tx("reading the next delivery", write=False) as conn:
            return conn.scalar(query)  # min() keeps the column's type: read back tz-aware

    # ------------------------------------------------------------ operators

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries per status, zeros included."""
        query = sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
        with self._tx("counting deliveries", write=False) as conn:
            counted = dict(conn.execute(query).all())
        return {s: counted.get(s, 0) for s in ("pending", "digest", "sent", "failed", "dropped")}

    def deliveries_of(self, alert_ids: Sequence[int]) -> dict[int, list[DeliveryRow]]:
        """alert id -> its deliveries (for `veille alerts`)."""
        found: dict[int, list[DeliveryRow]] = {a: [] for a in alert_ids}
        if not alert_ids:
            return found
        query = sa.select(deliveries.c.alert_id, deliveries.c.chat, deliveries.c.thread,
                          deliveries.c.kind, deliveries.c.status, deliveries.c.attempts,
                          deliveries.c.sent_at, deliveries.c.message_id,
                          deliveries.c.last_error).where(
            deliveries.c.alert_id.in_(list(alert_ids))).order_by(deliveries.c.id)
        with self._tx("listing deliveries", write=False) as conn:
            for r in conn.execute(query):
                found[r.alert_id].append(DeliveryRow(**r._mapping))
        return found


# ---------------------------------------------------------------- statements

_FROM_SUBSCRIBERS_COLUMNS = ["alert_id", "chat", "thread", "kind", "status", "attempts",
                             "created_at", "next_attempt_at", "silent"]


def _from_subscribers(alert_ids: list[int], now: datetime) -> sa.Select[Any]:
    """One row per (alert, chat subscribed to its topic, active, not muted nor paused then)."""
    created = alerts.c.created_at
    return (
        sa.select(
            alerts.c.id, sa.cast(subscribers.c.chat_id, sa.Text), sa.literal(0, sa.BigInteger),
            sa.literal("subscriber"),
            sa.case((subscribers.c.mode == "digest", sa.literal("digest")),
                    else_=sa.literal("pending")),
            sa.literal(0), sa.literal(now, alerts.c.created_at.type),
            sa.literal(now, alerts.c.created_at.type), sa.false())
        .select_from(alerts.join(subscriptions, sa.or_(
            subscriptions.c.topic == alerts.c.topic,
            sa.literal(SURGE_PREFIX) + subscriptions.c.topic == alerts.c.topic))
            .join(subscribers, subscribers.c.chat_id == subscriptions.c.chat_id))
        .where(alerts.c.id.in_(alert_ids), subscribers.c.active,
               subscriptions.c.created_at <= created,
               sa.or_(subscriptions.c.muted_until.is_(None),
                      subscriptions.c.muted_until <= created),
               sa.or_(subscribers.c.paused_until.is_(None),
                      subscribers.c.paused_until <= created))
    )


def _delivery_row(alert_id: int, chat: str, thread: int, kind: str,
                  now: datetime) -> dict[str, Any]:
    return {"alert_id": alert_id, "chat": chat, "thread": thread or 0, "kind": kind,
            "status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now,
            "silent": False}


def _move_subscriber(conn: sa.Connection, old: int, new: int, now: datetime) -> None:
    row = conn.execute(sa.select(subscribers).where(subscribers.c.chat_id == old)).first()
    if row is None:
        return
    exists = conn.execute(sa.select(subscribers.c.chat_id).where(
        subscribers.c.chat_id == new)).first()
    if exists is None:
        values = dict(row._mapping) | {"chat_id": new, "kind": "supergroup", "updated_at": now}
        conn.execute(sa.insert(subscribers), [values])
    mine = sa.select(subscriptions.c.topic).where(subscriptions.c.chat_id == new)
    conn.execute(sa.update(subscriptions).where(
        subscriptions.c.chat_id == old, subscriptions.c.topic.not_in(mine)).values(chat_id=new))
    conn.execute(sa.delete(subscriptions).where(subscriptions.c.chat_id == old))
    conn.execute(sa.delete(subscribers).where(subscribers.c.chat_id == old))
