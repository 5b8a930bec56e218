"""Logging: one line per unit of work, key=value on a terminal or JSON in production."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in getattr(record, "fields", {}).items() if v is not None}
        ts = datetime.fromtimestamp(record.created, timezone.utc)
        if self.as_json:
            doc = {"ts": ts.isoformat(timespec="milliseconds"), "level": record.levelname.lower(),
                   "logger": record.name, "event": record.getMessage(), **fields}
            if record.exc_info:
                doc["exc"] = self.formatException(record.exc_info)
            return json.dumps(doc, ensure_ascii=False, default=str)
        pairs = " ".join(f"{k}={_show(v)}" for k, v in fields.items())
        line = f"{ts:%H:%M:%S} {record.levelname.lower():<7} {record.getMessage()} {pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()


def _show(value: object) -> str:
    """A value as key=value shows it: on one line (lines joined by ' | '), quoted if need be."""
    text = " | ".join(line.strip() for line in str(value).splitlines() if line.strip())
    if not text or any(c in text for c in ' "='):
        return json.dumps(text, ensure_ascii=False)
    return text


def setup_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Send veille's log lines to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json"))
    root = logging.getLogger("veille")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
