"""Fan-out of one alert to N subscribers through the strict fake Bot API.

Target (../shared/PERFORMANCE.md): at least 90 % of Telegram's 30 msg/s ceiling, zero 429.
Beside it, in the same run, a baseline: the same N messages sent by a plain loop of
bot.send_message with no pacing (what a naive bot does), and how many Telegram refused.

    .venv/bin/python bench/bench_fanout.py [--subscribers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telegram import Bot  # noqa: E402
from telegram.error import RetryAfter  # noqa: E402

from bot.model import FeedSpec, Hit, Item, Match, Topic  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.telegram.client import build_application  # noqa: E402
from bot.telegram.delivery import DeliveryWorker  # noqa: E402
from bot.telegram.pacing import Pacer  # noqa: E402
from tests.fakebot import FakeBotAPI  # noqa: E402

CEILING = 30.0
TARGET = 0.9
NAIVE_CONCURRENCY = 20
FEED = "https://news.example/feed.xml"
TOPIC = Topic("pos2", "Power of Siberia 2", "x", None, priority="high")


def world(fake: FakeBotAPI, n: int, db: str) -> Store:
    """A store with n private subscribers of one topic and one pending alert."""
    now = datetime.now(timezone.utc)
    store = Store.open(db)
    store.sync_feeds([FeedSpec(FEED, "Bench feed")])
    for chat in range(10_000, 10_000 + n):
        fake.add_chat(chat)
        store.upsert_subscriber(chat, kind="private", now=now)
        store.subscribe(chat, "pos2", now=now)
    item = Item(FEED, "g1", "https://news.example/a", "https://news.example/a",
                "Gazprom and CNPC agree Power of Siberia 2 price formula", "Talks ended.")
    hit = Hit("Power of Siberia 2", "title", 25, 43, "Power of Siberia 2")
    store.claim(FEED, [item], {"g1": [Match("pos2", (hit,))]}, now=now, alert_cutoff=None,
                destinations=("telegram",))
    return store


async def veille(n: int, db: str) -> tuple[float, int, int]:
    """Our worker: seconds, messages delivered, 429s."""
    fake = FakeBotAPI(strict=True).start()
    store = world(fake, n, db)
    try:
        pacer = Pacer()
        app = build_application(fake.token, fake.base_url, rate_limiter=pacer)
        worker = DeliveryWorker(store=store, bot=app.bot, pacer=pacer, topics={"pos2": TOPIC}.get,
                                destinations=dict, clock=lambda: datetime.now(timezone.utc))
        await app.bot.initialize()
        started = time.perf_counter()
        await worker.drain_all()
        elapsed = time.perf_counter() - started
        await app.bot.shutdown()
        return elapsed, fake.sent_count(), fake.too_many_requests
    finally:
        store.close()
        fake.stop()


async def naive(n: int) -> tuple[float, int, int]:
    """send_message to every chat, 20 at a time, no pacing: seconds, delivered, 429s."""
    fake = FakeBotAPI(strict=True).start()
    try:
        for chat in range(10_000, 10_000 + n):
            fake.add_chat(chat)
        bot = Bot(fake.token, base_url=fake.base_url)
        await bot.initialize()
        gate = asyncio.Semaphore(NAIVE_CONCURRENCY)

        async def one(chat: int) -> None:
            async with gate:
                try:
                    await bot.send_message(chat, "Gazprom and CNPC agree Power of Siberia 2 price")
                except RetryAfter:
                    pass

        started = time.perf_counter()
        await asyncio.gather(*(one(chat) for chat in range(10_000, 10_000 + n)))
        elapsed = time.perf_counter() - started
        await bot.shutdown()
        return elapsed, fake.sent_count(), fake.too_many_requests
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    args = parser.parse_args()
    n = args.subscribers
    b_time, b_sent, b_429 = asyncio.run(naive(n))
    with tempfile.TemporaryDirectory() as tmp:
        v_time, v_sent, v_429 = asyncio.run(veille(n, f"sqlite:///{tmp}/bench.db"))
    rate = v_sent / v_time
    print(f"baseline, unpaced sends ({NAIVE_CONCURRENCY} at a time): {b_sent}/{n} delivered in {b_time:.1f} s, "
          f"{b_429} answered 429")
    print(f"veille, paced per-chat queues: {v_sent}/{n} delivered in {v_time:.1f} s = "
          f"{rate:.1f} msg/s ({rate / CEILING:.0%} of the {CEILING:.0f} msg/s ceiling), "
          f"{v_429} answered 429")
    met = rate >= TARGET * CEILING and v_429 == 0 and v_sent == n
    print(f"target >= {TARGET:.0%} of the ceiling, zero 429, all delivered: "
          f"{'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
