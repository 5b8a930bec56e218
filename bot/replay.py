"""Replay: an edited watchlist run over the items already stored, beside the one in force.

Pure: `replay` takes the stored items and two watchlists and returns, per topic, the items
the edit would gain and lose. Both watchlists match the same items now, so the difference is
the edit's alone (not a mix with whatever version was in force when each item came in).
Items keep the text they were matched on (title, summary, language, source) for the
retention period, which bounds how far back a replay can look.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from .model import Item, Match
from .watchlist import Watchlist


@dataclass(frozen=True)
class Change:
    """One item that a topic gains or loses, with the terms that matched (or used to)."""

    item: Item
    terms: tuple[str, ...]

    def as_json(self) -> dict:
        published = self.item.published.isoformat() if self.item.published else None
        return {"title": self.item.title, "url": self.item.link, "source": self.item.source,
                "published": published, "terms": list(self.terms)}


@dataclass(frozen=True)
class TopicReplay:
    """One topic's outcome: how many items each watchlist matches, and the difference."""

    topic: str
    status: str  # kept | added (only in the edit) | removed (only in force)
    before: int
    after: int
    gained: tuple[Change, ...]
    lost: tuple[Change, ...]

    def as_json(self) -> dict:
        return {"topic": self.topic, "status": self.status, "before": self.before,
                "after": self.after, "gained": [c.as_json() for c in self.gained],
                "lost": [c.as_json() for c in self.lost]}


def replay(items: Iterable[Item], in_force: Watchlist, edited: Watchlist) -> list[TopicReplay]:
    """Per topic (in force first, then new ones), what the edit gains and loses on `items`."""
    before: dict[str, dict[int, Change]] = {t.id: {} for t in in_force.topics}
    after: dict[str, dict[int, Change]] = {t.id: {} for t in edited.topics}
    old_feeds, new_feeds = _feeds(in_force), _feeds(edited)
    for n, item in enumerate(items):
        for m in in_force.matcher.match_item(item, old_feeds.get(item.feed)):
            before[m.topic][n] = _change(item, m)
        for m in edited.matcher.match_item(item, new_feeds.get(item.feed)):
            after[m.topic][n] = _change(item, m)
    order = [t.id for t in in_force.topics] + [t.id for t in edited.topics if t.id not in before]
    return [_topic(tid, before.get(tid), after.get(tid)) for tid in order]


def _topic(tid: str, before: dict[int, Change] | None, after: dict[int, Change] | None
           ) -> TopicReplay:
    status = "added" if before is None else "removed" if after is None else "kept"
    before, after = before or {}, after or {}
    gained = tuple(after[n] for n in sorted(after.keys() - before.keys()))
    lost = tuple(before[n] for n in sorted(before.keys() - after.keys()))
    return TopicReplay(tid, status, len(before), len(after), gained, lost)


def _change(item: Item, match: Match) -> Change:
    return Change(item, match.terms)


def _feeds(watchlist: Watchlist) -> dict:
    """Feed specs by URL: topics limited to some feeds or tags need the item's feed."""
    return {f.url: f for f in watchlist.all_feeds()}


def summary_line(results: Sequence[TopicReplay], items: int, since: datetime) -> str:
    """One line: how much was replayed and what changed overall."""
    gained = sum(len(r.gained) for r in results)
    lost = sum(len(r.lost) for r in results)
    return (f"{items} items stored since {since:%Y-%m-%d %H:%M} UTC replayed: "
            f"{gained} gained, {lost} lost over {len(results)} topics")
