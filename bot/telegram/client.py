"""The python-telegram-bot Application, built once, and PTB's errors mapped once.

PTB (22.x) is the well-kept client: it speaks the Bot API, parses answers into
exceptions and long-polls getUpdates; everything is injected through ApplicationBuilder
(base_url for tests and self-hosted Bot API servers, our pacer as its rate limiter).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from telegram import error as tg
from telegram.ext import Application, ApplicationBuilder, BaseRateLimiter

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 20.0


def build_application(token: str, api_url: str, *, rate_limiter: BaseRateLimiter | None = None,
                      read_timeout: float = READ_TIMEOUT) -> Application:
    """An Application aimed at api_url (".../bot"), without PTB's own job queue or updater
    defaults beyond long polling; start it with initialize()/start() in our event loop."""
    builder = (ApplicationBuilder().token(token).base_url(api_url)
               .connect_timeout(CONNECT_TIMEOUT).read_timeout(read_timeout)
               .write_timeout(read_timeout).pool_timeout(read_timeout)
               .connection_pool_size(64).get_updates_read_timeout(read_timeout + 30)
               .job_queue(None))
    if rate_limiter is not None:
        builder = builder.rate_limiter(rate_limiter)
    return builder.build()


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed Bot API call means for a delivery.

    kind: "flood" (wait retry_after, then retry), "transient" (retry with backoff),
    "gone" (the chat blocked or removed the bot: deactivate it), "moved" (the group became a
    supergroup: new_chat), "format" (entities or length: resend as plain text once),
    "not_modified" (an edit changed nothing), "missing" (the message to edit is gone),
    "rejected" (any other BadRequest: this delivery fails for good).
    """

    kind: str
    reason: str
    retry_after: float = 0.0
    new_chat: int | None = None


_FORMAT = ("can't parse entities", "message is too long", "message text is empty",
           "can't find end", "unsupported start tag", "text must be non-empty")


def classify(exc: BaseException) -> Failure:
    """Map a PTB exception to a Failure (the only place that knows PTB's error tree)."""
    reason = str(exc)
    low = reason.lower()
    if isinstance(exc, tg.RetryAfter):
        with warnings.catch_warnings():  # PTB 22.2+ warns that the type becomes timedelta
            warnings.simplefilter("ignore")
            return Failure("flood", reason, retry_after=_seconds(exc.retry_after))
    if isinstance(exc, tg.ChatMigrated):
        return Failure("moved", reason, new_chat=int(exc.new_chat_id))
    if isinstance(exc, tg.Forbidden):
        return Failure("gone", reason)
    if isinstance(exc, tg.BadRequest):
        if "chat not found" in low:
            return Failure("gone", reason)
        if "not modified" in low:
            return Failure("not_modified", reason)
        if "message to edit not found" in low or "message can't be edited" in low:
            return Failure("missing", reason)
        if any(marker in low for marker in _FORMAT):
            return Failure("format", reason)
        return Failure("rejected", reason)
    if isinstance(exc, tg.InvalidToken):
        return Failure("transient", "the bot token was refused (check VEILLE_TELEGRAM_TOKEN)")
    if isinstance(exc, tg.Conflict):
        return Failure("transient", reason)
    # TimedOut, NetworkError (5xx, connection errors) and anything unexpected: retry later
    return Failure("transient", reason or type(exc).__name__)


def _seconds(value: Any) -> float:
    """retry_after is an int or a timedelta depending on PTB's settings."""
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)
