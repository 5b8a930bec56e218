"""`veille run` with a Telegram token, as a real process against the fake Bot API: every
alert reaches every subscriber once, SIGTERM drains, and SIGKILL during sends repeats at
most the message in flight per chat and loses nothing."""

from __future__ import annotations

import random
import signal
from datetime import timedelta
from pathlib import Path

from bot.store import Store
from tests.fakebot import FakeBotAPI, fake_bot  # noqa: F401  (fixture)
from tests.pipeline_helpers import NOW, rss, write_watchlist
from tests.test_run import Veille, env_for, wait_until

CHATS = (5001, 5002, 5003)
# Ten different happenings around the pipeline (so that none joins another's story).
HEADLINES = [
    "Gazprom and CNPC agree Power of Siberia 2 price formula",
    "Mongolia approves route survey for Power of Siberia 2",
    "Chinese state banks weigh loan for Power of Siberia 2 construction",
    "Power of Siberia 2 talks stall over take-or-pay volumes",
    "Kremlin says Power of Siberia 2 contract signing delayed to spring",
    "Ulaanbaatar demands transit fees for Power of Siberia 2",
    "Analysts doubt Power of Siberia 2 can be financed without Western equipment",
    "Power of Siberia 2 welding crews arrive in Buryatia",
    "Beijing court rules on Power of Siberia 2 tender dispute",
    "Novak: Power of Siberia 2 to carry 50 bcm a year from Yamal fields",
]


def story(i: int) -> dict:
    return {"guid": f"s{i}", "title": HEADLINES[i], "link": f"https://news.example/pos2/{i}",
            "desc": f"Report number {i} on the proposed pipeline."}


def world(tmp_path: Path, feed_server, fake: FakeBotAPI, stories: int) -> dict[str, str]:
    """Feeds with `stories` matching items, three subscribers of the topic, and the env."""
    feeds = []
    for i in range(stories):
        feed_server.set_feed(f"/t{i}.xml", rss([story(i)]))
        feeds.append((f"Feed {i}", feed_server.url(f"/t{i}.xml")))
    write_watchlist(tmp_path / "wl", feeds, interval=3600)
    with Store.open(f"sqlite:///{tmp_path}/veille.db") as store:
        for chat in CHATS:
            fake.add_chat(chat)
            store.upsert_subscriber(chat, kind="private", now=NOW - timedelta(days=1))
            store.subscribe(chat, "power-of-siberia-2", now=NOW - timedelta(days=1))
    return env_for(tmp_path, VEILLE_TELEGRAM_TOKEN=fake.token,
                   VEILLE_TELEGRAM_API_URL=fake.base_url, VEILLE_LEASE_SECONDS="2")


def received(fake: FakeBotAPI, chat: int) -> list[str]:
    """The story links each message to the chat carried, in order."""
    out = []
    for message in fake.messages(chat):
        links = [e.get("url") for e in message.entities if e.get("type") == "text_link"]
        out += [link for link in links if link and "/pos2/" in link]
    return out


def all_delivered(fake: FakeBotAPI, stories: int) -> bool:
    want = {story(i)["link"] for i in range(stories)}
    return all(set(received(fake, chat)) >= want for chat in CHATS)


def test_run_delivers_each_alert_to_each_subscriber_once_and_sigterm_exits_0(
        feed_server, fake_bot, tmp_path) -> None:
    env = world(tmp_path, feed_server, fake_bot, 4)
    run = Veille(tmp_path, "run", env=env)
    try:
        wait_until(lambda: all_delivered(fake_bot, 4), "every alert in every chat")
    finally:
        code = run.stop(signal.SIGTERM)
    assert code == 0, run.err
    for chat in CHATS:
        assert sorted(received(fake_bot, chat)) == sorted(story(i)["link"] for i in range(4))
    assert run.out == ""  # with a token the console is off
    assert fake_bot.token not in run.err and fake_bot.token.split(":")[1] not in run.err


def test_sigkill_during_sends_loses_nothing_and_repeats_at_most_one_per_chat_per_kill(
        feed_server, fake_bot, tmp_path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    stories = 10
    env = world(tmp_path, feed_server, fake_bot, stories)
    # Telegram is slow: every send takes a while and is carried out even if the client
    # died meanwhile (the message the crash cannot know was delivered)
    fake_bot.fail("sendMessage", error="timeout", times=None, delay=0.3, deliver=True)
    kills = 0
    total = stories * len(CHATS)
    for target in sorted(rng.sample(range(3, total - 3), 3)):
        run = Veille(tmp_path, "run", env=env)
        try:
            wait_until(lambda: fake_bot.sent_count() >= target or all_delivered(
                fake_bot, stories), f"{target} messages (seed {seed})")
        finally:
            run.stop(signal.SIGKILL)
        kills += 1
    run = Veille(tmp_path, "run", env=env)
    try:
        wait_until(lambda: all_delivered(fake_bot, stories), f"every alert (seed {seed})")
    finally:
        assert run.stop(signal.SIGTERM) == 0, run.err
    want = sorted(story(i)["link"] for i in range(stories))
    for chat in CHATS:
        got = received(fake_bot, chat)
        assert sorted(set(got)) == want, f"seed {seed}: chat {chat} lost alerts"
        assert len(got) - len(set(got)) <= kills, f"seed {seed}: chat {chat}: {got}"
    with Store.open(env["VEILLE_DATABASE_URL"]) as store:
        assert store.delivery_counts()["sent"] == total
        assert store.delivery_counts()["pending"] == 0
