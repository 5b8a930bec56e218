"""The delivery worker: outbox → per-chat deliveries → Telegram, paced, never lost.

drain() fans pending Telegram alerts out into deliveries (store), leases the due ones and
hands each chat's rows to that chat's own task, so one slow, flood-waited or failing chat
never delays the others. A row is marked sent with its message id only after Telegram
accepted it; a crash repeats at most the message in flight for a chat.

What a failed send does (client.classify names the cases):
- flood (429): that chat waits as told (the pacer also holds back its next messages); the
  row and the chat's later rows go back to the store for then, in order;
- transient (5xx, timeouts, network): retried with exponential backoff and jitter, same;
- gone (blocked, kicked, deactivated, chat not found): the subscriber is deactivated and its
  open rows dropped and counted; a destination chat's row fails and the operator is told;
- moved (group → supergroup): subscriber, subscriptions and open rows move to the new id,
  and the rows are sent again there;
- format (entities or length): sent once more as plain text, logged as a rendering bug;
- rejected (any other 400): that row fails with Telegram's reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode

from ..deliver import story_context
from ..errors import StoreError
from ..model import Topic
from ..store.deliveries import PER_CHAT, SURGE_PREFIX, Delivery, FanOut, base_topic
from ..summarize import summarize
from . import policy
from .client import Failure, classify
from .pacing import CHAT_INTERVAL, GROUP_PER_MINUTE, Pacer, is_group
from .render import DigestEntry, Rendered, render_alert, render_digest, render_surge

log = logging.getLogger("veille.telegram")

LEASE = timedelta(minutes=2)
BATCH = 1000  # rows leased per drain: ~35 s of sending at the overall limit, well within LEASE
BACKOFF_BASE = 5.0  # seconds, doubled per attempt
BACKOFF_MAX = 3600.0
EDIT_WINDOW = timedelta(hours=48)  # sent messages older than this are no longer updated
EDIT_EVERY = timedelta(minutes=3)  # at most one "also: …" edit per message this often


def _chat_kind(row: Delivery) -> str:
    """private, group, supergroup or channel: the subscriber's, else guessed from the id."""
    if row.subscriber is not None:
        return row.subscriber.kind
    return "channel" if row.chat.startswith("@") else "group"


def _markup(rendered: Rendered) -> InlineKeyboardMarkup | None:
    """The inline keyboard of a rendered message, as PTB takes it."""
    if not rendered.buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.text, callback_data=b.data)
                                  for b in line] for line in rendered.buttons])


@dataclass(frozen=True, slots=True)
class Sent:
    """Telegram accepted a message."""

    message_id: int


@dataclass(frozen=True, slots=True)
class Stop:
    """This chat's task stops; its remaining rows go back to the store for `at` (None: the
    rows were settled otherwise, e.g. dropped)."""

    at: datetime | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Skip:
    """This row is settled (failed, held, waiting); go on with the chat's next row."""


@dataclass
class DeliveryWorker:
    """Sends leased deliveries through a PTB Bot, one task per chat."""

    store: Any  # bot.store.Store
    bot: Any  # telegram.Bot (the Application's ExtBot)
    pacer: Pacer
    topics: Callable[[str], Topic | None]
    destinations: Callable[[], Mapping[str, Sequence[tuple[str, int]]]]
    clock: Callable[[], datetime]
    translator: Callable[[str], Callable[[str], str]] = lambda _lang: (lambda s: s)
    rng: random.Random = field(default_factory=random.Random)
    lease: timedelta = LEASE  # how long leased rows are ours before another worker may take them
    metrics: Any = None  # bot.metrics.Metrics (telegram_sent, telegram_error, ...), optional
    # queue mode (several instances, bot/queue.py): drain() hands the chats with due rows to
    # this (one job per chat, run by whichever instance takes it) instead of sending itself
    dispatch: Callable[[list[str]], Any] | None = None
    _chats: dict[str, asyncio.Task] = field(default_factory=dict, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _stopping: bool = field(default=False, init=False)

    # ------------------------------------------------------------ the loop

    async def drain(self) -> int:
        """Fan out, lease what is due, start a task per chat; the number of rows handed out."""
        if self._stopping:
            return 0
        async with self._lock:
            now = self.clock()
            fanned: FanOut = await self.store.run(self.store.fan_out, now=now,
                                                  destinations=self.destinations())
            if fanned.alerts:
                log.info("fan-out", extra={"fields": {
                    "alerts": fanned.alerts, "subscribers": fanned.subscribers,
                    "destinations": fanned.destinations}})
            if self.dispatch is not None:
                chats = await self.store.run(self.store.chats_due, now=now)
                if chats:
                    await self.dispatch(chats)
                return len(chats)
            rows = await self.store.run(self.store.lease_deliveries, now=now,
                                        until=now + self.lease, limit=BATCH,
                                        busy=self.busy())
            by_chat: dict[str, list[Delivery]] = {}
            for row in rows:
                by_chat.setdefault(row.chat, []).append(row)
            for chat, chat_rows in by_chat.items():
                task = asyncio.get_running_loop().create_task(self._run_chat(chat, chat_rows))
                self._chats[chat] = task
                task.add_done_callback(lambda _t, c=chat: self._done(c, _t))
            return len(rows)

    async def deliver_chat(self, chat: str) -> int:
        """Queue mode: send this chat's due rows; the number leased.

        The queue runs one job per chat at a time across instances (a procrastinate lock),
        so only the spacing since the last send, perhaps by another instance, is read back
        from the store: the chat's next message waits CHAT_INTERVAL after it, and a group
        gets at most what its per-minute budget has left.
        """
        if self._stopping:
            return 0
        now = self.clock()
        recent = await self.store.run(self.store.recent_sends, chat,
                                      since=now - timedelta(seconds=60))
        per_chat = PER_CHAT
        if recent:
            self.pacer.hold(chat, CHAT_INTERVAL - (now - recent[-1]).total_seconds())
        if is_group(chat):
            per_chat = min(per_chat, GROUP_PER_MINUTE - len(recent))
            if per_chat <= 0:  # its minute is spent: the rows stay due for the next drain
                return 0
        rows = await self.store.run(self.store.lease_deliveries, now=now,
                                    until=now + self.lease, chat=chat, per_chat=per_chat)
        if rows:
            task = asyncio.current_task()
            self._chats[chat] = task
            try:
                await self._run_chat(chat, rows)
            finally:
                self._done(chat, task)
        return len(rows)

    def busy(self) -> set[str]:
        """Chats whose task is still sending."""
        return {c for c, t in self._chats.items() if not t.done()}

    def _done(self, chat: str, task: asyncio.Task) -> None:
        if self._chats.get(chat) is task:
            del self._chats[chat]

    async def wait_idle(self) -> None:
        """Wait for every chat task started so far."""
        while self._chats:
            await asyncio.gather(*list(self._chats.values()), return_exceptions=True)

    async def drain_all(self, *, max_wait: float = 60.0) -> None:
        """Deliver until nothing is due, waiting up to max_wait seconds for rows retried
        soon (`veille once`, and stopping `veille run`)."""
        deadline = self.clock() + timedelta(seconds=max_wait)
        while True:
            handed = await self.drain()
            await self.wait_idle()
            if handed:
                continue
            due = await self.store.run(self.store.next_delivery_at)
            if due is None or due > deadline:
                return
            await asyncio.sleep(max(0.0, (due - self.clock()).total_seconds()) + 0.05)

    async def close(self, grace: float = 30.0) -> None:
        """Stop: each chat task finishes the message in flight and gives its other rows back
        (due at once, for the next start or another instance); after `grace` seconds the
        stragglers are cancelled (their leases expire and they are retried)."""
        self._stopping = True
        tasks = list(self._chats.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------ one chat

    async def _run_chat(self, chat: str, rows: list[Delivery]) -> None:
        for i, row in enumerate(rows):
            if self._stopping:
                await self.store.run(self.store.delivery_retry, [r.id for r in rows[i:]],
                                     at=self.clock(), error=None, attempted=False)
                return
            try:
                outcome = await self._deliver(row)
            except StoreError as exc:  # the send may have happened; the lease will retry it
                log.error("deliver", extra={"fields": {"chat": chat, "error": str(exc)}})
                return
            if isinstance(outcome, Stop):
                rest = [r.id for r in rows[i + 1:]]
                if outcome.at is not None:
                    rest = [row.id, *rest] if outcome.reason == "moved" else rest
                    if rest:
                        await self.store.run(self.store.delivery_retry, rest, at=outcome.at,
                                             error=None, attempted=False)
                return

    async def _deliver(self, row: Delivery) -> Sent | Stop | Skip:
        topic = self.topics(base_topic(row.alert.topic))
        now = self.clock()
        decision = policy.decide(row.subscriber, topic.priority if topic else "normal", now)
        if decision.action == policy.HOLD:
            await self.store.run(self.store.hold_for_digest, [row.id])
            return Skip()
        if decision.action == policy.WAIT:
            await self.store.run(self.store.delivery_retry, [row.id], at=decision.until,
                                 error=None, attempted=False)
            return Stop(decision.until)
        rendered = await self._render(row, topic, silent=decision.silent)
        return await self._send(row, [row.id], rendered)

    async def _render(self, row: Delivery, topic: Topic | None, *, silent: bool) -> Rendered:
        """The message for this row as its story stands now: the summary, the outlets that
        joined, the topic's previous story; or a coverage surge."""
        sub = row.subscriber
        lang = sub.language if sub else "en"
        look = {"tz": sub.tz if sub else "UTC", "lang": lang, "t": self.translator(lang)}
        buttons = row.kind == "subscriber"
        alert = row.alert
        if alert.topic.startswith(SURGE_PREFIX):
            surge = await self.store.run(self.store.surge, int(alert.story.split(":", 1)[1]))
            base = self.topics(base_topic(alert.topic))
            return replace(render_surge(surge or {}, base, buttons=buttons, **look), silent=silent)
        found = await story_context(self.store, alert)
        summary = summarize(alert.item, alert.match, topic, found.previously)
        text, marks = (found.kept, None) if found.kept else (summary.text, summary.marks or None)
        also = [{"source": m.source, "title": m.title, "url": m.url} for m in found.also]
        return render_alert(alert, topic, summary=text or None, marks=marks, also=also,
                            previously=found.previously, silent=silent, buttons=buttons, **look)

    async def _send(self, row: Delivery, ids: list[int], rendered: Rendered) -> Sent | Stop | Skip:
        """Send one message for these rows and settle them, whatever Telegram answers."""
        try:
            message = await self._post(row.chat_id, row.thread, rendered)
        except Exception as exc:  # noqa: BLE001 (every PTB error is classified below)
            return await self._failed(row, ids, rendered, classify(exc))
        await self.store.run(self.store.delivery_sent, ids, now=self.clock(),
                             message_id=message.message_id, silent=rendered.silent)
        if self.metrics is not None:
            self.metrics.telegram_sent(_chat_kind(row))
        log.info("sent", extra={"fields": {"chat": row.chat, "alert": row.alert.id,
                                           "topic": row.alert.topic, "rows": len(ids)}})
        return Sent(message.message_id)

    async def _post(self, chat_id: int | str, thread: int, rendered: Rendered,
                    plain: bool = False) -> Any:
        markup = _markup(rendered)
        return await self.bot.send_message(
            chat_id=chat_id, text=rendered.plain() if plain else rendered.text,
            parse_mode=None if plain else ParseMode.HTML, reply_markup=markup,
            link_preview_options=LinkPreviewOptions(is_disabled=not rendered.preview),
            disable_notification=rendered.silent, message_thread_id=thread or None)

    async def _failed(self, row: Delivery, ids: list[int], rendered: Rendered,
                      failure: Failure) -> Stop | Skip | Sent:
        now = self.clock()
        fields = {"chat": row.chat, "alert": row.alert.id, "kind": failure.kind,
                  "error": failure.reason}
        log.warning("send-failed", extra={"fields": fields})
        if self.metrics is not None:
            self.metrics.telegram_error(failure.kind)
            if failure.kind == "flood":
                self.metrics.telegram_rate_limited(failure.retry_after)
        if failure.kind == "flood":
            self.pacer.flood_wait(row.chat_id, failure.retry_after)
            at = now + timedelta(seconds=failure.retry_after)
            await self.store.run(self.store.delivery_retry, ids, at=at, error=failure.reason)
            return Stop(at, "flood")
        if failure.kind == "transient":
            at = now + timedelta(seconds=self._backoff(row.attempts))
            await self.store.run(self.store.delivery_retry, ids, at=at, error=failure.reason)
            return Stop(at, "transient")
        if failure.kind == "gone":
            return await self._gone(row, ids, failure)
        if failure.kind == "moved" and failure.new_chat is not None:
            await self.store.run(self.store.move_chat, row.chat, str(failure.new_chat), now=now)
            log.warning("chat-moved", extra={"fields": {"chat": row.chat,
                                                        "to": failure.new_chat}})
            return Stop(now, "moved")  # the rows, now under the new id, go out at once
        if failure.kind == "format":
            return await self._plain(row, ids, rendered, failure)
        await self._fail_rows(ids, failure.reason)
        return Skip()

    async def _gone(self, row: Delivery, ids: list[int], failure: Failure) -> Stop | Skip:
        if row.kind == "destination":  # the watchlist names it: the operator must act
            log.error("destination-unreachable", extra={"fields": {
                "chat": row.chat, "topic": row.alert.topic, "error": failure.reason}})
            await self._fail_rows(ids, failure.reason)
            return Skip()
        dropped = await self.store.run(self.store.deactivate_chat, row.chat,
                                       reason=failure.reason, now=self.clock())
        log.warning("subscriber-deactivated", extra={"fields": {
            "chat": row.chat, "reason": failure.reason, "dropped": dropped}})
        return Stop(None, "gone")

    async def _plain(self, row: Delivery, ids: list[int], rendered: Rendered,
                     failure: Failure) -> Sent | Stop | Skip:
        log.error("rendering-bug", extra={"fields": {"alert": row.alert.id, "chat": row.chat,
                                                     "error": failure.reason}})
        try:
            message = await self._post(row.chat_id, row.thread, rendered, plain=True)
        except Exception as exc:  # noqa: BLE001
            again = classify(exc)
            if again.kind == "format":
                await self._fail_rows(ids, again.reason)
                return Skip()
            return await self._failed(row, ids, rendered, again)
        await self.store.run(self.store.delivery_sent, ids, now=self.clock(),
                             message_id=message.message_id, silent=rendered.silent)
        return Sent(message.message_id)

    async def _fail_rows(self, ids: list[int], reason: str) -> None:
        for delivery_id in ids:
            await self.store.run(self.store.delivery_failed, delivery_id, error=reason)

    def _backoff(self, attempts: int) -> float:
        delay = min(BACKOFF_BASE * 2 ** min(attempts, 20), BACKOFF_MAX)
        return delay * self.rng.uniform(0.8, 1.2)

    # ------------------------------------------------------------ story updates

    async def refresh_stories(self) -> int:
        """Edit sent messages whose story gained outlets ("also: …"), within EDIT_WINDOW of
        sending and at most once per EDIT_EVERY per message; the number edited."""
        now = self.clock()
        rows = await self.store.run(self.store.deliveries_to_refresh, now=now,
                                    window=EDIT_WINDOW, every=EDIT_EVERY)
        edited = 0
        for row in rows:
            if self.pacer.waiting(row.chat_id) > EDIT_EVERY.total_seconds():
                continue  # flood-waited for long: the next round will do
            outcome = await self._edit(row)
            if outcome == "stop":
                break
            edited += outcome == "edited"
        return edited

    async def _edit(self, row: Delivery) -> str:
        rendered = await self._render(row, self.topics(base_topic(row.alert.topic)),
                                      silent=False)
        markup = _markup(rendered)
        try:
            await self.bot.edit_message_text(
                chat_id=row.chat_id, message_id=row.message_id, text=rendered.text,
                parse_mode=ParseMode.HTML, reply_markup=markup,
                link_preview_options=LinkPreviewOptions(is_disabled=not rendered.preview))
        except Exception as exc:  # noqa: BLE001 (classified)
            failure = classify(exc)
            log.warning("edit-failed", extra={"fields": {"chat": row.chat, "alert": row.alert.id,
                                                         "kind": failure.kind,
                                                         "error": failure.reason}})
            if failure.kind == "flood":
                self.pacer.flood_wait(row.chat_id, failure.retry_after)
                return "stop" if failure.retry_after > EDIT_EVERY.total_seconds() else "later"
            if failure.kind in ("transient",):
                return "later"
            if failure.kind == "gone" and row.kind == "subscriber":
                await self.store.run(self.store.deactivate_chat, row.chat, reason=failure.reason,
                                     now=self.clock())
            # not modified, message gone, refused: nothing to retry until the story changes
            await self.store.run(self.store.delivery_edited, row.id, now=self.clock())
            return "settled"
        await self.store.run(self.store.delivery_edited, row.id, now=self.clock())
        log.info("edited", extra={"fields": {"chat": row.chat, "alert": row.alert.id,
                                             "story": row.alert.story}})
        return "edited"

    # ------------------------------------------------------------ digests

    async def send_digests(self) -> int:
        """Send every digest that is due now; the number of messages sent."""
        now = self.clock()
        sent = 0
        for sub in await self.store.run(self.store.chats_with_digest):
            cutoff = policy.digest_cutoff(sub, now)
            if cutoff is None:
                continue
            rows = [r for r in await self.store.run(self.store.digest_deliveries,
                                                     str(sub.chat_id))
                    if r.created_at <= cutoff]
            if rows:
                sent += await self._digest(sub, rows, now)
        return sent

    async def _digest(self, sub: Any, rows: list[Delivery], now: datetime) -> int:
        lang = sub.language
        t = self.translator(lang)
        entries = [DigestEntry(r.alert, self.topics(r.alert.topic)) for r in rows]
        pages = render_digest(entries, tz=sub.tz, lang=lang, t=t)
        silent = policy.in_quiet_hours(sub, now)
        ids = [r.id for r in rows]
        last: Sent | None = None
        for page in pages:
            page = Rendered(page.text, page.buttons, page.preview, silent)
            try:
                message = await self._post(sub.chat_id, 0, page)
            except Exception as exc:  # noqa: BLE001
                failure = classify(exc)
                if failure.kind == "flood":
                    self.pacer.flood_wait(sub.chat_id, failure.retry_after)
                elif failure.kind == "gone":
                    await self.store.run(self.store.deactivate_chat, str(sub.chat_id),
                                         reason=failure.reason, now=now)
                log.warning("digest-failed", extra={"fields": {
                    "chat": sub.chat_id, "kind": failure.kind, "error": failure.reason}})
                return 0  # the rows stay held; the next tick tries the digest again
            last = Sent(message.message_id)
        if last is not None:
            await self.store.run(self.store.delivery_sent, ids, now=self.clock(),
                                 message_id=last.message_id, silent=silent)
            await self.store.run(self.store.digest_sent, str(sub.chat_id), now=now)
            log.info("digest", extra={"fields": {"chat": sub.chat_id, "alerts": len(ids),
                                                 "messages": len(pages)}})
        return len(pages)
