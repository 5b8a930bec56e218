"""Soak: `veille run` over 1,000 feeds on a database holding 30 days of state, resident memory
per process after each polling round.

    state     --days days of generated history in a fresh SQLite file: per feed and per day
              --per-day items (claimed through Store.claim with that day as `now`, so they are
              stored, matched and alerted as a real poll would; the alerts are marked sent)
    feeds     bench_cycle's 1,000 generated feeds (~60 KB each) on a FeedServer in its own
              process; before each round every feed gains 2 new items
    veille    `veille run` as a child process (VEILLE_HTTP_PORT set: /metrics is scraped each
              round, so the web server works too), every feed's interval 60 s
    a round   ends when veille_polls_total has grown by the number of feeds; then the RSS and
              PSS of veille's main process and of each of its children are read (psutil)

Targets (issue 12): memory flat from round to round (the last round within 10 % of the
second; the first holds the cold start) and the whole under 250 MB at steady state. "The
whole" is the PSS sum (shared pages counted once across the forked workers); the RSS sum,
which counts them in every process, is printed beside it.

    .venv/bin/python bench/bench_soak.py [--feeds 1000] [--days 30] [--per-day 10]
        [--rounds 6] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_cycle import LANGS, Server, write_watchlist  # noqa: E402
from bot.model import Hit, Item, Match  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.watchlist import load_watchlist  # noqa: E402

MB = 1024 * 1024
TARGET_MB = 250
FLAT = 0.10  # the last round may exceed the second by this fraction at most
INTERVAL = 60  # seconds: the shortest feed interval a watchlist accepts
WORDS = ("pipeline", "summit", "tariff", "grain", "port", "currency", "rail", "election",
         "drought", "refinery", "strike", "budget", "border", "vaccine", "satellite", "harvest")


def history(store: Store, urls: list[str], topics: list[str], days: int, per_day: int,
            now: datetime) -> tuple[int, int]:
    """Claim `per_day` items per feed per day over `days` days; (items, alerts) stored."""
    n_items = n_alerts = 0
    for day in range(days, 0, -1):
        when = now - timedelta(days=day - 0.5)
        for f, url in enumerate(urls):
            batch, matched = [], {}
            for k in range(per_day):
                guid = f"hist-{f}-{day}-{k}"
                words = " ".join(WORDS[(f + day * 3 + k * 5 + i) % len(WORDS)] for i in range(9))
                item = Item(feed=url, guid=guid, url=f"https://hist{f}.example/{day}/{k}",
                            link=f"https://hist{f}.example/{day}/{k}", title=f"{words} {guid}",
                            summary=(words + ". ") * 8, published=when, lang=LANGS[f % 6],
                            source=f"Hist {f}")
                batch.append(item)
                if k == 0 and f % 4 == 0:  # a quarter of the feeds alert once a day
                    topic = topics[(f + day) % len(topics)]
                    matched[guid] = [Match(topic, (Hit(topic, "title", 0, 8, words[:8]),))]
            claim = store.claim(url, batch, matched, now=when, alert_cutoff=None)
            n_items += claim.new
            n_alerts += len(claim.alerts)
    return n_items, n_alerts


def mark_sent(url: str) -> None:
    """History's alerts were delivered long ago: no console flood at start."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alerts SET status = 'sent'")
    engine.dispose()


def polls(port: int) -> int:
    """veille_polls_total summed over results, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return int(sum(float(v) for v in re.findall(r"^veille_polls_total\{[^}]*\} (\S+)$", text,
                                                    flags=re.M)))


def memory(pid: int) -> list[tuple[str, int, float, float]]:
    """(role, pid, RSS MB, PSS MB) of veille's main process and each of its children."""
    main = psutil.Process(pid)
    out = []
    for proc in [main] + main.children(recursive=True):
        try:
            info = proc.memory_full_info()
            cmd = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
        role = ("main" if proc.pid == pid else "resource-tracker" if "resource_tracker" in cmd
                else "forkserver" if proc.ppid() == pid else "worker")  # workers fork from it
        out.append((role, proc.pid, info.rss / MB, info.pss / MB))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--per-day", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"veille soak: {args.feeds} feeds, {args.days} days x {args.per_day} items/feed of "
          f"history, {args.rounds} rounds of {INTERVAL} s, {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="veille-soak-"))
    server = Server("process", args.feeds, 50, args.seed)
    urls = [(f"Bench {LANGS[i % 6]} {i}", server.url(i), LANGS[i % 6]) for i in range(args.feeds)]
    wl = write_watchlist(tmp / "watchlists", urls)
    feeds_yaml = wl / "feeds.yaml"
    feeds_yaml.write_text(feeds_yaml.read_text().replace("interval: 600", f"interval: {INTERVAL}"))
    topics = [t.id for t in load_watchlist(wl).topics]
    db = f"sqlite:///{tmp}/state/veille.db"

    t = time.perf_counter()
    with Store.open(db) as store:
        store.sync_feeds(load_watchlist(wl).all_feeds(news_search=False))
        n_items, n_alerts = history(store, [u for _, u, _ in urls], topics, args.days,
                                    args.per_day, datetime.now(UTC))
    mark_sent(db)
    size = Path(f"{tmp}/state/veille.db").stat().st_size / MB
    print(f"  history: {n_items} items, {n_alerts} alerts in {time.perf_counter() - t:.0f} s "
          f"({size:.0f} MB database)")

    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")},
           "VEILLE_WATCHLISTS": str(wl), "VEILLE_DATABASE_URL": db, "VEILLE_NEWS_SEARCH": "0",
           "VEILLE_ALLOW_PRIVATE_URLS": "1", "VEILLE_HTTP_PORT": str(port),
           "VEILLE_RETENTION_DAYS": str(args.days + 1), "VEILLE_LOG_LEVEL": "WARNING"}
    with (tmp / "run.out").open("w") as out, (tmp / "run.err").open("w") as err:
        run = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], env=env, stdout=out,
                               stderr=err, cwd=ROOT)
    totals = []
    try:
        deadline = time.monotonic() + 120
        while True:  # the HTTP server is up
            try:
                polls(port)
                break
            except OSError:
                if run.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"veille run did not start:\n{(tmp / 'run.err').read_text()}")
                time.sleep(0.5)
        print(f"  {'round':>5} {'polls':>6} {'main RSS':>9} {'children':>30} {'RSS sum':>8} "
              f"{'PSS sum':>8}")
        for r in range(1, args.rounds + 1):
            if r > 1:
                server.serve(2 * (r - 1))  # every feed gains 2 new items
            deadline = time.monotonic() + INTERVAL * 4
            while (done := polls(port)) < args.feeds * r:
                if run.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"round {r} did not finish ({done} polls):\n"
                                     f"{(tmp / 'run.err').read_text()[-3000:]}")
                time.sleep(1)
            procs = memory(run.pid)
            rss = sum(p[2] for p in procs)
            pss = sum(p[3] for p in procs)
            totals.append(pss)
            main_rss = next(p[2] for p in procs if p[0] == "main")
            kids = " ".join(f"{role[0]}{rss_:.0f}" for role, _pid, rss_, _pss in procs
                            if role != "main")
            print(f"  {r:>5} {done:>6} {main_rss:>7.0f}MB {kids:>30} {rss:>6.0f}MB {pss:>6.0f}MB")
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=120)
        server.stop()
    print("  (children: f forkserver, w parse worker, r resource tracker; RSS in MB)")
    steady, second = totals[-1], totals[1] if len(totals) > 1 else totals[0]
    growth = (steady - second) / second
    flat = growth <= FLAT
    print(f"  flat: last round {steady:.0f} MB vs second {second:.0f} MB ({growth:+.1%}; "
          f"target <= {FLAT:+.0%}): {'met' if flat else 'not met'}")
    print(f"  whole at steady state: {steady:.0f} MB PSS (target < {TARGET_MB} MB): "
          f"{'met' if steady < TARGET_MB else 'not met'}")
    print(f"  veille run exited {code}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
