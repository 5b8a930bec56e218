"""Telegram's limits, kept before Telegram has to answer 429.

The Bot API FAQ: about 30 messages per second overall, about one per second per chat
(short bursts tolerated), at most 20 per minute per group or channel. The Pacer is PTB's
rate limiter for the whole Application, so alerts, digests, edits and command replies all
share one budget. We stay a little under each limit (network jitter compresses gaps), use
aiolimiter's leaky buckets for the overall and per-group rates (a well-kept asyncio
limiter), and space each chat's messages ourselves. A 429 for a chat pushes that chat's
next slot back by the wait Telegram asked for; a flood wait that hits several chats at
once pauses everything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Coroutine

from aiolimiter import AsyncLimiter
from telegram.ext import BaseRateLimiter

OVERALL_PER_SECOND = 28  # Telegram: ~30/s
OVERALL_BURST = 3  # sends let through back to back: small, so that requests delayed after
# the limiter (a busy event loop, a slow connection) cannot bunch up into more than
# Telegram's one-second budget when they finally arrive
GROUP_PER_MINUTE = 19  # Telegram: 20/min per group or channel
CHAT_INTERVAL = 1.1  # seconds between two messages to one chat (Telegram: ~1/s)
GLOBAL_FLOOD_CHATS = 3  # this many chats flood-waited within a second: everyone waits
# The calls that post or change a message count against the limits; the rest do not.
PACED = frozenset({"sendmessage", "sendphoto", "senddocument", "sendmediagroup",
                   "editmessagetext", "editmessagecaption", "editmessagereplymarkup",
                   "copymessage", "forwardmessage"})


def is_group(chat: int | str) -> bool:
    """Groups, supergroups and channels have negative ids, or are named '@channel'."""
    if isinstance(chat, str):
        return chat.startswith("@") or chat.lstrip().startswith("-")
    return chat < 0


class Pacer(BaseRateLimiter[None]):
    """Spaces sends per chat, per group and overall; knows who is flood-waited."""

    def __init__(self, *, overall: float = OVERALL_PER_SECOND,
                 group_per_minute: float = GROUP_PER_MINUTE,
                 chat_interval: float = CHAT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = overall
        self._overall = AsyncLimiter(OVERALL_BURST, OVERALL_BURST / overall)
        self.instances = 1
        self._group_rate = group_per_minute
        self._groups: dict[str, AsyncLimiter] = {}
        self._interval = chat_interval
        self._clock = clock
        self._next: dict[str, float] = {}  # chat -> earliest time of its next message
        self._locks: dict[str, asyncio.Lock] = {}
        self._paused_until = 0.0
        self._floods: list[tuple[float, str]] = []  # recent per-chat flood waits

    async def initialize(self) -> None:
        """Nothing to set up (PTB calls this)."""

    async def shutdown(self) -> None:
        """Nothing to release (PTB calls this)."""

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, Any]],
                              args: Any, kwargs: dict[str, Any], endpoint: str,
                              data: dict[str, Any], rate_limit_args: None) -> Any:
        """Wait for the chat's, the group's and the overall slot, then make the call."""
        chat = data.get("chat_id")
        if endpoint.lower() not in PACED or chat is None:
            return await callback(*args, **kwargs)
        await self.acquire(chat)
        return await callback(*args, **kwargs)

    async def acquire(self, chat: int | str) -> None:
        """Return when a message to this chat may go (the slot is then used)."""
        key = str(chat)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            await self._sleep_until(max(self._next.get(key, 0.0), self._paused_until))
            if is_group(chat):
                group = self._groups.setdefault(key, AsyncLimiter(self._group_rate, 60))
                await group.acquire()
            await self._overall.acquire()
            await self._sleep_until(self._paused_until)
            self._next[key] = self._clock() + self._interval

    def flood_wait(self, chat: int | str, seconds: float) -> None:
        """Telegram said 429 for this chat: nothing goes to it for `seconds`."""
        now = self._clock()
        key = str(chat)
        self._next[key] = max(self._next.get(key, 0.0), now + seconds)
        self._floods = [(t, c) for t, c in self._floods if now - t < 1.0] + [(now, key)]
        if len({c for _, c in self._floods}) >= GLOBAL_FLOOD_CHATS:
            self._paused_until = max(self._paused_until, now + seconds)

    def share(self, instances: int) -> None:
        """Several instances send for one bot: each keeps 1/instances of the overall rate
        (queue.py counts the live ones), so together they stay under Telegram's limit."""
        instances = max(1, instances)
        if instances != self.instances:
            self.instances = instances
            rate = self._rate / instances
            self._overall = AsyncLimiter(min(OVERALL_BURST, rate), min(OVERALL_BURST, rate) / rate)

    def hold(self, chat: int | str, seconds: float) -> None:
        """Nothing goes to this chat for `seconds` (another instance sent to it lately)."""
        key = str(chat)
        self._next[key] = max(self._next.get(key, 0.0), self._clock() + max(0.0, seconds))

    def waiting(self, chat: int | str) -> float:
        """Seconds until this chat may get a message (0 when it may now)."""
        return max(0.0, self._next.get(str(chat), 0.0) - self._clock(),
                   self._paused_until - self._clock())

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
