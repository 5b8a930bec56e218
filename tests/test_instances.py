"""Several `veille run` instances on the machine's PostgreSQL, as real processes, against
feeds served locally and the fake Bot API: every alert reaches each subscriber once, each
feed is fetched by one instance per cycle, one instance consumes Telegram updates, and when
one instance is SIGKILLed the other takes over its polls, its deliveries and the updates."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bot.store import Store
from tests.conftest import PG_URL
from tests.fakebot import FakeBotAPI, fake_bot  # noqa: F401  (fixture)
from tests.pipeline_helpers import NOW, rss, write_watchlist
from tests.test_run import Veille, env_for, wait_until
from tests.test_web import free_port, get, pg_db  # noqa: F401  (pg_db is a fixture)

CHATS = (7001, 7002, 7003)
# Distinct happenings around the pipeline, in several languages (none joins another's story).
HEADLINES = [
    "Gazprom and CNPC settle Power of Siberia 2 price formula after years of haggling",
    "Mongolia's parliament approves route survey for Power of Siberia 2",
    "Chinese policy banks weigh a syndicated loan for Power of Siberia 2 construction",
    "Power of Siberia 2 talks stall over take-or-pay volumes, sources say",
    "Le Kremlin repousse la signature du contrat Force de Sibérie 2 au printemps",
    "Oulan-Bator réclame des droits de transit pour le gazoduc Force de Sibérie 2",
    "Сила Сибири 2: строители начали сварку первого участка в Бурятии",
    "Новак: по «Силе Сибири 2» пойдут 50 млрд кубометров в год с Ямала",
    "Pekinger Gericht entscheidet über Ausschreibungsstreit zu Power of Siberia 2",
    "Power of Siberia 2: insurers in Hong Kong line up cover for compressor stations",
    "Analysts doubt Power of Siberia 2 can be financed without Western turbines",
    "Kazakh route floated as rival to Power of Siberia 2 through Mongolia",
]


def story(i: int) -> dict:
    return {"guid": f"m{i}", "title": HEADLINES[i], "link": f"https://news.example/pos2/m{i}",
            "desc": f"Dispatch {i} on the proposed pipeline."}


def db_url(name: str) -> str:
    return sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def world(tmp_path: Path, feed_server, fake: FakeBotAPI, name: str, *, held: bool = False,
          **extra: str) -> dict[str, str]:
    """One feed per story, three subscribers of the topic, and the instances' env."""
    feeds = []
    for i in range(len(HEADLINES)):
        feed_server.set_feed(f"/m{i}.xml", rss([story(i)]), held=held)
        feeds.append((f"Feed {i}", feed_server.url(f"/m{i}.xml")))
    write_watchlist(tmp_path / "wl", feeds, interval=3600)
    url = db_url(name)
    with Store.open(url) as store:
        for chat in CHATS:
            fake.add_chat(chat)
            store.upsert_subscriber(chat, kind="private", now=NOW - timedelta(days=1))
            store.subscribe(chat, "power-of-siberia-2", now=NOW - timedelta(days=1))
    return env_for(tmp_path, VEILLE_DATABASE_URL=url, VEILLE_TELEGRAM_TOKEN=fake.token,
                   VEILLE_TELEGRAM_API_URL=fake.base_url, VEILLE_LEASE_SECONDS="6", **extra)


def links(fake: FakeBotAPI, chat: int) -> list[str]:
    """The story links of the messages the chat received, in order."""
    out = []
    for message in fake.messages(chat):
        found = [e.get("url") for e in message.entities if e.get("type") == "text_link"]
        out += [link for link in found if link and "/pos2/m" in link]
    return out


def every_story_once_at_least(fake: FakeBotAPI, chat: int) -> list[str]:
    """The chat's story links, after asserting that none is missing."""
    got = links(fake, chat)
    assert sorted(set(got)) == sorted(story(i)["link"] for i in range(len(HEADLINES))), chat
    return got


def everything_delivered(fake: FakeBotAPI) -> bool:
    want = {story(i)["link"] for i in range(len(HEADLINES))}
    return all(set(links(fake, chat)) >= want for chat in CHATS)


def fetches(feed_server) -> dict[int, int]:
    return {i: feed_server.hits(f"/m{i}.xml") for i in range(len(HEADLINES))}


def polled_by(run: Veille) -> set[str]:
    """The feeds this instance polled, from its JSON log lines."""
    return set(re.findall(r'"feed": "(Feed \d+)"', run.err)) & {
        f"Feed {i}" for i in range(len(HEADLINES))}


def workers_json(env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "bot", "workers", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def updates_holder(name: str) -> str | None:
    """application_name of the connection holding the updates lock."""
    from bot.queue import UPDATES_LOCK

    engine = sa.create_engine(db_url(name))
    with engine.connect() as conn:
        found = conn.execute(sa.text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = :hi AND l.objid = :lo"),
            {"hi": UPDATES_LOCK >> 32, "lo": UPDATES_LOCK & 0xFFFFFFFF}).scalar()
    engine.dispose()
    return found


def test_two_instances_deliver_every_alert_once_and_fetch_each_feed_once(
        feed_server, fake_bot, pg_db, tmp_path) -> None:
    env = world(tmp_path, feed_server, fake_bot, pg_db)
    port = free_port()
    runs = [Veille(tmp_path, "run", env={**env, "VEILLE_HTTP_PORT": str(port)}),
            Veille(tmp_path, "run", env=env)]
    try:
        wait_until(lambda: everything_delivered(fake_bot), "every alert in every chat")
        wait_until(lambda: get(port, "/readyz")[0] == 200, "the first instance ready")
        status, page = get(port, "/")
        wait_until(lambda: updates_holder(pg_db) is not None, "an updates consumer")
        fake_bot.user_sends(CHATS[0], "/help")
        wait_until(lambda: len(fake_bot.messages(CHATS[0])) > len(HEADLINES),
                   "the reply to /help")
        view = workers_json(env)
        # one consumer while both run (a takeover at shutdown may end the old poll with 409)
        conflicts = [c for c in fake_bot.calls_to("getUpdates") if c.status == 409]
    finally:
        codes = [run.stop(signal.SIGTERM) for run in runs]
    assert codes == [0, 0], runs[0].err[-2000:] + runs[1].err[-2000:]
    for chat in CHATS:
        got = links(fake_bot, chat)
        assert sorted(got) == sorted(story(i)["link"] for i in range(len(HEADLINES))), chat
    assert set(fetches(feed_server).values()) == {1}  # one fetch per feed in the cycle
    assert len(fake_bot.messages(CHATS[0])) == len(HEADLINES) + 1  # one consumer: one reply
    assert fake_bot.too_many_requests == 0
    assert conflicts == []
    # `veille workers` saw both instances alive, by name, and the one consuming updates
    names = {f"{i['name'].split(':')[0]}:{run.proc.pid}" for i in view["instances"]
             for run in runs if i["name"].endswith(f":{run.proc.pid}")}
    assert len(names) == 2 and all(i["alive"] for i in view["instances"]), view
    assert any(view["updates_consumer"].startswith(f"veille {n}") for n in names), view
    # the status page lists both instances, alive, and which one consumes updates
    assert status == 200 and '<table id="instances">' in page
    for run in runs:
        assert re.search(rf":{run.proc.pid}( <span[^>]*>· Telegram updates</span>)?</td>\s*"
                         r'<td><span class="pill ok">alive', page), page
    assert page.count("· Telegram updates") == 1
    shares = [polled_by(run) for run in runs]
    assert not shares[0] & shares[1]  # no feed polled by both
    assert shares[0] | shares[1] == {f"Feed {i}" for i in range(len(HEADLINES))}
    for run in runs:
        assert fake_bot.token.split(":")[1] not in run.err


def test_sigkill_one_instance_the_other_takes_over_polls_deliveries_and_updates(
        feed_server, fake_bot, pg_db, tmp_path) -> None:
    # every feed holds its answer at first: both instances are mid-poll when one is killed
    # (all on one host: the per-host cap must let every poll be in flight at once)
    env = world(tmp_path, feed_server, fake_bot, pg_db, held=True,
                VEILLE_PER_HOST_CONCURRENCY=str(len(HEADLINES)))
    runs = [Veille(tmp_path, "run", env=env), Veille(tmp_path, "run", env=env)]
    try:
        wait_until(lambda: sum(fetches(feed_server).values()) >= len(HEADLINES),
                   "every feed being fetched")
        wait_until(lambda: updates_holder(pg_db) is not None, "an updates consumer")
        holder = updates_holder(pg_db)
        victim = next(r for r in runs if f":{r.proc.pid} " in holder)
        survivor = next(r for r in runs if r is not victim)
        assert fake_bot.sent_count() == 0  # no feed has answered: nothing was sent yet
        victim.stop(signal.SIGKILL)
        for i in range(len(HEADLINES)):  # the feeds answer at once from now on
            feed_server.set_feed(f"/m{i}.xml", rss([story(i)]))
        feed_server.release()  # and so do the survivor's polls in flight
        wait_until(lambda: everything_delivered(fake_bot), "every alert after the kill")
        wait_until(lambda: f":{survivor.proc.pid} " in (updates_holder(pg_db) or ""),
                   "the survivor consuming updates")
        fake_bot.user_sends(CHATS[1], "/help")
        wait_until(lambda: len(fake_bot.messages(CHATS[1])) > len(HEADLINES),
                   "the survivor's reply to /help")
    finally:
        for run in runs:
            run.stop(signal.SIGTERM)
    for chat in CHATS:
        got = every_story_once_at_least(fake_bot, chat)
        assert len(got) == len(set(got)), f"chat {chat} got a repeat: {got}"
    # the killed instance's feeds were fetched again by the survivor, no feed a third time
    assert max(fetches(feed_server).values()) <= 2
    assert "job-retried" in survivor.err


def test_sigkill_an_instance_while_it_sends_the_other_finishes_its_chats(
        feed_server, fake_bot, pg_db, tmp_path) -> None:
    env = world(tmp_path, feed_server, fake_bot, pg_db)
    # Telegram is slow: each send takes a while and is carried out even if the sender died
    fake_bot.fail("sendMessage", error="timeout", times=None, delay=0.3, deliver=True)
    runs = [Veille(tmp_path, "run", env=env), Veille(tmp_path, "run", env=env)]
    sending: dict = {}

    def someone_sending() -> bool:
        view = workers_json(env)
        for i in view["instances"]:
            if any(j["task"] == "veille.deliver" for j in i["jobs"]):
                sending.update(i)
                return True
        return False

    try:
        wait_until(lambda: fake_bot.sent_count() >= 4 and someone_sending(),
                   "an instance sending to a chat")
        victim = next(r for r in runs if sending["name"].endswith(f":{r.proc.pid}"))
        survivor = next(r for r in runs if r is not victim)
        chats = {j["subject"] for j in sending["jobs"] if j["task"] == "veille.deliver"}
        victim.stop(signal.SIGKILL)
        wait_until(lambda: everything_delivered(fake_bot), "every alert after the kill")
    finally:
        for run in runs:
            run.stop(signal.SIGTERM)
    for chat in CHATS:
        got = every_story_once_at_least(fake_bot, chat)
        assert len(got) - len(set(got)) <= (1 if str(chat) in chats else 0), (chat, got)
    assert '"event": "sent"' in survivor.err
