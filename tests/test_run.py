"""`veille once` and `veille run` as real processes: signals, SIGKILL mid-cycle, reloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.store import Store
from tests.feedserver import FeedServer
from tests.pipeline_helpers import NOW, rss, write_watchlist

WAIT = 60.0  # upper bound for a condition to come true; never a timing assertion


def story(i: int) -> dict:
    return {"guid": f"g{i}", "title": f"Power of Siberia 2: financing round {i} announced",
            "link": f"https://news.example/pos2/{i}", "desc": "Lenders weigh the pipeline."}


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
    env.update(VEILLE_WATCHLISTS=str(tmp_path / "wl"), VEILLE_ALLOW_PRIVATE_URLS="1",
               VEILLE_DATABASE_URL=f"sqlite:///{tmp_path}/veille.db", VEILLE_NEWS_SEARCH="0",
               VEILLE_STARTUP_SPREAD="0", VEILLE_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class Veille:
    """`veille ARGS` as a child process, its output going to files (children of a killed
    process may hold pipes open; files can be read whatever happens)."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str]) -> None:
        n = len(list(tmp_path.glob("out-*.txt")))
        self.out_path, self.err_path = tmp_path / f"out-{n}.txt", tmp_path / f"err-{n}.txt"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", *args], env=env,
                                         stdout=out, stderr=err, text=True)

    @property
    def out(self) -> str:
        return self.out_path.read_text(encoding="utf-8")

    @property
    def err(self) -> str:
        return self.err_path.read_text(encoding="utf-8")

    def stop(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=WAIT)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alert_rows(tmp_path: Path):
    with Store.open(f"sqlite:///{tmp_path}/veille.db") as store:
        return store.recent_alerts(since=NOW - timedelta(days=2))


def serve(server: FeedServer, tmp_path: Path, n: int, slow: set[int]) -> None:
    feeds = []
    for i in range(n):
        server.set_feed(f"/f{i}.xml", rss([story(i)]), delay=120.0 if i in slow else 0.0)
        feeds.append((f"Feed {i}", server.url(f"/f{i}.xml")))
    write_watchlist(tmp_path / "wl", feeds, interval=60)


def test_sigkill_mid_cycle_loses_nothing_and_repeats_nothing(feed_server, tmp_path) -> None:
    slow = set(range(10, 20))
    serve(feed_server, tmp_path, 20, slow)
    env = env_for(tmp_path, VEILLE_READ_TIMEOUT="300")
    run = Veille(tmp_path, "run", env=env)
    try:  # the fast feeds are polled and delivered; the slow ones are still in flight
        wait_until(lambda: sum(r.status == "sent" for r in _rows(tmp_path)) >= 10,
                   "the fast feeds' alerts to be delivered")
        assert run.proc.poll() is None
    finally:
        code = run.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    first_out = run.out
    for i in slow:  # the sources recover
        feed_server.set_feed(f"/f{i}.xml", rss([story(i)]))
    second = subprocess.run([sys.executable, "-m", "bot", "once"], env=env,
                            capture_output=True, text=True, timeout=WAIT)
    assert second.returncode == 0, second.stderr
    rows = alert_rows(tmp_path)
    assert sorted(r.link for r in rows) == sorted(story(i)["link"] for i in range(20))
    assert {r.status for r in rows} == {"sent"}
    printed = first_out + second.stdout
    counts = [printed.count(story(i)["link"] + "\n") for i in range(20)]
    assert min(counts) == 1  # nothing lost
    assert sum(counts) <= 21  # at most the one alert being printed at the kill is repeated


def _rows(tmp_path: Path):
    try:
        return alert_rows(tmp_path)
    except Exception:  # the database may not exist yet
        return []


def test_sigterm_finishes_in_flight_work_and_exits_0(feed_server, tmp_path) -> None:
    serve(feed_server, tmp_path, 3, set())
    run = Veille(tmp_path, "run", env=env_for(tmp_path))
    wait_until(lambda: sum(r.status == "sent" for r in _rows(tmp_path)) == 3, "3 alerts sent")
    assert run.stop(signal.SIGTERM) == 0, run.err
    assert [run.out.count(story(i)["link"]) for i in range(3)] == [1, 1, 1]
    assert '"event": "stopped"' in run.err


def test_run_reloads_watchlists_and_keeps_the_last_good_one(feed_server, tmp_path) -> None:
    serve(feed_server, tmp_path, 1, set())
    run = Veille(tmp_path, "run", env=env_for(tmp_path))
    try:
        wait_until(lambda: len(_rows(tmp_path)) == 1, "the first alert")
        topics = tmp_path / "wl" / "topics.yaml"
        good = topics.read_text(encoding="utf-8")
        topics.write_text(good.replace("Mongolia))'", "Mongolia)'"), encoding="utf-8")  # a broken edit
        wait_until(lambda: "last good watchlist" in run.err, "the broken edit to be reported")
        feeds = tmp_path / "wl" / "feeds.yaml"  # then a good edit adds a feed
        topics.write_text(good, encoding="utf-8")
        feed_server.set_feed("/extra.xml", rss([story(99)]))
        feeds.write_text(feeds.read_text() + f"  - url: {feed_server.url('/extra.xml')}\n"
                         "    name: Extra\n", encoding="utf-8")
        wait_until(lambda: len(_rows(tmp_path)) == 2, "the added feed's alert")
    finally:
        code = run.stop(signal.SIGTERM)
    assert code == 0
    assert "topics.yaml:8:" in run.err and "'(' is never closed" in run.err  # located
    assert story(99)["link"] in run.out


# ---------------------------------------------------------------- one article, many copies

# One report as several feeds carry it: tracking parameters, http and https, a feed that
# regenerates its guids. Headlines written for this test.
ARTICLE = "wire.example/energy/2026/11/pos2-price-formula"
WIRE = {"guid": "wire-8812", "link": f"https://{ARTICLE}?utm_source=rss&utm_medium=feed",
        "title": "Gazprom and CNPC agree on a price formula for Power of Siberia 2",
        "desc": "The deal unblocks the pipeline's financing, officials said."}
MOBILE = {"guid": "m-1", "link": f"https://{ARTICLE}?fbclid=IwAR0x&utm_campaign=app",
          "title": "Force de Sibérie 2 : Gazprom et CNPC s'entendent sur le prix",
          "desc": "Un agrégateur francophone renvoie à la dépêche."}  # only the link is shared
PARTNER = {"guid": "partner:pos2-price", "link": f"http://{ARTICLE}",
           "title": "Power of Siberia 2: price formula agreed, financing next",
           "desc": "Partner edition of the wire report."}


def once_json(env: dict[str, str]) -> list[dict]:
    """`veille once --json` as a process: the alerts it delivered."""
    done = subprocess.run([sys.executable, "-m", "bot", "once", "--json"], env=env,
                          capture_output=True, text=True, timeout=WAIT * 2)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def serve_copies(server: FeedServer, tmp_path: Path, copies: dict[str, dict]) -> dict[str, str]:
    for path, item in copies.items():
        server.set_feed(path, rss([item], path.strip("/")))
    write_watchlist(tmp_path / "wl", [(p.strip("/"), server.url(p)) for p in copies],
                    interval=60)
    return env_for(tmp_path)


def test_one_article_in_two_feeds_and_a_regenerated_guid_alerts_once(feed_server,
                                                                      tmp_path) -> None:
    env = serve_copies(feed_server, tmp_path, {"/wire.xml": WIRE, "/mobile.xml": MOBILE})
    first = once_json(env)
    assert [(a["topic"], a["url"]) for a in first] in (
        [("power-of-siberia-2", WIRE["link"])], [("power-of-siberia-2", MOBILE["link"])])
    # the wire regenerates its guid (and its tracking) for the same article
    feed_server.set_feed("/wire.xml", rss([dict(WIRE, guid="wire-8812-r2",
                                                link=f"https://{ARTICLE}?utm_content=top")]))
    assert once_json(env) == []
    assert len(alert_rows(tmp_path)) == 1


def test_http_and_https_copies_of_one_link_alert_once(feed_server, tmp_path) -> None:
    env = serve_copies(feed_server, tmp_path, {"/wire.xml": WIRE, "/partner.xml": PARTNER})
    alerts = once_json(env)
    assert len(alerts) == 1
    assert alerts[0]["url"] in (WIRE["link"], PARTNER["link"])  # a feed's own link, as given
    assert len(alert_rows(tmp_path)) == 1
