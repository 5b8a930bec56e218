"""Shared fixtures: the real corpus, a loopback-only network, PostgreSQL."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("VEILLE_CORPUS", REPO.parent / "shared" / "corpus" / "feeds"))
PG_URL = os.environ.get("VEILLE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

pytest_plugins = ["tests.feedserver"]


CORPUS_MISSING = f"real feed corpus not found at {CORPUS} (set VEILLE_CORPUS)"
PG_MISSING = f"PostgreSQL unreachable at {PG_URL} (set VEILLE_TEST_POSTGRES_URL)"


def require_or_skip(reason: str) -> NoReturn:
    """Skip for want of a resource; under CI (CI set) fail instead, so CI never goes green
    having run part of the suite. Every test that needs the corpus or PostgreSQL ends here."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and a resource the tests need is missing: {reason}",
                    pytrace=False)
    pytest.skip(reason)


def corpus_files() -> list[Path]:
    """Every file of the real corpus, or [] when it is absent."""
    return sorted(CORPUS.iterdir()) if CORPUS.is_dir() else []


def corpus_params() -> list:
    """corpus_files() for parametrize: without the corpus, one placeholder case marked
    `corpus`, which skips (fails under CI) with the reason instead of vanishing."""
    if CORPUS.is_dir():
        return corpus_files()
    return [pytest.param(CORPUS / "absent", id="corpus-absent", marks=pytest.mark.corpus)]


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        require_or_skip(CORPUS_MISSING)
    return CORPUS


@pytest.fixture(autouse=True)
def _corpus_marked(request: pytest.FixtureRequest) -> None:
    """A test marked `corpus` needs the corpus, whether or not it asks for the fixture."""
    if request.node.get_closest_marker("corpus") and not CORPUS.is_dir():
        require_or_skip(CORPUS_MISSING)


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost",):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths (PostgreSQL socket) are local


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a non-loopback address fails loudly."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(address: object) -> None:
        if not _is_loopback(address):
            raise AssertionError(f"test tried to reach the network: {address!r}")

    def connect(self: socket.socket, address: object) -> None:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        guard(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(autouse=True, scope="session")
def _warm_text_tables() -> None:
    """Build the folding tables once, so no test's timing (hypothesis deadlines) pays for it."""
    from bot.text import fold

    fold("warm")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under CI, a skipped test marked `postgres` or `corpus` is a failure, whichever fixture
    skipped it (the rule lives here, not in each file's fixtures)."""
    outcome = yield
    report = outcome.get_result()
    needs = [m for m in ("postgres", "corpus") if item.get_closest_marker(m)]
    if report.skipped and needs and os.environ.get("CI"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"CI is set and this test (marked {', '.join(needs)}) was skipped: "
                           f"{reason}")


@pytest.fixture(autouse=True)
def _fresh_veille_logger():
    """Undo setup_logging() after a test that ran a command in-process (it stops propagation
    and sets a level, which would hide the next tests' records from caplog)."""
    logger = logging.getLogger("veille")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
