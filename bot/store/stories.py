"""The stories side of the store: which story each new matched item joins, decided and
recorded in the claim's transaction; stories and their outlets for operators and the
Telegram editor; coverage surges.

The decision "opens a story" or "joins story X" is made by a StoryIndex (bot/stories.py,
pure), a cache of the `story_items` rows of the last 72 hours: it is brought up to date from
the table inside the claim's transaction (so it is rebuilt after a restart, and sees what
other instances recorded), and rows it was told of are forgotten again when that transaction
rolls back. On PostgreSQL a transaction-scoped advisory lock per topic serialises the
decisions of one topic across threads and instances; SQLite has one writer anyway. The
outbox's unique (destination, topic, story_id) is the last guard: one alert per story.

Mixed into Store (store.py); uses its _tx and _insert_ignore.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa

from ..model import Hit, Item, Match
from ..stories import Signature, StoryIndex, keyed, signature
from .schema import alerts, items, matches, stories, story_items, surges

SYNC_MARGIN = timedelta(minutes=5)  # rows of claims that committed late are still picked up
_MAX_GAPS = 5_000  # more ids missing than this: the next sync reads by time again
_GAP_CHUNK = 500
_LOCK_SPACE = 0x53544F52  # "STOR": high half of the per-topic advisory lock key


@dataclass(frozen=True, slots=True)
class StoryMember:
    """One item of a story: its outlet, title, link, and how it joined."""

    source: str
    title: str
    url: str
    how: str  # first | url | copy | report
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class StoryRow:
    """One story with its items (members[0] is the first; the others joined it)."""

    id: str
    topic: str
    title: str
    url: str
    source: str
    lang: str | None
    created_at: datetime
    updated_at: datetime  # when an item last joined
    members: tuple[StoryMember, ...] = ()
    summary: str | None = None  # made from the article or by the LLM; None: the feed's text
    summary_origin: str | None = None  # article | llm

    @property
    def outlets(self) -> tuple[str, ...]:
        """Distinct outlets, first one first."""
        return tuple(dict.fromkeys(m.source for m in self.members) or [self.source])

    @property
    def joined(self) -> tuple[StoryMember, ...]:
        """The members after the first."""
        return self.members[1:]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one new matched item went: its story, and whether it opened it."""

    story: str
    opened: bool
    how: str


class StoryStore:
    """Story methods of Store."""

    # ------------------------------------------------------------ in the claim

    def _place_stories(self, conn: sa.Connection, pairs: Sequence[tuple[Item, Match]],
                       ids: Mapping[str, int], index: StoryIndex, now: datetime,
                       added: list[tuple[str, str]]) -> dict[tuple[str, str], Placement]:
        """Put each (new item, match) in a story; (guid, topic) -> Placement.

        `added` collects the (topic, key) pairs told to the index, for the caller to forget
        if the transaction rolls back.
        """
        if not pairs:
            return {}
        if conn.dialect.name == "postgresql":
            for topic in sorted({m.topic for _, m in pairs}):  # one order: no deadlock
                conn.execute(_TOPIC_LOCK, {"a": _LOCK_SPACE, "b": _topic_key(topic)})
        self._sync_index(conn, index, now)
        placed: dict[tuple[str, str], Placement] = {}
        for item, match in sorted(pairs, key=lambda p: (p[0].published or now, ids[p[0].guid])):
            item_id = ids[item.guid]
            key = f"{item_id}:{match.topic}"
            ready = index.take(item, match.topic)  # made by a parse worker, hashed before
            sig = keyed(ready, key, now) if ready else signature(item, match, key=key, when=now)
            decision = index.decide(sig)
            if decision.story is None:
                story, opened = self._open_story(conn, sig, item_id, now)
                how = "first" if opened else "url"
            else:
                story, opened, how = decision.story, False, decision.how
            if not opened:
                conn.execute(_JOINED, {"j_id": int(story), "j_now": now})
            conn.execute(sa.insert(story_items), _member_row(story, item_id, sig, how, now))
            index.add(story, sig)
            added.append((match.topic, sig.key))
            placed[(item.guid, match.topic)] = Placement(story, opened, how)
        return placed

    def _open_story(self, conn: sa.Connection, sig: Signature, item_id: int,
                    now: datetime) -> tuple[str, bool]:
        """A new stories row (story id, True), or the one another claim opened for the same
        article (id, False)."""
        key = sig.url or f"item:{item_id}"
        row = {"topic": sig.topic, "key": key, "item_id": item_id, "title": sig.title,
               "url": sig.link, "source": sig.outlet, "lang": sig.lang or None,
               "created_at": now, "updated_at": now, "item_count": 1}
        new = conn.execute(self._insert_ignore(stories).returning(stories.c.id), row).first()
        if new is not None:
            return str(new.id), True
        found = conn.scalar(sa.select(stories.c.id).where(stories.c.topic == sig.topic,
                                                          stories.c.key == key))
        return str(found), False

    def _sync_index(self, conn: sa.Connection, index: StoryIndex, now: datetime) -> None:
        """Tell the index of the story_items rows it has not seen (all of the window, the
        first time: the rebuild after a restart); close stories past the window.

        After the first time it reads only the rows past the highest id it read, and the ids
        below that it has not read (gaps: claims still open when it read, or rolled back),
        for SYNC_MARGIN: each claim reads the rows of the claims since the previous one, not
        those of the last minutes again (that was quadratic in a busy cycle).
        """
        with index.lock:
            after, gaps = index.synced_id, list(index.gaps)
        if after is None:  # the first time, or too many gaps: by time
            since = (index.synced_at - SYNC_MARGIN) if index.synced_at else now - index.window
            rows = list(conn.execute(_MEMBERS_SINCE, {"s_since": since}))
            recent = [r.id for r in rows if r.joined_at >= now - SYNC_MARGIN]
            floor = min(recent) if recent else None
        else:
            rows = list(conn.execute(_MEMBERS_AFTER, {"s_after": after}))
            for chunk in (gaps[i:i + _GAP_CHUNK] for i in range(0, len(gaps), _GAP_CHUNK)):
                rows += conn.execute(_MEMBERS_IN, {"s_ids": chunk})
            floor = after + 1
        for row in rows:
            key = f"{row.item_id}:{row.topic}"
            if key in index:
                continue
            hits = tuple(Hit(**h) for h in json.loads(row.hits or "[]"))
            item = Item(feed="", guid=str(row.item_id), url=row.item_url or "", link=row.link,
                        title=row.item_title, summary=row.summary, published=row.published,
                        lang=row.lang, source=row.item_source)
            index.add(str(row.story_id), signature(item, Match(row.topic, hits), key=key,
                                                   when=row.joined_at))
        _advance(index, {r.id for r in rows}, floor, now)
        index.expire(now)

    # ------------------------------------------------------------ reading

    def story(self, story_id: str) -> StoryRow | None:
        """One story with its members, or None."""
        with self._tx("reading a story", write=False) as conn:
            rows = self._with_members(conn, conn.execute(
                sa.select(stories).where(stories.c.id == int(story_id))))
        return rows[0] if rows else None

    def story_members(self, story_id: str) -> list[StoryMember]:
        """The items of a story in the order they joined (the first item first)."""
        found = self.story(story_id)
        return list(found.members) if found else []

    def stories_changed(self, *, since: datetime, topic: str | None = None,
                        limit: int = 500) -> list[StoryRow]:
        """Stories that an item joined after `since` (not counting the first), oldest change
        first: what the Telegram editor refreshes ("also: …")."""
        query = sa.select(stories).where(stories.c.updated_at > since, stories.c.item_count > 1)
        if topic is not None:
            query = query.where(stories.c.topic == topic)
        query = query.order_by(stories.c.updated_at, stories.c.id).limit(limit)
        with self._tx("reading changed stories", write=False) as conn:
            return self._with_members(conn, conn.execute(query))

    def recent_stories(self, *, since: datetime, topic: str | None = None,
                       limit: int = 200) -> list[StoryRow]:
        """Stories opened or joined since `since`, most recently changed first."""
        query = sa.select(stories).where(stories.c.updated_at >= since)
        if topic is not None:
            query = query.where(stories.c.topic == topic)
        query = query.order_by(stories.c.updated_at.desc(), stories.c.id.desc()).limit(limit)
        with self._tx("listing stories", write=False) as conn:
            return self._with_members(conn, conn.execute(query))

    def previous_story(self, topic: str, *, before: datetime,
                       exclude: str | None = None) -> StoryRow | None:
        """The latest story of a topic opened before `before` (the "previously:" line)."""
        query = sa.select(stories).where(stories.c.topic == topic,
                                         stories.c.created_at < before)
        if exclude is not None:
            query = query.where(stories.c.id != int(exclude))
        query = query.order_by(stories.c.created_at.desc(), stories.c.id.desc()).limit(1)
        with self._tx("reading the previous story", write=False) as conn:
            rows = [_story_row(r, ()) for r in conn.execute(query)]
        return rows[0] if rows else None

    def story_times(self, topic: str, *, since: datetime) -> list[datetime]:
        """When each story of a topic opened since `since` was opened (surge counts)."""
        query = sa.select(stories.c.created_at).where(stories.c.topic == topic,
                                                      stories.c.created_at >= since)
        with self._tx("counting stories", write=False) as conn:
            return list(conn.scalars(query))

    def _with_members(self, conn: sa.Connection, rows: Iterable[Any]) -> list[StoryRow]:
        rows = list(rows)
        if not rows:
            return []
        members: dict[int, list[StoryMember]] = {}
        query = (sa.select(story_items)
                 .where(story_items.c.story_id.in_([r.id for r in rows]))
                 .order_by(story_items.c.joined_at, story_items.c.id))
        for m in conn.execute(query):
            members.setdefault(m.story_id, []).append(
                StoryMember(m.source, m.title, m.url, m.how, m.joined_at))
        return [_story_row(r, members.get(r.id, ())) for r in rows]

    def set_story_summary(self, story_id: str, text: str, origin: str) -> None:
        """Keep the summary made for a story from its article's text or by the LLM."""
        query = (sa.update(stories).where(stories.c.id == int(story_id))
                 .values(summary=text, summary_origin=origin))
        with self._tx("keeping a story's summary") as conn:
            conn.execute(query)

    # ------------------------------------------------------------ surges

    def last_surge_until(self, topic: str) -> datetime | None:
        """The end of the latest surge's cool-down for a topic, or None."""
        query = sa.select(sa.func.max(surges.c.until)).where(surges.c.topic == topic)
        with self._tx("reading surges", write=False) as conn:
            return conn.scalar(query)

    def record_surge(self, topic: str, *, recent: int, baseline: float,
                     top: Sequence[StoryRow], until: datetime, now: datetime,
                     destinations: Sequence[str]) -> int | None:
        """Record a surge and queue its alert (topic "surge:<topic>", story "surge:<id>") per
        destination; None when a surge of this topic is still cooling down (another instance
        recorded it first)."""
        payload = [{"story": s.id, "title": s.title, "url": s.url, "source": s.source,
                    "outlets": len(s.outlets)} for s in top]
        with self._tx("recording a surge") as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(_TOPIC_LOCK, {"a": _LOCK_SPACE, "b": _topic_key("surge:" + topic)})
            cooling = conn.scalar(sa.select(sa.func.max(surges.c.until))
                                  .where(surges.c.topic == topic))
            if cooling is not None and cooling > now:
                return None
            surge_id = conn.execute(sa.insert(surges).returning(surges.c.id), {
                "topic": topic, "detected_at": now, "until": until, "recent": recent,
                "baseline": baseline, "stories": json.dumps(payload, ensure_ascii=False),
            }).scalar_one()
            if top:
                item_id = conn.scalar(sa.select(stories.c.item_id)
                                      .where(stories.c.id == int(top[0].id)))
                rows = [{"item_id": item_id, "topic": f"{SURGE_PREFIX}{topic}",
                         "destination": d, "story_id": f"surge:{surge_id}", "status": "pending",
                         "attempts": 0, "created_at": now, "next_attempt_at": now}
                        for d in destinations]
                conn.execute(self._insert_ignore(alerts), rows)
        return surge_id

    def surge(self, surge_id: int) -> dict[str, Any] | None:
        """A recorded surge: topic, detected_at, recent, baseline, stories (top ones)."""
        with self._tx("reading a surge", write=False) as conn:
            row = conn.execute(sa.select(surges).where(surges.c.id == surge_id)).first()
        if row is None:
            return None
        values = dict(row._mapping)
        values["stories"] = json.loads(values["stories"])
        return values

    # ------------------------------------------------------------ housekeeping

    def prune_stories(self, *, before: datetime) -> int:
        """Forget stories no item joined since `before`; the number forgotten."""
        old = sa.select(stories.c.id).where(stories.c.updated_at < before)
        with self._tx("pruning stories") as conn:
            conn.execute(sa.delete(story_items).where(story_items.c.story_id.in_(old)))
            return conn.execute(sa.delete(stories).where(stories.c.updated_at < before)).rowcount


SURGE_PREFIX = "surge:"  # the topic of a surge alert is "surge:<topic id>"


def _topic_key(topic: str) -> int:
    """A stable signed 32-bit key for a topic's advisory lock."""
    value = zlib.crc32(topic.encode("utf-8"))
    return value - (1 << 32) if value >= 1 << 31 else value


def _advance(index: StoryIndex, seen: set[int], floor: int | None, now: datetime) -> None:
    """Move the index's sync mark past the ids read; the ids from floor up that were not
    read become gaps (several threads may sync at once: marks only grow, gaps only merge)."""
    top = max(seen, default=None)
    with index.lock:
        marks = (index.synced_id, top, None if floor is None else floor - 1)
        high = max((v for v in marks if v is not None), default=None)
        gaps = {i: t for i, t in index.gaps.items() if i not in seen and t >= now - SYNC_MARGIN}
        if floor is not None and top is not None:
            gaps.update((i, now) for i in range(floor, top) if i not in seen and i not in gaps)
        index.synced_at, index.gaps = now, gaps
        index.synced_id = high if len(gaps) <= _MAX_GAPS else None
        if index.synced_id is None:
            index.gaps = {}


def _member_row(story: str, item_id: int, sig: Signature, how: str,
                now: datetime) -> dict[str, Any]:
    return {"story_id": int(story), "item_id": item_id, "topic": sig.topic, "how": how,
            "source": sig.outlet, "title": sig.title, "url": sig.link, "joined_at": now}


def _story_row(row: Any, members: Iterable[StoryMember]) -> StoryRow:
    return StoryRow(str(row.id), row.topic, row.title, row.url, row.source, row.lang,
                    row.created_at, row.updated_at, tuple(members), row.summary,
                    row.summary_origin)


def _bind(name: str, type_: Any = None) -> Any:
    return sa.bindparam(name, type_=type_)


_WHEN = stories.c.updated_at.type
_TOPIC_LOCK = sa.text("SELECT pg_advisory_xact_lock(:a, :b)")
_JOINED = (
    sa.update(stories)
    .where(stories.c.id == _bind("j_id"))
    .values(updated_at=_bind("j_now", _WHEN), item_count=stories.c.item_count + 1)
)
_MEMBERS = (
    sa.select(story_items.c.id, story_items.c.story_id, story_items.c.item_id, story_items.c.topic,
              story_items.c.joined_at, items.c.url.label("item_url"), items.c.link,
              items.c.title.label("item_title"), items.c.summary, items.c.published,
              items.c.lang, items.c.source.label("item_source"), matches.c.hits)
    .select_from(story_items
                 .join(items, items.c.id == story_items.c.item_id)
                 .outerjoin(matches, sa.and_(matches.c.item_id == story_items.c.item_id,
                                             matches.c.topic == story_items.c.topic)))
    .order_by(story_items.c.id)
)
_MEMBERS_SINCE = _MEMBERS.where(story_items.c.joined_at >= _bind("s_since", _WHEN))
_MEMBERS_AFTER = _MEMBERS.where(story_items.c.id > _bind("s_after"))
_MEMBERS_IN = _MEMBERS.where(story_items.c.id.in_(sa.bindparam("s_ids", expanding=True)))
