"""Soak: `veille run` over 1,000 feeds on a database holding 30 days of state, resident memory
per process after each polling round.

    state     --days days of generated history in a fresh SQLite file: per feed and per day
              --per-day items (claimed through Store.claim with that day as `now`, so they are
              stored, matched and alerted as a real poll would; the alerts are marked sent)
    feeds     bench_cycle's 1,000 generated feeds (~60 KB each) on a FeedServer in its own
              process; before each round every feed gains 2 new items
    veille    `veille run` as a child process (VEILLE_HTTP_PORT set: /metrics is scraped each
              round, so the web server works too), every feed's interval --interval s
    a round   ends when veille_polls_total has grown by the number of feeds; then the RSS,
              PSS and USS of veille's main process and of each of its children are read
              (psutil; PSS and USS are Linux's, from /proc/<pid>/smaps_rollup)
    baseline  in the same run, before veille starts: a bare interpreter that imports what
              `veille run` imports (bot.cli, bot.scheduler, bot.web), and one that imports
              what a parse worker preloads (bot.workers, bot.match): the floor the rounds
              are compared with

Targets (issue 12): memory flat from round to round (the PSS sum of the last round within
5 % of the second's; the first round holds the cold start: parse workers spawned, the
matcher built, the story index loaded) and the whole under 250 MB at steady state. "The
whole" is the PSS sum (a page shared by the forked workers is counted once, split between
them); the RSS sum, which counts shared pages in every process, and the USS sum (pages
private to each) are printed beside it.

    .venv/bin/python bench/bench_soak.py [--feeds 1000] [--days 30] [--per-day 10]
        [--rounds 4] [--interval 60] [--seed 7]

The default run takes about 6 minutes; a longer soak: --rounds 60 (an hour). The machine is
shared and noisy: a round's figures move by a few MB from run to run.
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
FLAT = 0.05  # the last round may exceed the second by this fraction at most
INTERVAL = 60  # seconds: the shortest feed interval a watchlist accepts
BASELINES = {"veille run's imports": "import bot.cli, bot.scheduler, bot.web",
             "a parse worker's imports": "import bot.workers, bot.match"}
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


def memory(pid: int) -> list[tuple[str, int, float, float, float]]:
    """(role, pid, RSS, PSS, USS in MB) of veille's main process and each of its children."""
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
        out.append((role, proc.pid, info.rss / MB, info.pss / MB, info.uss / MB))
    return out


def baseline(code: str) -> tuple[float, float, float]:
    """(RSS, PSS, USS in MB) of a bare interpreter that ran `code` and waits."""
    proc = subprocess.Popen([sys.executable, "-c", f"{code}; print('ready', flush=True); input()"],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"  # type: ignore[union-attr]
        info = psutil.Process(proc.pid).memory_full_info()
        return info.rss / MB, info.pss / MB, info.uss / MB
    finally:
        proc.kill()
        proc.wait()


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
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--interval", type=int, default=INTERVAL, help="feed interval (s), >= 60")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"veille soak: {args.feeds} feeds, {args.days} days x {args.per_day} items/feed of "
          f"history, {args.rounds} rounds of {args.interval} s, {os.cpu_count()} CPUs")
    started = time.perf_counter()
    floor = {name: baseline(code) for name, code in BASELINES.items()}
    for name, (rss_, pss_, uss_) in floor.items():
        print(f"  baseline, {name}: RSS {rss_:.0f} MB, PSS {pss_:.0f} MB, USS {uss_:.0f} MB")
    tmp = Path(tempfile.mkdtemp(prefix="veille-soak-"))
    server = Server("process", args.feeds, 50, args.seed)
    urls = [(f"Bench {LANGS[i % 6]} {i}", server.url(i), LANGS[i % 6]) for i in range(args.feeds)]
    wl = write_watchlist(tmp / "watchlists", urls)
    feeds_yaml = wl / "feeds.yaml"
    feeds_yaml.write_text(feeds_yaml.read_text().replace("interval: 600",
                                                         f"interval: {args.interval}"))
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
        run = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env, stdout=out,
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
        print(f"  {'round':>5} {'polls':>6} {'s':>4} {'main RSS/PSS/USS':>17} {'forkserver':>10} "
              f"{'workers':>12} {'RSS sum':>8} {'PSS sum':>8} {'USS sum':>8}   (MB; workers: PSS)")
        for r in range(1, args.rounds + 1):
            begun = time.perf_counter()
            if r > 1:
                server.serve(2 * (r - 1))  # every feed gains 2 new items
            deadline = time.monotonic() + args.interval * 4
            while (done := polls(port)) < args.feeds * r:
                if run.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"round {r} did not finish ({done} polls):\n"
                                     f"{(tmp / 'run.err').read_text()[-3000:]}")
                time.sleep(1)
            procs = memory(run.pid)
            rss, pss, uss = (sum(p[k] for p in procs) for k in (2, 3, 4))
            totals.append(pss)
            main_ = next(p for p in procs if p[0] == "main")
            fork = sum(p[3] for p in procs if p[0] == "forkserver")
            workers = [p[3] for p in procs if p[0] == "worker"]
            shown = "+".join(f"{w:.0f}" for w in workers)
            print(f"  {r:>5} {done:>6} {time.perf_counter() - begun:>4.0f} "
                  f"{main_[2]:>5.0f}/{main_[3]:>4.0f}/{main_[4]:>4.0f}  {fork:>10.0f} "
                  f"{shown:>12} {rss:>8.0f} {pss:>8.0f} {uss:>8.0f}")
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=120)
        server.stop()
    steady, second = totals[-1], totals[1] if len(totals) > 1 else totals[0]
    growth = (steady - second) / second
    half = totals[len(totals) // 2:]
    slope = (half[-1] - half[0]) / max(len(half) - 1, 1)
    floor_main = floor["veille run's imports"][1]
    print(f"  main process vs its imports alone: {main_[3]:.0f} MB PSS vs {floor_main:.0f} MB")
    print(f"  flat: last round {steady:.0f} MB vs second {second:.0f} MB PSS ({growth:+.1%}, "
          f"{slope:+.1f} MB a round over the last half; target <= {FLAT:+.0%}): "
          f"{'met' if growth <= FLAT else 'not met'}")
    print(f"  whole at steady state: {steady:.0f} MB PSS (target < {TARGET_MB} MB): "
          f"{'met' if steady < TARGET_MB else 'not met'}")
    print(f"  veille run exited {code}; {time.perf_counter() - started:.0f} s in all")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
