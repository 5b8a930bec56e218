"""Shared fixtures: the real corpus, a loopback-only network, PostgreSQL."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("VEILLE_CORPUS", REPO.parent / "shared" / "corpus" / "feeds"))
PG_URL = os.environ.get("VEILLE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

pytest_plugins = ["tests.feedserver"]


def corpus_files() -> list[Path]:
    """Every file of the real corpus, or [] when it is absent."""
    return sorted(CORPUS.iterdir()) if CORPUS.is_dir() else []


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"real feed corpus not found at {CORPUS} (set VEILLE_CORPUS)")
    return CORPUS


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
