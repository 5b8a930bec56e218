"""No secret (bot token, database password, basic-auth password) in any log line, metric,
error message, page or Telegram message: veille runs with known secrets, everything it says
is collected, and grepped."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.store import Store
from tests.conftest import PG_URL
from tests.fakebot import FakeBotAPI
from tests.feedserver import FeedServer
from tests.pipeline_helpers import NOW, rss, write_watchlist
from tests.test_run import Veille, env_for, story, wait_until
from tests.test_web import _cut, free_port, get, pg_db  # noqa: F401  (pg_db is a fixture)

TOKEN = "7357135:AAF-veilleTestTok3n-Zq8wXk2"
DB_PASSWORD = "pg-Pw-Qx7secret"
AUTH_PASSWORD = "ba-Pw-Lm4secret"
# each secret whole, and the parts that identify it alone
SECRETS = (TOKEN, TOKEN.split(":")[1], DB_PASSWORD, AUTH_PASSWORD)
CHAT = 6001


def leaks(texts: dict[str, str]) -> list[str]:
    """'where: secret' for every secret found in any collected text."""
    return [f"{where}: {secret}" for where, text in texts.items() for secret in SECRETS
            if secret in text]


def pg_url(database: str, *, port: int | None = None) -> str:
    """The test database's URL with the known password (the local server trusts anyway)."""
    url = sa.make_url(PG_URL).set(database=database, password=DB_PASSWORD)
    if port is not None:
        url = url.set(port=port)
    return url.render_as_string(hide_password=False)


def veille(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.postgres
def test_no_secret_in_logs_metrics_pages_errors_or_messages(
        feed_server: FeedServer, tmp_path: Path, pg_db: str) -> None:
    feed_server.set_feed("/ok.xml", rss([story(1)]))
    feed_server.set_status("/bad.xml", 500)
    write_watchlist(tmp_path / "wl", [("Good", feed_server.url("/ok.xml")),
                                      ("Bad", feed_server.url("/bad.xml"))], interval=60)
    url = pg_url(pg_db)
    with Store.open(url) as store:
        store.upsert_subscriber(CHAT, kind="private", now=NOW - timedelta(days=1))
        store.subscribe(CHAT, "power-of-siberia-2", now=NOW - timedelta(days=1))
    port = free_port()
    auth = f"ops:{AUTH_PASSWORD}"
    texts: dict[str, str] = {}
    with FakeBotAPI(token=TOKEN) as fake:
        fake.add_chat(CHAT)
        fake.fail("sendMessage", chat_id=CHAT, error="server_error", times=1)  # an error path
        env = {**env_for(tmp_path, VEILLE_TELEGRAM_TOKEN=TOKEN, VEILLE_HTTP_AUTH=auth,
                         VEILLE_TELEGRAM_API_URL=fake.base_url, VEILLE_HTTP_PORT=str(port),
                         VEILLE_LOG_LEVEL="DEBUG"), "VEILLE_DATABASE_URL": url}
        run = Veille(tmp_path, "run", env=env)
        try:
            wait_until(lambda: fake.sent_count(CHAT) >= 1, "the alert in the chat")
            wait_until(lambda: get(port, "/readyz")[0] == 200, "/readyz to say ready")
            for path in ("/", "/metrics", "/healthz", "/readyz"):
                texts[f"GET {path}"] = "\n".join(map(str, get(port, path, auth)))
                texts[f"GET {path} no auth"] = "\n".join(map(str, get(port, path)))
                texts[f"GET {path} bad auth"] = "\n".join(map(str, get(port, path, "ops:x")))
            _cut(pg_db, allow=False)  # database errors, with its URL, everywhere
            wait_until(lambda: get(port, "/readyz")[0] == 503, "/readyz to say 503")
            wait_until(lambda: f"failed on postgresql+psycopg://postgres:***@" in run.err,
                       "a database error in the log")
            for path in ("/", "/readyz", "/metrics"):
                texts[f"GET {path} database down"] = "\n".join(map(str, get(port, path, auth)))
            _cut(pg_db, allow=True)
        finally:
            _cut(pg_db, allow=True)
            code = run.stop(signal.SIGTERM)
        texts["run stdout"], texts["run stderr"] = run.out, run.err
        texts["telegram messages"] = "\n".join(
            f"{m.text} {[e.get('url') for e in m.entities]}" for m in fake.messages(CHAT))
        once = veille(tmp_path, env, "once", "--verbose")
        texts["once stdout"], texts["once stderr"] = once.stdout, once.stderr
    assert code == 0, run.err
    # the run did what the grep relies on: logs, metrics, a page, a DB error, a message
    assert "polls_total" in texts["GET /metrics"] and "Good" in texts["GET /"]
    assert texts["GET / no auth"].startswith("401") and texts["GET /metrics bad auth"].startswith("401")
    assert "database unreachable" in texts["GET /readyz database down"]
    assert "***" in texts["GET /readyz database down"]  # the URL is shown, its password masked
    assert story(1)["title"] in texts["telegram messages"]
    assert leaks(texts) == []


def test_no_secret_when_the_database_or_the_settings_are_wrong(tmp_path: Path) -> None:
    write_watchlist(tmp_path / "wl", [("Good", "http://127.0.0.1:9/ok.xml")])
    unreachable = pg_url("veille", port=9)  # nothing listens there
    base = env_for(tmp_path, VEILLE_TELEGRAM_TOKEN=TOKEN, VEILLE_HTTP_AUTH=f"ops:{AUTH_PASSWORD}")
    cases = {
        "run, unreachable database": ({"VEILLE_DATABASE_URL": unreachable}, ["run"]),
        "once, unreachable database": ({"VEILLE_DATABASE_URL": unreachable}, ["once"]),
        "feeds, unreachable database": ({"VEILLE_DATABASE_URL": unreachable}, ["feeds"]),
        "unparsable database URL": ({"VEILLE_DATABASE_URL":
                                     f"postgresql+psycopg://u:{DB_PASSWORD}@h:port/db"}, ["once"]),
        "auth without a colon": ({"VEILLE_HTTP_AUTH": AUTH_PASSWORD}, ["run"]),
        "a bad HTTP port": ({"VEILLE_HTTP_PORT": "99999"}, ["run"]),
    }
    texts, codes = {}, {}
    for name, (extra, args) in cases.items():
        done = veille(tmp_path, {**base, **extra}, *args)
        texts[name] = done.stdout + done.stderr
        codes[name] = done.returncode
    assert set(codes.values()) == {2}, texts  # each one refused, with a message
    assert "VEILLE_HTTP_AUTH=***" in texts["auth without a colon"]
    assert "VEILLE_DATABASE_URL=***" in texts["unparsable database URL"]
    assert "127.0.0.1:9" in texts["run, unreachable database"]  # says which database
    assert leaks(texts) == []
