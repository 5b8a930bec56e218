"""`veille send-test` and `veille alerts` with per-chat delivery state, through the real
console script against the fake Bot API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

from bot.model import FeedSpec, Hit, Item, Match
from bot.store import Store
from tests.fakebot import fake_bot  # noqa: F401  (fixture)

FEED = "https://news.example/feed.xml"


def veille(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")} | env
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True,
                          text=True, env=full, timeout=60)


def test_send_test_posts_a_sample_alert_and_names_the_chat_when_telegram_refuses(
        fake_bot, tmp_path) -> None:
    fake_bot.add_chat(4242)
    env = {"VEILLE_TELEGRAM_TOKEN": fake_bot.token, "VEILLE_TELEGRAM_API_URL": fake_bot.base_url,
           "VEILLE_DATABASE_URL": f"sqlite:///{tmp_path}/v.db"}
    done = veille("send-test", "4242", env=env)
    assert done.returncode == 0, done.stderr
    assert "message 1" in done.stdout
    (message,) = fake_bot.messages(4242)
    assert "Power of Siberia 2" in message.text and message.parse_mode == "HTML"
    refused = veille("send-test", "777", env=env)
    assert refused.returncode == 2
    assert "chat 777" in refused.stderr and "chat not found" in refused.stderr.lower()
    assert "Traceback" not in refused.stderr and fake_bot.token not in refused.stderr
    bad = veille("send-test", "not a chat", env=env)
    assert bad.returncode == 2 and "not a Telegram chat" in bad.stderr


def test_alerts_shows_each_chat_and_its_delivery_state(tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/v.db"
    now = datetime.now(timezone.utc)
    with Store.open(db) as store:
        store.sync_feeds([FeedSpec(FEED, "Feed")])
        store.upsert_subscriber(11, kind="private", now=now)
        store.subscribe(11, "pos2", now=now)
        item = Item(FEED, "g", "https://n.example/a", "https://n.example/a",
                    "Power of Siberia 2 loan talks stall", "")
        store.claim(FEED, [item], {"g": [Match("pos2", (Hit("x", "title", 0, 5, "Power"),))]},
                    now=now, alert_cutoff=None, destinations=("telegram",))
        store.fan_out(now=now, destinations={"pos2": (("@veille_pos2", 0),)})
        rows = store.lease_deliveries(now=now, until=now)
        store.delivery_sent([rows[0].id], now=now, message_id=77)
        store.delivery_failed(rows[1].id, error="Forbidden: bot was kicked from the channel")
    env = {"VEILLE_DATABASE_URL": db}
    done = veille("alerts", "--json", env=env)
    assert done.returncode == 0, done.stderr
    (alert,) = [json.loads(line) for line in done.stdout.splitlines()]
    states = {d["chat"]: (d["status"], d["message_id"], d["kind"]) for d in alert["deliveries"]}
    assert states == {"11": ("sent", 77, "subscriber"), "@veille_pos2": ("failed", None,
                                                                          "destination")}
    text = veille("alerts", env=env).stdout
    assert "chat 11: sent (message 77" in text
    assert "chat @veille_pos2 (destination): failed" in text and "kicked" in text
