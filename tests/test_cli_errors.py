"""The CLI as an operator meets it: the real console script in a child process, where exit
codes, stderr and tracebacks are what is checked. Failures are one line naming the problem
(and the setting to look at), exit 2; `once` exits 1 when every feed failed and explains
what it did; `feeds` and `alerts` print plain text when piped; `run` logs feeds by name."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot import __version__
from tests.pipeline_helpers import FR_ITEMS, NOW, TOPICS_YAML, rss, write_watchlist

SCRIPT = Path(sys.executable).with_name("veille")  # the console script pip installed
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bot"]
WAIT = 60


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
    env.update(VEILLE_WATCHLISTS=str(tmp_path / "wl"), VEILLE_NEWS_SEARCH="0",
               VEILLE_DATABASE_URL=f"sqlite:///{tmp_path}/state/veille.db",
               VEILLE_PARSE_WORKERS="1", VEILLE_STARTUP_SPREAD="0", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def veille(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the console script in tmp_path (no .env of the repository is read)."""
    return subprocess.run([*COMMAND, *args], env=env_for(tmp_path, **extra), cwd=tmp_path,
                          capture_output=True, text=True, timeout=WAIT)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (nothing on stdout, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------ help and version


def test_version_and_short_help_flag(tmp_path: Path) -> None:
    version = veille(tmp_path, "--version")
    assert (version.returncode, version.stdout) == (0, f"veille {__version__}\n")
    short = veille(tmp_path, "-h")
    assert short.returncode == 0 and short.stdout.startswith("Usage: veille [OPTIONS] COMMAND")


@pytest.mark.parametrize("command", ["once", "feeds", "alerts", "run", "validate"])
def test_help_shows_boolean_options_as_flags_in_plain_text(tmp_path: Path, command: str) -> None:
    result = veille(tmp_path, command, "-h")
    assert result.returncode == 0
    assert "<bool>" not in result.stdout and "╭" not in result.stdout
    assert "  -h, --help " in result.stdout
    if command in ("once", "feeds", "alerts"):
        assert "\n  --json " in result.stdout


# ------------------------------------------------------------ the database


@pytest.mark.parametrize("command", ["feeds", "alerts", "once"])
def test_an_unsupported_database_url_is_one_line(tmp_path: Path, command: str) -> None:
    write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")])
    line = one_line_error(veille(tmp_path, command, VEILLE_DATABASE_URL="mysql://u@h/db"))
    assert line == ("error: unsupported database mysql://u@h/db: use SQLite or PostgreSQL "
                    "(check VEILLE_DATABASE_URL)")


@pytest.mark.parametrize("command", ["feeds", "alerts"])
def test_an_unreachable_postgresql_is_one_line_without_its_password(
        tmp_path: Path, command: str) -> None:
    url = f"postgresql+psycopg://veille:s3cret-pw@127.0.0.1:{free_port()}/veille"
    line = one_line_error(veille(tmp_path, command, VEILLE_DATABASE_URL=url))
    assert line.startswith("error: migrating failed on postgresql+psycopg://veille:***@127.0.0.1")
    assert "Connection refused" in line and line.endswith("(check VEILLE_DATABASE_URL)")
    assert "s3cret-pw" not in line


@pytest.mark.parametrize("command", ["feeds", "alerts"])
def test_a_missing_sqlite_file_is_an_error_never_a_new_database(
        tmp_path: Path, command: str) -> None:
    typo = tmp_path / "stat" / "veille.db"
    line = one_line_error(veille(tmp_path, command, VEILLE_DATABASE_URL=f"sqlite:///{typo}"))
    assert line == (f"error: no database at {typo}: nothing polled there yet, or a mistyped "
                    "path (check VEILLE_DATABASE_URL)")
    assert not typo.parent.exists()


def test_ctrl_c_while_the_database_does_not_answer_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as server:  # accepts the connection, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"postgresql+psycopg://postgres@127.0.0.1:{server.getsockname()[1]}/test"
        # SIGINT as a terminal leaves it (a shell's background job inherits it ignored)
        proc = subprocess.Popen([*COMMAND, "feeds"], env=env_for(tmp_path, VEILLE_DATABASE_URL=url),
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        conn, _ = server.accept()  # veille is now waiting on the database
        try:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=WAIT)
        finally:
            conn.close()
    assert (proc.returncode, out) == (2, "")
    assert err == "veille: interrupted (Ctrl-C) while opening the database (VEILLE_DATABASE_URL)\n"


def test_ctrl_c_while_veille_is_still_importing_is_one_line(tmp_path: Path) -> None:
    # the KeyboardInterrupt that a Ctrl-C in the first fraction of a second raises while
    # the libraries load, delivered here at a known point: right after bot.cli's own imports
    result = subprocess.run([sys.executable, "-c", "import bot.cli; raise KeyboardInterrupt"],
                            env=env_for(tmp_path), cwd=Path(__file__).parent.parent,
                            capture_output=True, text=True, timeout=WAIT)
    assert (result.returncode, result.stderr) == (
        2, "veille: interrupted (Ctrl-C) while starting\n")


# ------------------------------------------------------------ once: exit codes and summary


def test_once_exits_1_when_every_feed_failed(tmp_path: Path, feed_server) -> None:
    feed_server.set_status("/gone.xml", 404)
    write_watchlist(tmp_path / "wl", [("Gone", feed_server.url("/gone.xml")),
                                      ("Nobody", f"http://127.0.0.1:{free_port()}/rss")])
    result = veille(tmp_path, "once", VEILLE_ALLOW_PRIVATE_URLS="1")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert f"Gone <{feed_server.url('/gone.xml')}>: HTTP 404 Not Found" in lines
    assert any(x.startswith("Nobody <http://127.0.0.1:") for x in lines)
    assert lines[-2:] == [
        "2 feeds polled (0 changed, 0 not modified, 0 unchanged), 2 failed; 0 new items, "
        "0 alerts", "every feed failed"]  # one feed answered (404): no network hint


def test_once_exits_0_when_one_feed_answers(tmp_path: Path, feed_server) -> None:
    feed_server.set_feed("/fr.xml", rss(FR_ITEMS, "Presse Exemple"))
    write_watchlist(tmp_path / "wl", [("Presse", feed_server.url("/fr.xml")),
                                      ("Nobody", f"http://127.0.0.1:{free_port()}/rss")])
    result = veille(tmp_path, "once", VEILLE_ALLOW_PRIVATE_URLS="1")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "2 feeds polled (1 changed, 0 not modified, 0 unchanged), 1 failed; 2 new items, 1 alert")


def test_once_says_why_matching_items_made_no_alert(tmp_path: Path, feed_server) -> None:
    old = {"guid": "old", "title": "Force de Sibérie 2 : Moscou relance le dossier",
           "link": "https://presse.example/fr/ancien", "age": 72}
    fresh = {"guid": "new", "title": "Force de Sibérie 2 : un accord sur le prix ?",
             "link": "https://presse.example/fr/accord"}
    body = rss([old, fresh], "Presse Exemple").replace(  # one more item, without any date
        b"</channel>", b"<item><guid>undated</guid><title>Power of Siberia 2 talks resume"
        b"</title><link>https://news.example/en/undated</link></item></channel>")
    feed_server.set_feed("/fr.xml", body)
    write_watchlist(tmp_path / "wl", [("Presse", feed_server.url("/fr.xml"))])
    result = veille(tmp_path, "once", VEILLE_ALLOW_PRIVATE_URLS="1")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "1 feed polled (1 changed, 0 not modified, 0 unchanged), 0 failed; 3 new items, 1 alert",
        "2 new matching items recorded without an alert, being the backlog of a feed's first "
        "poll: 1 published more than 24 h ago and 1 undated (VEILLE_FIRST_POLL_MAX_AGE_HOURS)"]


def test_a_huge_local_feed_is_refused_by_its_size(tmp_path: Path) -> None:
    huge = tmp_path / "huge.xml"
    with huge.open("wb") as f:  # 50 MB on one line (sparse: no disk is used)
        f.truncate(50 * 1024 * 1024)
    write_watchlist(tmp_path / "wl", [("Huge", huge.as_uri())])
    result = veille(tmp_path, "once")
    assert result.returncode == 1
    assert f"Huge <{huge.as_uri()}>: body exceeds 10485760 bytes" in result.stderr.splitlines()


def test_a_local_file_is_measured_before_it_is_read(tmp_path: Path) -> None:
    from bot.fetch import read_local

    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    with pytest.raises(ValueError) as info:  # the whole size: only a stat can know it
        read_local(huge, 10 * 1024 * 1024)
    assert str(info.value) == (f"{huge} is 52428800 bytes, over the 10485760-byte limit "
                               "(VEILLE_MAX_BODY_BYTES)")
    small = tmp_path / "small.xml"
    small.write_bytes(b"<rss/>")
    assert read_local(small, 1024) == b"<rss/>"


# ------------------------------------------------------------ feeds and alerts


def test_feeds_and_alerts_print_plain_lines_when_piped(tmp_path: Path, feed_server) -> None:
    long_name = "Agence de presse régionale — édition du soir, dépêches internationales"
    feed_server.set_feed("/fr.xml", rss(FR_ITEMS, "Presse Exemple"))
    feed_server.set_status("/down.xml", 503, retry_after=120)
    write_watchlist(tmp_path / "wl", [(long_name, feed_server.url("/fr.xml")),
                                      ("En panne", feed_server.url("/down.xml"))])
    veille(tmp_path, "once", VEILLE_ALLOW_PRIVATE_URLS="1")
    result = veille(tmp_path, "feeds")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and not any(c in result.stdout for c in "│┃━─┏└")
    assert lines[0].split() == ["feed", "last", "poll", "status", "items", "errors", "next",
                                "poll", "last", "error"]
    assert lines[1].startswith(long_name + "  ") and f"{NOW:%Y-%m-%d}" in lines[1]
    assert lines[2].startswith("En panne ") and lines[2].endswith("HTTP 503 Service Unavailable")
    assert lines[1].count(" UTC") == 2
    assert lines[-1] == "2 feeds, 1 failing"
    listed = veille(tmp_path, "alerts")
    [alert, total] = listed.stdout.splitlines()
    assert alert.startswith(f"{NOW:%Y-%m-%d} ") and " UTC  sent " in alert
    assert total == "1 alert since 24h"


def test_alerts_for_an_unknown_topic_is_an_error(tmp_path: Path, feed_server) -> None:
    feed_server.set_feed("/fr.xml", rss(FR_ITEMS, "Presse Exemple"))
    write_watchlist(tmp_path / "wl", [("Presse", feed_server.url("/fr.xml"))])
    veille(tmp_path, "once", VEILLE_ALLOW_PRIVATE_URLS="1")
    line = one_line_error(veille(tmp_path, "alerts", "--topic", "power-of-siberia"))
    assert line == (f"error: unknown topic 'power-of-siberia': not in {tmp_path / 'wl'} nor in "
                    "the outbox; did you mean 'power-of-siberia-2'?")
    known = veille(tmp_path, "alerts", "--topic", "joint-declaration")
    assert (known.returncode, known.stdout) == (0, "0 alerts since 24h for joint-declaration\n")


# ------------------------------------------------------------ validate


def test_validate_refuses_a_loopback_feed_unless_allowed(tmp_path: Path) -> None:
    write_watchlist(tmp_path / "wl", [("Local", "http://127.0.0.1:8080/rss")])
    refused = veille(tmp_path, "validate")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"{tmp_path / 'wl' / 'feeds.yaml'}:2:10: feed URL on a loopback address: veille "
        "refuses to fetch it unless VEILLE_ALLOW_PRIVATE_URLS=1",
        f"1 problem in {tmp_path / 'wl'}"]
    assert veille(tmp_path, "validate", VEILLE_ALLOW_PRIVATE_URLS="1").returncode == 0


# ------------------------------------------------------------ run: logs


class Running:
    """`veille run` as a child process, stderr to a file read while it runs."""

    def __init__(self, tmp_path: Path, **extra: str) -> None:
        self.err_path = tmp_path / "run-err.txt"
        with self.err_path.open("w") as err:
            self.proc = subprocess.Popen([*COMMAND, "run"], env=env_for(tmp_path, **extra),
                                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)

    @property
    def err(self) -> str:
        return self.err_path.read_text(encoding="utf-8")

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while text not in self.err:
            assert self.proc.poll() is None, self.err
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.err}"
            time.sleep(0.05)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)


def test_run_logs_feeds_by_name_warns_when_all_fail_and_reports_edits_readably(
        tmp_path: Path, feed_server) -> None:
    feed_server.set_status("/a.xml", 500)
    search = feed_server.url("/search?q=%22Force+de+Sib%C3%A9rie%22&hl=fr")
    feed_server.set_status("/search", 502)
    wl = write_watchlist(tmp_path / "wl", [("Wire A", feed_server.url("/a.xml")),
                                           ("Search B", search)])
    run = Running(tmp_path, VEILLE_ALLOW_PRIVATE_URLS="1", VEILLE_LOG_LEVEL="INFO")
    try:
        run.wait_for("every feed failing")
        polls = [x for x in run.err.splitlines() if " poll feed=" in x]
        assert len(polls) == 2
        assert any("feed=\"Wire A\" status=error http=500" in x for x in polls)
        assert not any("127.0.0.1" in x for x in polls)  # the URL only at debug level
        [warning] = [x for x in run.err.splitlines() if "every feed failing" in x]
        assert "warning every feed failing feeds=2 " in warning
        assert 'hint="the latest poll of every feed failed: is the network, a proxy or DNS down?"' \
            in warning
        (wl / "topics.yaml").write_text(TOPICS_YAML.replace(
            "query: '@pos2", "query: '(@pos2", 1), encoding="utf-8")
        run.wait_for("kept=")
    finally:
        assert run.stop() == 0
    [problem] = [x for x in run.err.splitlines() if " watchlist " in x]
    assert f"at={wl / 'topics.yaml'}:" in problem
    assert "problem=\"topic 'power-of-siberia-2': query: " in problem
    assert "\\n" not in problem and "^" not in problem


def test_the_all_failed_warning_comes_once_and_again_after_a_recovery() -> None:
    from types import SimpleNamespace

    from bot.model import FeedSpec
    from bot.pipeline import PollOutcome
    from bot.scheduler import Runner

    feeds = [FeedSpec(url=f"https://{n}.example/rss", name=n) for n in ("a", "b")]
    runner = Runner.__new__(Runner)  # only the bookkeeping of poll outcomes is exercised
    runner.app, runner.failed, runner.warned_all_failed = SimpleNamespace(
        feeds=lambda: feeds), {}, False
    down = [PollOutcome(f, "error", error="connection failed") for f in feeds]
    up = PollOutcome(feeds[0], "new", http_status=200)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("veille.scheduler")  # "veille" may not propagate (setup_logging)
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.WARNING  # whatever a CLI run in-process set
    warnings = lambda: [r for r in seen if r.getMessage() == "every feed failing"]  # noqa: E731
    for url, outcome in [(feeds[0].url, down[0]), (feeds[0].url, down[0])]:
        runner._all_failed_check(url, outcome)
    assert warnings() == []  # b has not failed yet
    for url, outcome in [(feeds[1].url, down[1]), (feeds[0].url, down[0]), (feeds[1].url, down[1])]:
        runner._all_failed_check(url, outcome)
    assert len(warnings()) == 1
    runner._all_failed_check(feeds[0].url, up)
    runner._all_failed_check(feeds[0].url, down[0])
    assert len(warnings()) == 2
    logger.removeHandler(handler)
    logger.level = level


def test_console_log_values_stay_on_one_line() -> None:
    from bot.logs import _Formatter

    record = logging.LogRecord("veille.scheduler", logging.ERROR, __file__, 1, "watchlist",
                               None, None)
    record.fields = {"problem": "query ends too early\n    a OR\n         ^", "n": 2, "k": "a=b"}
    line = _Formatter(as_json=False).format(record)
    assert line.endswith(' error   watchlist problem="query ends too early | a OR | ^" n=2 '
                         'k="a=b"')


def test_feeds_explains_an_empty_database(tmp_path: Path) -> None:
    from bot.store import Store

    Store.open(f"sqlite:///{tmp_path}/state/veille.db").close()
    result = veille(tmp_path, "feeds")
    assert (result.returncode, result.stdout) == (
        0, "0 feeds: none polled with this database yet (veille once polls them)\n")


def test_a_setting_is_shown_as_typed(tmp_path: Path) -> None:
    line = one_line_error(veille(tmp_path, "feeds", VEILLE_CONCURRENCY="[bold]many"))
    assert line == ("error: invalid setting: VEILLE_CONCURRENCY='[bold]many': Input should be "
                    "a valid integer, unable to parse string as an integer")


def test_the_poll_log_line_names_the_feed_and_its_url_only_at_debug() -> None:
    from bot.model import FeedSpec
    from bot.pipeline import PollOutcome

    outcome = PollOutcome(FeedSpec(url="https://news.example/search?q=%22gaz%22", name="Wire"),
                          "not-modified", http_status=304)
    assert outcome.log_fields()["feed"] == "Wire" and outcome.log_fields()["url"] is None
    assert outcome.log_fields(url=True)["url"] == "https://news.example/search?q=%22gaz%22"


def test_validate_counts_in_words(tmp_path: Path) -> None:
    one_topic = TOPICS_YAML.split("  - id: joint-declaration")[0]
    write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")], topics=one_topic)
    result = veille(tmp_path, "validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"ok: {tmp_path / 'wl'}: 1 feed, 1 topic, 2 alias groups, 0 news-search feeds")


def test_veille_test_refuses_a_local_file_over_the_body_cap_before_reading_it(
        tmp_path: Path) -> None:
    from tests.pipeline_helpers import write_watchlist

    write_watchlist(tmp_path / "wl", [("News", "https://news.example/rss")])
    big = tmp_path / "huge.xml"
    big.write_bytes(b"<rss>" + b"x" * 5000 + b"</rss>")
    done = veille(tmp_path, "test", str(big), VEILLE_MAX_BODY_BYTES="1024")
    assert done.returncode != 0
    assert "huge.xml" in done.stderr and "1024" in done.stderr.replace(",", "")
    assert "Traceback" not in done.stderr
