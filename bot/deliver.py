"""Draining the outbox: lease pending alerts, hand each to a sink, record the outcome.

A sink delivers one alert and returns its message id; the Telegram sink (next issue) plugs
in beside the console ones. An alert is marked sent only after its sink returned, so a
crash loses nothing; at most the alert being delivered at that instant is repeated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Protocol, TextIO

from rich.console import Console

from .model import Alert, Topic
from .render import alert_json, alert_text
from .store import Store

log = logging.getLogger("veille.deliver")

LEASE = timedelta(minutes=2)
RETRY = timedelta(minutes=1)


class DeliveryError(Exception):
    """A sink could not deliver; `retry_after` None means never (a permanent failure)."""

    def __init__(self, message: str, retry_after: timedelta | None = RETRY) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Sink(Protocol):
    destination: str

    async def send(self, alert: Alert, topic: Topic | None) -> str | None: ...


class ConsoleSink:
    """Prints alerts for a person reading the terminal: the default without a Telegram token."""

    destination = "console"

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)

    async def send(self, alert: Alert, topic: Topic | None) -> str | None:
        self.console.print(alert_text(alert, topic))
        return None


class JsonSink:
    """Prints one JSON object per alert (`veille once --json`) when the run is over (finish):
    a story is printed once, with every outlet that joined it during the run in `also`."""

    destination = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._held: list[tuple[Alert, Topic | None]] = []

    async def send(self, alert: Alert, topic: Topic | None) -> str | None:
        self._held.append((alert, topic))
        return None

    async def finish(self, store: Store) -> None:
        """Print the alerts held, each with its story's final state."""
        for alert, topic in self._held:
            found = await story_context(store, alert)
            row = alert_json(alert, topic, also=found.also, previously=found.previously,
                             kept=found.kept)
            self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.stream.flush()
        self._held.clear()


@dataclass(frozen=True, slots=True)
class StoryContext:
    """What an alert's story adds to it: the other outlets that joined (StoryMember), the
    topic's previous story (date, title), and a summary kept from the article or the LLM."""

    also: tuple = ()
    previously: tuple[datetime, str] | None = None
    kept: str | None = None


async def story_context(store: Store, alert: Alert) -> StoryContext:
    """The story context of an alert as the store has it now (every sink renders from it)."""
    if alert.story is None or alert.story.startswith("surge:"):
        return StoryContext()
    story = await store.run(store.story, alert.story)
    if story is None:
        return StoryContext()
    previously = None
    before = alert.extra.get("created_at") or alert.item.published
    if before is not None:
        last = await store.run(store.previous_story, alert.topic, before=before,
                               exclude=alert.story)
        previously = (last.created_at, last.title) if last else None
    return StoryContext(tuple(_other_outlets(list(story.members))), previously, story.summary)


def _other_outlets(members: list) -> list:
    """The first item of each outlet that joined a story after its first outlet."""
    seen = {members[0].source.casefold()} if members else set()
    out = []
    for m in members[1:]:
        if m.source.casefold() not in seen:
            seen.add(m.source.casefold())
            out.append(m)
    return out


async def drain(store: Store, sink: Sink, *, clock: Callable[[], datetime],
                topics: Callable[[str], Topic | None], limit: int = 100,
                lease: timedelta = LEASE) -> int:
    """Deliver every due alert for the sink's destination; the number delivered."""
    delivered = 0
    while True:
        now = clock()
        batch = await store.run(store.lease_alerts, now=now, until=now + lease,
                                        limit=limit, destination=sink.destination)
        if not batch:
            return delivered
        for alert in batch:
            delivered += await _deliver_one(store, sink, alert, clock, topics)
        if len(batch) < limit:
            return delivered


async def _deliver_one(store: Store, sink: Sink, alert: Alert, clock, topics) -> int:
    try:
        message_id = await sink.send(alert, topics(alert.topic))
    except DeliveryError as exc:
        now = clock()
        retry_at = now + exc.retry_after if exc.retry_after is not None else None
        await store.run(store.mark_failed, alert.id, now=now, error=str(exc),
                                retry_at=retry_at)
        log.warning("deliver", extra={"fields": {"alert": alert.id, "topic": alert.topic,
                                                 "error": str(exc)}})
        return 0
    await store.run(store.mark_sent, alert.id, now=clock(), message_id=message_id)
    return 1
