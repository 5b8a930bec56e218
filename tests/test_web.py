"""/healthz, /readyz and /metrics: scraped from a real `veille run`, and in-process for auth."""

from __future__ import annotations

import base64
import signal
import socket
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from bot.app import App
from bot.config import Settings
from tests.conftest import PG_URL, require_or_skip
from tests.feedserver import FeedServer
from tests.pipeline_helpers import RecordingSink, rss, write_watchlist
from tests.test_run import Veille, env_for, story, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, auth: str | None = None) -> tuple[int, str]:
    """(status, body) of a GET on 127.0.0.1:port; (0, error) when nothing answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")
    except OSError as exc:
        return 0, str(exc)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def serve_two(server: FeedServer, tmp_path: Path) -> tuple[str, str]:
    """A healthy feed with one matching story and a feed answering 500."""
    server.set_feed("/ok.xml", rss([story(1)]))
    server.set_status("/bad.xml", 500)
    ok, bad = server.url("/ok.xml"), server.url("/bad.xml")
    write_watchlist(tmp_path / "wl", [("Good feed", ok), ("Broken feed", bad)], interval=60)
    return ok, bad


# ---------------------------------------------------------------- a real `veille run`


def test_probes_and_metrics_during_a_real_run(feed_server: FeedServer, tmp_path: Path) -> None:
    ok, bad = serve_two(feed_server, tmp_path)
    port = free_port()
    run = Veille(tmp_path, "run", env=env_for(tmp_path, VEILLE_HTTP_PORT=str(port)))
    try:
        wait_until(lambda: get(port, "/healthz") == (200, "ok\n"), "/healthz to answer")
        wait_until(lambda: get(port, "/readyz")[0] == 200, "/readyz to say ready")
        assert get(port, "/readyz") == (200, "ready\n")

        def scraped() -> str:
            status, body = get(port, "/metrics")
            assert status == 200, body
            return body

        wait_until(lambda: (value(scraped(), "veille_polls_total", result="error") or 0) >= 1
                   and value(scraped(), "veille_alerts_total", topic="power-of-siberia-2")
                   and value(scraped(), "veille_pending_deliveries", queue="outbox") == 0,
                   "both feeds polled and the alert delivered")
        text = scraped()
    finally:
        code = run.stop(signal.SIGTERM)
    assert code == 0, run.err
    assert value(text, "veille_polls_total", result="new") >= 1
    assert value(text, "veille_feed_error_streak", feed=bad) >= 1  # the failing feed shows
    assert value(text, "veille_feed_error_streak", feed=ok) == 0
    assert value(text, "veille_feeds", health="failing") == 1
    assert value(text, "veille_feeds", health="ok") == 1
    assert value(text, "veille_alerts_total", topic="power-of-siberia-2") == 1
    assert value(text, "veille_matches_total", topic="power-of-siberia-2") == 1
    assert value(text, "veille_items_total") == 1
    assert value(text, "veille_fetch_seconds_count") >= 2
    assert value(text, "veille_parse_seconds_count") >= 1
    assert value(text, "veille_scheduler_running") == 1
    assert value(text, "veille_last_cycle_seconds", job="housekeeping") is not None  # at start
    assert run.out.count(story(1)["link"]) == 1


def test_a_port_already_taken_is_one_clear_error(feed_server: FeedServer, tmp_path: Path) -> None:
    serve_two(feed_server, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = Veille(tmp_path, "run", env=env_for(tmp_path, VEILLE_HTTP_PORT=str(port)))
        code = run.proc.wait(timeout=60)
    assert code == 2
    assert f"error: VEILLE_HTTP_PORT={port}: cannot listen on 127.0.0.1:{port}: " in run.err
    assert "Traceback" not in run.err


@pytest.fixture
def pg_db() -> str:
    """A PostgreSQL database of its own (its connections are cut in the test), dropped after."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"veille_web_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        require_or_skip(f"PostgreSQL unreachable at {PG_URL}: {exc.orig}")
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def _cut(name: str, allow: bool) -> None:
    """Stop (or restart) a database for its clients: refuse new connections, end the open ones."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {str(allow).lower()}")
        if not allow:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :d"), {"d": name})
    admin.dispose()


@pytest.mark.postgres
def test_a_stopped_database_turns_readyz_to_503_and_back(feed_server: FeedServer, tmp_path: Path,
                                                         pg_db: str) -> None:
    serve_two(feed_server, tmp_path)
    port = free_port()
    url = sa.make_url(PG_URL).set(database=pg_db).render_as_string(hide_password=False)
    env = {**env_for(tmp_path, VEILLE_HTTP_PORT=str(port)), "VEILLE_DATABASE_URL": url}
    run = Veille(tmp_path, "run", env=env)
    try:
        wait_until(lambda: get(port, "/readyz")[0] == 200, "/readyz to say ready")
        _cut(pg_db, allow=False)
        wait_until(lambda: get(port, "/readyz")[0] == 503, "/readyz to say 503")
        status, body = get(port, "/readyz")
        assert body.startswith("not ready: database unreachable: checking the database failed")
        assert pg_db in body  # names which database
        assert get(port, "/healthz")[0] == 200  # the process still answers
        _cut(pg_db, allow=True)
        wait_until(lambda: get(port, "/readyz")[0] == 200, "/readyz to recover")
    finally:
        _cut(pg_db, allow=True)
        code = run.stop(signal.SIGTERM)
    assert code == 0, run.err


# ---------------------------------------------------------------- in process


@pytest.fixture
async def served(tmp_path: Path, feed_server: FeedServer):
    """An App serving HTTP with basic auth, no scheduler started."""
    serve_two(feed_server, tmp_path)
    settings = Settings(_env_file=None, watchlists=tmp_path / "wl", allow_private_urls=True,
                        database_url=f"sqlite:///{tmp_path}/veille.db", news_search=False,
                        http_port=free_port(), http_auth="ops:open sesame")
    app = App.create(settings, sink=RecordingSink(), parse_in_processes=False)
    await app.start_http()
    try:
        yield app
    finally:
        await app.aclose()


async def aget(port: int, path: str, auth: str | None = None) -> tuple[int, str]:
    import asyncio

    return await asyncio.to_thread(get, port, path, auth)


async def test_readyz_names_every_reason(served: App) -> None:
    port = served.settings.http_port
    status, body = await aget(port, "/readyz")
    assert status == 503
    assert body == "not ready: scheduler not running; no scheduler job finished yet\n"
    served.metrics.scheduler_started()
    served.metrics.cycle_done("reload", 0.01)
    assert await aget(port, "/readyz") == (200, "ready\n")
    served.metrics.last_cycle -= 500  # the scheduler stalled
    status, body = await aget(port, "/readyz")
    assert status == 503 and "last scheduler job finished 500 s ago" in body


@pytest.mark.parametrize("path", ["/", "/metrics"])
async def test_status_and_metrics_need_the_password(served: App, path: str) -> None:
    port = served.settings.http_port
    assert (await aget(port, path))[0] == 401
    assert (await aget(port, path, "ops:open sesamE"))[0] == 401
    assert (await aget(port, path, "ops2:open sesame"))[0] == 401
    assert (await aget(port, path, "ops:open sesame"))[0] == 200
    assert (await aget(port, "/healthz"))[0] == 200  # probes stay open


def test_authorized_reads_basic_credentials_exactly() -> None:
    from bot.web import authorized

    good = "Basic " + base64.b64encode(b"ops:pw").decode()
    assert authorized(good, b"ops:pw")
    assert authorized(good.replace("Basic", "basic"), b"ops:pw")
    assert not authorized(good, b"ops:pw2")
    assert not authorized("Bearer " + base64.b64encode(b"ops:pw").decode(), b"ops:pw")
    assert not authorized("Basic not base64!", b"ops:pw")
    assert not authorized(None, b"ops:pw")
