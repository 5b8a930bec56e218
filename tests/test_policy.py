"""Digests, quiet hours and pauses: the pure policy as tables, then the worker's digests
against the fake Bot API with an injected clock (no sleeps)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bot.model import Subscriber
from bot.telegram import policy
from bot.telegram.policy import HOLD, SEND, WAIT, Decision, decide, digest_cutoff
from tests.fakebot import fake_bot  # noqa: F401  (fixture)
from tests.test_delivery import Clock, claim, make_worker, statuses, store, subscribe  # noqa: F401

UTC = timezone.utc


def at(hhmm: str, day: int = 30) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 11, 30, h, m, tzinfo=UTC) + timedelta(days=day - 30)


PARIS_NIGHT = Subscriber(1, tz="Europe/Paris", quiet_start="22:00", quiet_end="07:00")


@pytest.mark.parametrize("sub, priority, now, expected", [
    (None, "normal", at("12:00"), Decision(SEND)),  # a destination chat
    (Subscriber(1), "normal", at("12:00"), Decision(SEND)),
    # Paris is UTC+1 in November: 21:30 UTC is 22:30 there, inside 22:00-07:00
    (PARIS_NIGHT, "normal", at("21:30"), Decision(HOLD)),
    (PARIS_NIGHT, "high", at("21:30"), Decision(SEND, silent=True)),
    (PARIS_NIGHT, "normal", at("20:59"), Decision(SEND)),  # 21:59 local
    (PARIS_NIGHT, "normal", at("05:59"), Decision(HOLD)),  # 06:59 local
    (PARIS_NIGHT, "normal", at("06:00"), Decision(SEND)),  # 07:00 local: quiet is over
    (Subscriber(1, quiet_start="09:00", quiet_end="17:00"), "low", at("12:00"), Decision(HOLD)),
    (Subscriber(1, mode="digest"), "high", at("12:00"), Decision(HOLD)),
    (Subscriber(1, paused_until=at("13:00")), "high", at("12:00"),
     Decision(WAIT, until=at("13:00"))),
    (Subscriber(1, paused_until=at("11:00")), "normal", at("12:00"), Decision(SEND)),
    (Subscriber(1, tz="No/Such_Zone", quiet_start="11:00", quiet_end="13:00"), "normal",
     at("12:00"), Decision(HOLD)),  # an unknown zone counts as UTC
])
def test_decide(sub, priority, now, expected) -> None:
    assert decide(sub, priority, now) == expected


DAILY = Subscriber(1, mode="digest", digest_every="daily", digest_at="08:00",
                   tz="Asia/Shanghai")  # UTC+8: 08:00 there is 00:00 UTC


@pytest.mark.parametrize("sub, now, expected", [
    (DAILY, at("00:05"), at("00:00")),  # the first slot since the last digest
    (replace(DAILY, last_digest_at=at("00:00")), at("12:00"), None),  # already sent today
    (replace(DAILY, last_digest_at=at("00:00")), at("00:00", 31) + timedelta(minutes=1),
     at("00:00", 31)),
    (replace(DAILY, last_digest_at=at("00:00", 29)), at("23:59"), at("00:00")),
    (Subscriber(1, mode="digest", digest_every="hourly", last_digest_at=at("10:00")),
     at("10:59"), None),
    (Subscriber(1, mode="digest", digest_every="hourly", last_digest_at=at("10:00")),
     at("11:00"), at("11:00")),
    (replace(PARIS_NIGHT, mode="instant"), at("21:30"), None),  # quiet: wait for its end
    (replace(PARIS_NIGHT, mode="instant"), at("06:01"), at("06:01")),  # ended: flush now
    (replace(DAILY, paused_until=at("23:00")), at("12:00"), None),
])
def test_digest_cutoff(sub, now, expected) -> None:
    assert digest_cutoff(sub, now) == expected


def test_bad_times_of_day_are_refused() -> None:
    for bad in ("7", "07:5", "25:00x", "ab:cd", ""):
        with pytest.raises(ValueError):
            policy.parse_hhmm(bad)


# ---------------------------------------------------------------- with the worker


async def test_quiet_hours_hold_normal_alerts_and_flush_one_digest_at_their_end(
        store, fake_bot):
    clock = Clock(at("21:30"))  # 22:30 in Paris
    subscribe(store, fake_bot, 1201, ("pos2", "sanctions"), clock)
    store.update_subscriber(1201, now=clock(), tz="Europe/Paris", quiet_start="22:00",
                            quiet_end="07:00")
    claim(store, 4, clock)  # two high-priority (pos2), two normal (sanctions)
    worker, app = make_worker(store, fake_bot, clock)
    await app.bot.initialize()
    await worker.drain_all()
    high = fake_bot.messages(1201)
    assert len(high) == 2 and all(m.disable_notification for m in high)
    assert statuses(store) == {"sent": 2, "digest": 2}
    assert await worker.send_digests() == 0  # still quiet: nothing yet
    clock.now = at("06:00", 31)  # 07:00 in Paris
    assert await worker.send_digests() == 1
    await app.bot.shutdown()
    digest = fake_bot.messages(1201)[-1]
    assert "Treasury lists Hong Kong traders" in digest.text
    assert "Минфин США" in digest.text
    assert not digest.disable_notification
    assert statuses(store) == {"sent": 4}


async def test_digest_mode_sends_one_message_at_the_local_time_and_nothing_when_empty(
        store, fake_bot):
    clock = Clock(at("03:00"))
    subscribe(store, fake_bot, 1301, ("pos2", "sanctions"), clock)
    store.update_subscriber(1301, now=clock(), mode="digest", digest_every="daily",
                            digest_at="08:00", tz="Europe/Berlin")  # 07:00 UTC
    claim(store, 4, clock)
    worker, app = make_worker(store, fake_bot, clock)
    await app.bot.initialize()
    await worker.drain_all()
    assert fake_bot.messages(1301) == [] and statuses(store) == {"digest": 4}
    clock.now = at("06:59")
    assert await worker.send_digests() == 0
    clock.now = at("07:00")
    assert await worker.send_digests() == 1
    (digest,) = fake_bot.messages(1301)
    assert digest.text.count("Power of Siberia 2") + digest.text.count("Force de Sibérie") >= 2
    # an alert arriving after the digest waits for tomorrow's; an empty period sends nothing
    clock.now = at("09:00")
    claim(store, 1, clock)
    await worker.drain_all()
    clock.now = at("18:00")
    assert await worker.send_digests() == 0
    clock.now = at("07:00", 31)
    assert await worker.send_digests() == 1
    clock.now = at("07:00", 32 - 1) + timedelta(days=1)
    assert await worker.send_digests() == 0
    await app.bot.shutdown()
    assert len(fake_bot.messages(1301)) == 2
    assert statuses(store) == {"sent": 5}


async def test_a_paused_chat_waits_and_gets_nothing_created_during_the_pause(store, fake_bot):
    clock = Clock(at("10:00"))
    subscribe(store, fake_bot, 1401, ("pos2",), clock)
    claim(store, 1, clock, topics=("pos2",))  # fanned out before the pause
    worker, app = make_worker(store, fake_bot, clock)
    await app.bot.initialize()
    await worker.drain()  # fan out only... and its rows go
    await worker.wait_idle()
    store.update_subscriber(1401, now=clock(), paused_until=at("12:00"))
    claim(store, 1, clock, topics=("pos2",))  # created while paused: never fanned out to it
    await worker.drain_all(max_wait=0)
    assert len(fake_bot.messages(1401)) == 1
    assert statuses(store) == {"sent": 1}
    await app.bot.shutdown()
