"""The watch job's I/O: reads the store, asks bot/watch.py what began and what ended, records
it (bot/store/watch.py), and tells the operators: a message to each VEILLE_ADMINS user's
private chat with the bot (paced like every send), or, without a token or admins, one warning
line in the log.

`veille run` calls Watcher.check every few minutes (bot/scheduler.py). Notices are leased,
so two instances never send one twice; a notice no admin could be sent for a transient reason
(Telegram down, flood control) is sent again later; one refused for good (an admin who never
opened a chat with the bot) is logged and not retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from .i18n import translator
from .model import FeedSpec, Topic
from .store.watch import Notice
from .watch import Changes, FeedWatch, Rules, TopicWatch, evaluate, line, render

log = logging.getLogger("veille.watch")

EVERY = 300  # seconds between looks (the thresholds are hours and days)
LEASE = timedelta(minutes=2)  # a notice taken by an instance that died is sent after this
RETRY = timedelta(minutes=5)  # a notice no admin got (Telegram unreachable) waits this long
MARGIN = timedelta(minutes=5)  # items a claim committed after its `now` are still picked up


@dataclass
class Watcher:
    """Looks at feeds and topics, keeps what it read of the arrival times between looks."""

    store: Any
    rules: Rules
    feeds: Callable[[], Sequence[FeedSpec]]
    topics: Callable[[], Sequence[Topic]]
    clock: Callable[[], datetime]
    bot: Any = None  # a PTB Bot (the Application's: paced), or None: the log
    admins: tuple[int, ...] = ()
    # feeds that never succeeded: when this process first saw them failing (nothing older is
    # stored; a restart starts counting again, which only delays their notice)
    _failing: dict[str, datetime] = field(default_factory=dict)
    _arrivals: dict[str, set[datetime]] = field(default_factory=dict)
    _read_to: datetime | None = None

    @classmethod
    def for_app(cls, app: Any) -> Watcher:
        bot = app.telegram.application.bot if app.telegram is not None else None
        return cls(store=app.store, rules=Rules.from_settings(app.settings), feeds=app.feeds,
                   topics=lambda: app.watchlist.topics, clock=app.clock, bot=bot,
                   admins=tuple(app.settings.admins))

    async def check(self) -> Changes:
        """One look: record what began and ended, then send the notices due."""
        now = self.clock()
        feeds = await self._feed_watch(now)
        topics = await self._topic_watch(now)
        active = await self.store.run(self.store.watch_active)
        changes = evaluate(feeds, topics, active, now, self.rules)
        if changes.raised or changes.cleared or changes.forgotten:
            await self.store.run(self.store.watch_record, changes, now=now)
        await self.tell(now)
        return changes

    async def tell(self, now: datetime) -> int:
        """Send the notices due (leased to this instance); how many went out."""
        notices = await self.store.run(self.store.watch_lease, now=now, until=now + LEASE)
        told = 0
        for notice in notices:
            if await self._send(notice, now):
                await self.store.run(self.store.watch_told, notice, now=now)
                told += 1
            else:
                await self.store.run(self.store.watch_retry, notice, at=now + RETRY)
        return told

    # ------------------------------------------------------------ reading

    async def _feed_watch(self, now: datetime) -> list[FeedWatch]:
        specs = {f.url: f for f in self.feeds()}
        states = [s for s in await self.store.run(self.store.feeds_overview)
                  if s.active and s.declared_url in specs]
        await self._read_arrivals(now)
        latest = {url: max(times) for url, times in self._arrivals.items() if times}
        older = [s.declared_url for s in states if s.declared_url not in latest]
        if older:  # feeds with nothing new within the window: their latest item, if any
            latest.update(await self.store.run(self.store.latest_arrivals, older))
        return [FeedWatch(s.declared_url, specs[s.declared_url].name,
                          self._failing_since(s, now), s.last_error, latest.get(s.declared_url),
                          tuple(sorted(self._arrivals.get(s.declared_url, ()))))
                for s in states]

    async def _read_arrivals(self, now: datetime) -> None:
        """Bring the window's arrival times up to date: the whole window on the first look,
        then only what came since the last one (a few minutes of rows)."""
        start = now - self.rules.window
        since = max(self._read_to - MARGIN, start) if self._read_to else start
        fresh = await self.store.run(self.store.feed_arrivals, since=since)
        for url, times in fresh.items():
            self._arrivals.setdefault(url, set()).update(times)
        for url, times in list(self._arrivals.items()):
            kept = {t for t in times if t >= start}
            if kept:
                self._arrivals[url] = kept
            else:
                del self._arrivals[url]
        self._read_to = now

    def _failing_since(self, state: Any, now: datetime) -> datetime | None:
        if state.error_streak == 0:
            self._failing.pop(state.declared_url, None)
            return None
        return state.last_success_at or self._failing.setdefault(state.declared_url, now)

    async def _topic_watch(self, now: datetime) -> list[TopicWatch]:
        activity = await self.store.run(self.store.topic_activity, since=now - self.rules.window)
        return [TopicWatch(t.id, t.title, activity[t.id].latest if t.id in activity else None,
                           activity[t.id].count if t.id in activity else 0)
                for t in self.topics()]

    # ------------------------------------------------------------ telling

    async def _send(self, notice: Notice, now: datetime) -> bool:
        """Tell every admin; False when none got it and it is worth trying again."""
        fields = line(notice.condition, cleared=notice.cleared, now=now)
        if self.bot is None or not self.admins:
            log.warning("watch", extra={"fields": fields})
            return True
        got, retry = 0, 0
        for admin in self.admins:
            failure = await self._send_to(admin, notice, now)
            if failure is None:
                got += 1
                continue
            retry += failure.kind in ("flood", "transient")
            log.warning("watch notice not sent", extra={"fields": {
                "chat": admin, "condition": notice.condition.kind, "error": failure.reason}})
        log.info("watch", extra={"fields": {**fields, "admins_told": got}})
        return got > 0 or retry == 0

    async def _send_to(self, admin: int, notice: Notice, now: datetime) -> Any:
        """Send one admin the notice in their language and zone; the Failure, or None."""
        from telegram import LinkPreviewOptions
        from telegram.constants import ParseMode

        from .telegram.client import classify

        chat = await self.store.run(self.store.subscriber, admin)
        lang, tz = (chat.language, chat.tz) if chat is not None else ("en", "UTC")
        text = render(notice.condition, cleared=notice.cleared, now=now, t=translator(lang),
                      tz=tz)
        try:
            await self.bot.send_message(chat_id=admin, text=text, parse_mode=ParseMode.HTML,
                                        link_preview_options=LinkPreviewOptions(is_disabled=True))
        except Exception as exc:  # noqa: BLE001 (mapped once, by telegram/client.py)
            return classify(exc)
        return None
