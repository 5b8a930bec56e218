"""A 1,000-feed cycle with one, two and three `veille run` instances on one PostgreSQL
database: wall time, each instance's share of the feeds, feeds fetched more than once, and
the queue's own overhead per poll beside the single-instance path without the queue.

    server     bench_cycle's generated feeds (~60 KB each, RSS and Atom in six languages,
               some on the shipped topics) on a FeedServer in its own process
    baseline   one `veille run` with VEILLE_QUEUE=off on a fresh PostgreSQL database: it
               polls every feed itself (the single-instance path)
    queue N    N `veille run` processes (N = 1, 2, 3) on a fresh database each time, polls
               distributed by procrastinate (bot/queue.py)
    a cycle    from the launch of the processes until the sum of their veille_polls_total
               (scraped from each one's /metrics) reaches the number of feeds; the first
               scrape that answers marks the end of start-up, which is reported apart
    share      each instance's veille_polls_total
    twice      the server's requests minus the number of feeds: a feed fetched by two
               instances in one cycle counts here (target: 0)
    overhead   (queue wall - baseline wall) / feeds, and the CPU seconds of all veille
               processes per poll beside the baseline's

Targets (issue 12): no feed fetched twice, every instance count; the overhead is reported.

    .venv/bin/python bench/bench_instances.py [--feeds 1000] [--instances 1,2,3]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

The machine has 2 cores: three instances with their parse workers share them, so more
instances do not make one cycle faster here; the figure shows what the queue costs and that
the work is split without a duplicate.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cycle import LANGS, Server, write_watchlist  # noqa: E402

DEFAULT_DB = os.environ.get("VEILLE_TEST_POSTGRES_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TIMEOUT = 600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def polls(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    return int(sum(float(v) for v in re.findall(r"^veille_polls_total\{[^}]*\} (\S+)$", text,
                                                    flags=re.M)))


def fresh_database(admin_url: str) -> tuple[str, str]:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"veille_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return name, sa.engine.make_url(admin_url).set(database=name).render_as_string(
        hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time of a process and its children (parse workers), while they live."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def one_cycle(n: int, *, queue: bool, wl: Path, server: Server, feeds: int, admin_url: str,
              tmp: Path) -> dict:
    """Start n instances on a fresh database; wait until every feed was polled once."""
    from bot.store import Store

    name, url = fresh_database(admin_url)
    Store.open(url).close()  # migrate once, before the instances race to
    server.reset()
    ports = [free_port() for _ in range(n)]
    procs = []
    started = time.perf_counter()
    for i, port in enumerate(ports):
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")},
               "VEILLE_WATCHLISTS": str(wl), "VEILLE_DATABASE_URL": url,
               "VEILLE_NEWS_SEARCH": "0", "VEILLE_ALLOW_PRIVATE_URLS": "1",
               "VEILLE_HTTP_PORT": str(port), "VEILLE_LOG_LEVEL": "WARNING",
               "VEILLE_STARTUP_SPREAD": "0", "VEILLE_QUEUE": "auto" if queue else "off"}
        out = (tmp / f"run-{n}-{i}.out").open("w")
        err = (tmp / f"run-{n}-{i}.err").open("w")
        procs.append(psutil.Popen([sys.executable, "-m", "bot", "run"], env=env,
                                  stdout=out, stderr=err, cwd=ROOT))
    up = None
    cpu: dict[int, float] = {}
    counts: list[int] = [0] * n
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            seen = [polls(p) for p in ports]
            for p in procs:
                cpu[p.pid] = max(cpu.get(p.pid, 0.0), cpu_seconds(p))
            if up is None and all(s is not None for s in seen):
                up = time.perf_counter() - started
            counts = [s or 0 for s in seen]
            if sum(counts) >= feeds:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                errs = "".join((tmp / f"run-{n}-{i}.err").read_text()[-800:] for i in range(n))
                raise SystemExit(f"{n} instance(s) did not finish the cycle: {counts}\n{errs}")
            time.sleep(0.2)
        wall = time.perf_counter() - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except psutil.TimeoutExpired:
                p.kill()
        drop_database(admin_url, name)
    return {"instances": n, "wall": wall, "startup": up or 0.0, "shares": counts,
            "twice": server.hits() - feeds, "cpu": sum(cpu.values())}


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--instances", default="1,2,3")
    ap.add_argument("--database", default=DEFAULT_DB, help="an existing PostgreSQL database "
                    "to create the bench databases from")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    counts = [int(x) for x in args.instances.split(",")]
    print(f"veille instances: {args.feeds} feeds, instances {counts}, {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="veille-instances-"))
    server = Server("process", args.feeds, 50, args.seed)
    try:
        urls = [(f"Bench {LANGS[i % 6]} {i}", server.url(i), LANGS[i % 6])
                for i in range(args.feeds)]
        wl = write_watchlist(tmp / "watchlists", urls)
        feeds_yaml = wl / "feeds.yaml"
        feeds_yaml.write_text(feeds_yaml.read_text().replace("interval: 600", "interval: 3600"))
        base = one_cycle(1, queue=False, wl=wl, server=server, feeds=args.feeds,
                         admin_url=args.database, tmp=tmp)
        print(f"  baseline, 1 instance, no queue: {base['wall']:.1f} s wall "
              f"({base['startup']:.1f} s start-up), {base['cpu']:.1f} CPU-s, "
              f"fetched twice {base['twice']}")
        rows = []
        for n in counts:
            r = one_cycle(n, queue=True, wl=wl, server=server, feeds=args.feeds,
                          admin_url=args.database, tmp=tmp)
            rows.append(r)
            shares = ", ".join(f"{s} ({s / args.feeds:.0%})" for s in r["shares"])
            print(f"  queue, {n} instance(s): {r['wall']:.1f} s wall ({r['startup']:.1f} s "
                  f"start-up), {r['cpu']:.1f} CPU-s; shares {shares}; fetched twice "
                  f"{r['twice']}")
        one = next((r for r in rows if r["instances"] == 1), None)
        if one is not None:
            wall_ms = (one["wall"] - base["wall"]) / args.feeds * 1000
            cpu_ms = (one["cpu"] - base["cpu"]) / args.feeds * 1000
            print(f"  queue overhead per poll (1 instance vs no queue): {wall_ms:+.2f} ms wall, "
                  f"{cpu_ms:+.2f} ms CPU")
        twice = sum(r["twice"] for r in rows)
        print(f"target: no feed fetched twice in a cycle: {twice} -> {verdict(twice == 0)}")
        every = all(all(s > 0 for s in r["shares"]) for r in rows)
        print(f"target: every instance takes a share: {verdict(every)}")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
