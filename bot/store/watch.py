"""The watch side of the store: what the watcher reads (new items' arrival times per feed,
stories per topic) and the conditions it told the operators about (`watch_conditions`).

A condition's row is inserted when it is found (the primary key on its key makes a second
finder, another instance or a restart, a no-op), marked told once the notice that it began
was sent, marked cleared when it ends, and deleted once the notice of its end was sent. Each
notice is sent by the one caller that leased its row, until `until`: one that dies leaves it
to be sent by another after that, so a notice is never lost and never sent by two at once.

Mixed into Store (store.py); uses its _tx and _insert_ignore.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Collection

import sqlalchemy as sa

from ..watch import Changes, Condition
from .schema import feeds, items, stories, watch_conditions as wc

@dataclass(frozen=True, slots=True)
class Notice:
    """A leased notice to send: that `condition` began, or (cleared) that it ended."""

    condition: Condition
    cleared: bool


@dataclass(frozen=True, slots=True)
class Activity:
    """When a topic's latest story opened, and how many opened within the window."""

    latest: datetime | None
    count: int = 0


class WatchStore:
    """Watch methods of Store."""

    # ------------------------------------------------------------ what the watcher reads

    def feed_arrivals(self, *, since: datetime) -> dict[str, set[datetime]]:
        """Declared feed URL -> the distinct times its new items were first seen since `since`
        (items of one poll share one time: a batch counts once)."""
        query = (sa.select(feeds.c.declared_url, items.c.first_seen_at).distinct()
                 .join(feeds, feeds.c.id == items.c.feed_id)
                 .where(items.c.first_seen_at >= since))
        found: dict[str, set[datetime]] = {}
        with self._tx("reading new items' times", write=False) as conn:
            for url, when in conn.execute(query):
                found.setdefault(url, set()).add(when)
        return found

    def latest_arrivals(self, urls: Collection[str]) -> dict[str, datetime]:
        """Declared feed URL -> when its latest new item was first seen (feeds with items)."""
        from .store import _chunks  # the store's IN (...) batching

        found: dict[str, datetime] = {}
        with self._tx("reading feeds' latest items", write=False) as conn:
            for chunk in _chunks(sorted(urls)):
                query = (sa.select(feeds.c.declared_url, sa.func.max(items.c.first_seen_at))
                         .join(feeds, feeds.c.id == items.c.feed_id)
                         .where(feeds.c.declared_url.in_(chunk))
                         .group_by(feeds.c.declared_url))
                found.update((url, when) for url, when in conn.execute(query) if when)
        return found

    def topic_activity(self, *, since: datetime) -> dict[str, Activity]:
        """Topic -> when its latest story opened, and how many opened since `since`."""
        recent = sa.func.sum(sa.case((stories.c.created_at >= since, 1), else_=0))
        query = (sa.select(stories.c.topic, sa.func.max(stories.c.created_at), recent)
                 .group_by(stories.c.topic))
        with self._tx("reading stories per topic", write=False) as conn:
            return {topic: Activity(latest=latest, count=int(n or 0))
                    for topic, latest, n in conn.execute(query)}

    # ------------------------------------------------------------ conditions

    def watch_active(self) -> list[Condition]:
        """The conditions raised and not ended."""
        query = sa.select(wc).where(wc.c.cleared_at.is_(None)).order_by(wc.c.key)
        with self._tx("reading watch conditions", write=False) as conn:
            return [_condition(r) for r in conn.execute(query)]

    def watch_record(self, changes: Changes, *, now: datetime) -> int:
        """Remember conditions begun (a key already there is left alone) and ended; forget
        the forgotten. The number of conditions this call was the first to record."""
        with self._tx("recording watch conditions") as conn:
            new = 0
            for c in changes.raised:  # one by one: RETURNING tells which were inserted
                row = _row(c, now)
                new += conn.execute(self._insert_ignore(wc).returning(wc.c.key), row).first() \
                    is not None
            ended = [c.key for c in changes.cleared]
            if ended:
                conn.execute(sa.update(wc).where(wc.c.key.in_(ended), wc.c.cleared_at.is_(None))
                             .values(cleared_at=now))
            if changes.forgotten:
                conn.execute(sa.delete(wc).where(wc.c.key.in_(list(changes.forgotten))))
        return new

    def watch_lease(self, *, now: datetime, until: datetime, limit: int = 100) -> list[Notice]:
        """Take the notices due (begun and not told, or ended), each for one caller until
        `until`; an ended condition whose beginning was never told is deleted silently."""
        free = sa.or_(wc.c.lease_until.is_(None), wc.c.lease_until <= now)
        with self._tx("leasing watch notices") as conn:
            conn.execute(sa.delete(wc).where(wc.c.cleared_at.is_not(None), wc.c.told_at.is_(None),
                                             free))
            due = sa.or_(wc.c.told_at.is_(None), wc.c.cleared_at.is_not(None))
            keys = list(conn.scalars(sa.select(wc.c.key).where(due, free)
                                     .order_by(wc.c.raised_at, wc.c.key).limit(limit)))
            if not keys:
                return []
            # the WHERE is checked again under the row lock: a row is leased by one caller
            taken = conn.execute(sa.update(wc).where(wc.c.key.in_(keys), due, free)
                                 .values(lease_until=until).returning(*wc.c)).all()
        rows = sorted(taken, key=lambda r: (r.raised_at, r.key))
        return [Notice(_condition(r), cleared=r.cleared_at is not None) for r in rows]

    def watch_told(self, notice: Notice, *, now: datetime) -> None:
        """The notice was sent (or given up): the next one of its condition may come."""
        key = notice.condition.key
        with self._tx("marking a watch notice sent") as conn:
            if notice.cleared:
                conn.execute(sa.delete(wc).where(wc.c.key == key))
            else:
                conn.execute(sa.update(wc).where(wc.c.key == key)
                             .values(told_at=now, lease_until=None))

    def watch_retry(self, notice: Notice, *, at: datetime) -> None:
        """Sending failed for now: the notice is due again at `at`."""
        with self._tx("postponing a watch notice") as conn:
            conn.execute(sa.update(wc).where(wc.c.key == notice.condition.key)
                         .values(lease_until=at))


def _row(c: Condition, now: datetime) -> dict[str, Any]:
    return {"key": c.key, "kind": c.kind, "subject": c.subject, "name": c.name,
            "since": c.since, "detail": c.detail, "count": c.count, "raised_at": now,
            "usual_seconds": c.usual.total_seconds() if c.usual is not None else None}


def _condition(row: Any) -> Condition:
    usual = timedelta(seconds=row.usual_seconds) if row.usual_seconds is not None else None
    return Condition(row.kind, row.subject, row.name, row.since, detail=row.detail,
                     usual=usual, count=row.count)

