"""memory.py against the real glibc of this machine: the calls apply, and a trim after a
large free gives memory back (read from /proc, not timed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot import memory

pytestmark = pytest.mark.skipif(memory._LIBC is None, reason="glibc's malloc only (Linux)")


def test_limit_arenas_applies() -> None:
    assert memory.limit_arenas(2) is True


def test_trim_gives_freed_memory_back_to_the_system() -> None:
    # in a fresh process: many small blocks freed leave the heap large until trimmed
    code = """
import gc
from bot import memory

def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096 // 2**20

blocks = [bytearray(2000) for _ in range(100_000)]
keep = blocks[-1]
del blocks
gc.collect()
before = rss()
memory.trim()
print(before, rss())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    before, after = map(int, done.stdout.split())
    assert after < before - 50, (before, after)  # ~200 MB of small blocks, mostly returned
