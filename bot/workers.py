"""What runs in the parse processes; kept light so workers import only the parsers."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from .parse import ParsedFeed, parse_feed


@dataclass(frozen=True)
class ParseJob:
    """A picklable call of parse_feed for a process pool."""

    body: bytes
    url: str
    headers: dict
    source: str
    lang: str | None

    def __call__(self) -> ParsedFeed:
        return parse_feed(self.body, url=self.url, headers=self.headers, source=self.source,
                          lang=self.lang)


def exit_with(pid: int) -> None:
    """Pool initializer: exit when the main process is gone (even after a SIGKILL)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
