"""A fake Telegram Bot API on 127.0.0.1 that answers as Telegram does, for tests and benchmarks.

It serves `/bot<token>/<method>` over real HTTP from a background thread, so the real
python-telegram-bot client (in the test's event loop) and separate `veille run` processes
(VEILLE_TELEGRAM_API_URL=fake.base_url) talk to it alike. A fake that accepts anything proves
nothing: this one refuses what Telegram refuses, with Telegram's status codes and words
(../shared/telegram-bot-api.md; the HTML parser is a port of TDLib's `parse_html`, which the
Bot API server runs).

    fake = FakeBotAPI(strict=True, clock=clock).start()    # or the `fake_bot` fixture
    fake.add_chat(42, "private", first_name="Ana", language_code="fr")
    fake.add_chat(-100777, "channel", title="Veille", username="veille_news")
    bot = telegram.Bot(fake.token, base_url=fake.base_url)
    fake.user_sends(42, "/subscribe ports")           # an update for getUpdates
    fake.wait_for(lambda: fake.sent_count(42) == 1)   # never sleep in a test
    fake.messages(42)[-1].text, fake.user_presses(42, message_id, "mute:ports")
    fake.fail("sendMessage", chat_id=42, error="retry_after", retry_after=7, times=1)
    fake.stop()

What it does
- Methods (names case-insensitive; GET/POST; query string, urlencoded, JSON or multipart):
  getMe, sendMessage, sendPhoto, editMessageText, editMessageReplyMarkup, deleteMessage,
  answerCallbackQuery, getUpdates (offset, limit, allowed_updates, real long polling, 409 to
  the older of two concurrent polls), setMyCommands/getMyCommands/deleteMyCommands,
  setWebhook/deleteWebhook/getWebhookInfo, sendChatAction, getChat, close, logOut.
  A wrong token answers 401 (404 if it is not even shaped like one); unknown methods 404.
- Text as Telegram checks it: parse_mode HTML with TDLib's tag rules and error texts (byte
  offsets in UTF-8), entities computed from the HTML, 1-4096 UTF-16 code units after parsing
  and trimming (captions 0-1024), inline keyboards (callback_data 1-64 bytes), "message is
  not modified", "message to edit/delete not found".
- `strict_html=True` (default) goes one step beyond Telegram: a bare "&" or ">" that Telegram
  would show as typed is refused ("can't parse entities: Unescaped ..."), because an
  unescaped feed string is a rendering bug even when Telegram lets it through.
- `strict=True`: token buckets per Telegram's FAQ. Per chat 1 msg/s with a burst of 3, all
  chats 30 msg/s (bucket 30), each group/supergroup/channel 20 msg/min (bucket 20). Only
  sends count (sendMessage, sendPhoto); edits do not. A send over a limit is not delivered and
  answers 429 "Too Many Requests: retry after N" (N = ceil of the wait, at least 1), counted in
  `too_many_requests`. The buckets read the injectable `clock` (seconds); long polling and
  `wait_for` use real time.
- Faults: `fail(method, chat_id=None, error=..., times=1, ...)` (see `fail`), a permanent
  `migrate_chat`, `user_blocks`.
- A simulated user: `user_sends` (commands carry bot_command entities), `user_presses`
  (a callback_query for a button that is really on the message), `user_blocks`.
- Records: `calls`, `messages(chat)`, `sent_count`, `callback_answers`, `commands`,
  `too_many_requests`, `bugs`; `wait_for(predicate)` / `await until(predicate)` block on a
  condition.

Not modelled: MarkdownV2/Markdown (refused with a clear 400), inline messages, TDLib's entity
normalisation after parsing (merging adjacent entities, splitting overlaps), automatic url /
mention / hashtag entities (only bot commands in user messages), media other than photos.

Use from a test module (tests/conftest.py is not ours to edit):

    from tests.fakebot import FakeBotAPI, fake_bot  # noqa: F401  (fake_bot is a fixture)
"""

from __future__ import annotations

import asyncio
import copy
import email.parser
import email.policy
import hashlib
import http.server
import itertools
import json
import math
import re
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import pytest

DEFAULT_TOKEN = "123456:TEST-token"
TEXT_LIMIT = 4096  # UTF-16 code units after entity parsing
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64  # bytes

# Strict-mode buckets: (capacity, tokens per second).
PER_CHAT_BUCKET = (3.0, 1.0)
GLOBAL_BUCKET = (30.0, 30.0)
GROUP_BUCKET = (20.0, 20.0 / 60.0)
_EPSILON = 1e-9  # float dust: 20 - 29 + 29/3 tokens must read as 2/3, not 0.66666666664

METHODS = (
    "getMe", "sendMessage", "sendPhoto", "editMessageText", "editMessageReplyMarkup",
    "deleteMessage", "answerCallbackQuery", "getUpdates", "setMyCommands", "getMyCommands",
    "deleteMyCommands", "setWebhook", "deleteWebhook", "getWebhookInfo", "sendChatAction",
    "getChat", "close", "logOut",
)
_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_CHAT_KINDS = ("private", "group", "supergroup", "channel")
_DEFAULT_UPDATES = frozenset(
    {"message", "edited_message", "channel_post", "edited_channel_post", "callback_query",
     "my_chat_member", "inline_query", "chosen_inline_result", "shipping_query",
     "pre_checkout_query", "poll", "poll_answer", "chat_join_request"}
)
_CHAT_ACTIONS = frozenset(
    {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
     "upload_document", "choose_sticker", "find_location", "record_video_note",
     "upload_video_note"}
)
_JSON_PARAMS = frozenset(
    {"reply_markup", "link_preview_options", "entities", "caption_entities", "commands",
     "scope", "allowed_updates", "reply_parameters"}
)
_STALE_QUERY = "Bad Request: query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
FAULTS = {  # error -> (status, description)
    "retry_after": (429, "Too Many Requests: retry after {retry_after}"),
    "server_error": (500, "Internal Server Error"),
    "bad_gateway": (502, "Bad Gateway"),
    "timeout": (504, "Gateway Timeout"),
    "blocked": (403, "Forbidden: bot was blocked by the user"),
    "kicked": (403, "Forbidden: bot was kicked from the group chat"),
    "deactivated": (403, "Forbidden: user is deactivated"),
    "not_found": (400, "Bad Request: chat not found"),
    "migrated": (400, "Bad Request: group chat was upgraded to a supergroup chat"),
    "bad_request": (400, "Bad Request: wrong parameters"),
}
_KICKED = {
    "supergroup": "Forbidden: bot was kicked from the supergroup chat",
    "channel": "Forbidden: bot is not a member of the channel chat",
}


class ApiError(Exception):
    """An answer {"ok": false, ...} with this HTTP status, description and parameters."""

    def __init__(self, status: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters

    def payload(self) -> dict:
        """The JSON body Telegram sends for this error."""
        body: dict[str, Any] = {"ok": False, "error_code": self.status,
                                "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


# -- HTML entity parser (a port of TDLib's parse_html, MessageEntity.cpp) -----------------

_SPACE = frozenset(b" \t\r\n\0\v")  # TDLib's is_space (NUL included: it ends C strings)
_TAGS = frozenset(
    "a b strong i em s strike del u ins tg-spoiler tg-emoji span pre code blockquote".split()
)
_SIMPLE = {"i": "italic", "em": "italic", "b": "bold", "strong": "bold", "s": "strikethrough",
           "strike": "strikethrough", "del": "strikethrough", "u": "underline",
           "ins": "underline", "tg-spoiler": "spoiler"}
_PRIORITY = {"blockquote": 0, "expandable_blockquote": 0, "pre": 11, "code": 20,
             "text_link": 49, "bold": 90, "italic": 91, "underline": 92, "strikethrough": 93,
             "spoiler": 94, "custom_emoji": 99}
_NAMED = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}


class EntityParseError(ValueError):
    """The text is not valid Telegram HTML; str() is Telegram's reason."""


def _decode_entity(src: bytes, pos: int) -> tuple[int, int]:
    """(code point, position after) of the character reference at src[pos] == '&'; 0 if none."""
    end, code = pos + 1, 0
    if src[end] == 0x23:  # '#'
        end += 1
        if src[end] == 0x78:  # 'x' (TDLib accepts only the lowercase one)
            end += 1
            while chr(src[end]) in "0123456789abcdefABCDEF":
                code = code * 16 + int(chr(src[end]), 16)
                end += 1
        else:
            while 0x30 <= src[end] <= 0x39:
                code = code * 10 + src[end] - 0x30
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while chr(src[end]).isascii() and chr(src[end]).isalpha():
            end += 1
        named = _NAMED.get(src[pos + 1 : end])
        if named is None:
            return 0, pos
        code = ord(named)
    return code, end + 1 if src[end] == 0x3B else end


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _checked_link(url: str) -> str | None:
    """The URL Telegram keeps for a text_link, or None when it drops the entity."""
    url = url.strip()
    if not url:
        return None
    if "://" not in url and not url.startswith(("tg:", "ton:")):
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme.lower() in ("tg", "ton"):
        return url
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname
    if not re.fullmatch(r"[\w.-]+", host) or ("." not in host and host != "localhost"):
        return None
    return url


class _HtmlParser:
    """One pass over the UTF-8 bytes, as TDLib does; offsets of errors are byte offsets."""

    def __init__(self, html: str, strict: bool) -> None:
        self.data = html.encode("utf-8")
        self.src = self.data + b"\0"  # TDLib reads a NUL-terminated string
        self.strict = strict
        self.out = bytearray()
        self.u16 = 0
        self.entities: list[dict] = []
        self.stack: list[list] = []  # [tag, argument, utf16 offset, output byte position]
        self.surrogates = False

    def parse(self) -> tuple[str, list[dict]]:
        i, n, src = 0, len(self.data), self.src
        while i < n:
            c = src[i]
            if c == 0x26:  # '&'
                code, end = _decode_entity(src, i)
                if code:
                    self._append_code(code)
                    i = end
                    continue
                self._refuse_bare("&", i)
            if c != 0x3C:  # not '<'
                if c == 0x3E:
                    self._refuse_bare(">", i)
                if c & 0xC0 != 0x80:  # first byte of a character
                    self.u16 += 2 if c >= 0xF0 else 1
                self.out.append(c)
                i += 1
                continue
            i = self._end_tag(i) if src[i + 1] == 0x2F else self._start_tag(i)
        if self.stack:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"'
            )
        try:
            text = self.out.decode("utf-8")
        except UnicodeDecodeError:
            raise EntityParseError(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            ) from None
        for entity in self.entities:
            entity.pop("_argument", None)
        self.entities.sort(key=lambda e: (e["offset"], -e["length"], _PRIORITY[e["type"]]))
        return text, self.entities

    def _refuse_bare(self, char: str, offset: int) -> None:
        """strict: a bare & or > is a rendering bug, even where Telegram shows it as typed."""
        if self.strict:
            escaped = "&amp;" if char == "&" else "&gt;"
            raise EntityParseError(
                f'Unescaped "{char}" at byte offset {offset} (strict fake: write {escaped})'
            )

    def _append_code(self, code: int) -> None:
        self.u16 += 2 if code > 0xFFFF else 1
        self.out += chr(code).encode("utf-8", "surrogatepass")

    def _start_tag(self, begin: int) -> int:
        src, i = self.src, begin + 1
        while src[i] not in _SPACE and src[i] != 0x3E:
            i += 1
        if src[i] == 0:
            raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
        tag = src[begin + 1 : i].decode("utf-8", "replace").lower()
        if tag not in _TAGS:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
        argument = ""
        while src[i] != 0x3E:
            while src[i] != 0 and src[i] in _SPACE:
                i += 1
            if src[i] == 0x3E:
                break
            name_begin = i
            while src[i] not in _SPACE and src[i] not in b"=>/\"'":
                i += 1
            name = src[name_begin:i]
            if not name:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset {begin}'
                )
            while src[i] != 0 and src[i] in _SPACE:
                i += 1
            if src[i] != 0x3D:  # an attribute without a value
                if src[i] == 0:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if tag == "blockquote" and name == b"expandable":
                    argument = "1"
                continue
            i += 1
            while src[i] != 0 and src[i] in _SPACE:
                i += 1
            if src[i] == 0:
                raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
            value, i = self._attribute_value(i)
            if src[i] == 0:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            argument = _tag_argument(tag, name, value, argument)
        if tag == "span" and argument != "spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {begin}'
            )
        self.stack.append([tag, argument, self.u16, len(self.out)])
        return i + 1

    def _attribute_value(self, i: int) -> tuple[str, int]:
        src = self.src
        if src[i] not in b"'\"":  # a name token: letters, digits, periods, hyphens
            begin = i
            while chr(src[i]).isascii() and (chr(src[i]).isalnum() or src[i] in b".-"):
                i += 1
            if src[i] not in _SPACE and src[i] != 0x3E:
                raise EntityParseError(f"Unexpected end of name token at byte offset {begin}")
            return src[begin:i].decode().lower(), i
        quote, i = src[i], i + 1
        value = bytearray()
        while src[i] != quote and src[i] != 0:
            if src[i] == 0x26:
                code, end = _decode_entity(src, i)
                if code:
                    value += chr(code).encode("utf-8", "surrogatepass")
                    i = end
                    continue
                self._refuse_bare("&", i)
            value.append(src[i])
            i += 1
        if src[i] == quote:
            i += 1
        return value.decode("utf-8", "replace"), i

    def _end_tag(self, begin: int) -> int:
        src = self.src
        if not self.stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
        i = begin + 2
        while src[i] not in _SPACE and src[i] != 0x3E:
            i += 1
        end_name = src[begin + 2 : i].decode("utf-8", "replace").lower()
        while src[i] in _SPACE and src[i] != 0:
            i += 1
        if src[i] != 0x3E:
            raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
        tag, argument, offset, out_pos = self.stack[-1]
        if end_name and end_name != tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", '
                f'found "</{end_name}>"'
            )
        if self.u16 > offset:
            self._close(tag, argument, offset, self.u16 - offset, out_pos)
        self.stack.pop()
        return i + 1

    def _close(self, tag: str, argument: str, offset: int, length: int, out_pos: int) -> None:
        span = {"offset": offset, "length": length}
        last = self.entities[-1] if self.entities else None
        same = last is not None and (last["offset"], last["length"]) == (offset, length)
        if tag in _SIMPLE or tag == "span":
            self.entities.append({**span, "type": _SIMPLE.get(tag, "spoiler")})
        elif tag == "tg-emoji":
            if not re.fullmatch(r"-?\d+", argument or "") or int(argument) == 0:
                raise EntityParseError("Invalid custom emoji identifier specified")
            self.entities.append({**span, "type": "custom_emoji", "custom_emoji_id": argument})
        elif tag == "a":
            url = _checked_link(argument or self.out[out_pos:].decode("utf-8", "replace"))
            if url is not None:
                self.entities.append({**span, "type": "text_link", "url": url})
        elif tag == "pre":
            if same and last["type"] == "code" and last.get("_argument"):
                last["type"], last["language"] = "pre", last["_argument"]
            else:
                self.entities.append({**span, "type": "pre"})
        elif tag == "code":
            if same and last["type"] == "pre" and "language" not in last and argument:
                last["language"] = argument
            else:
                self.entities.append({**span, "type": "code", "_argument": argument})
        else:  # blockquote
            kind = "expandable_blockquote" if argument else "blockquote"
            self.entities.append({**span, "type": kind})


def _tag_argument(tag: str, name: bytes, value: str, argument: str) -> str:
    """The argument TDLib keeps from one attribute of a start tag."""
    if tag == "a" and name == b"href":
        return value
    if tag == "code" and name == b"class" and value.startswith("language-"):
        return value[9:]
    if tag == "span" and name == b"class" and value.startswith("tg-"):
        return value[3:]
    if tag == "tg-emoji" and name == b"emoji-id":
        return value
    if tag == "blockquote" and name == b"expandable":
        return "1"
    return argument


def parse_html(html: str, *, strict: bool = False) -> tuple[str, list[dict]]:
    """(plain text, Bot API entities) of Telegram HTML; raises EntityParseError as Telegram."""
    return _HtmlParser(html, strict).parse()


def trim(text: str, entities: list[dict]) -> tuple[str, list[dict]]:
    """Strip leading/trailing whitespace as Telegram does, moving and clipping entities."""
    stripped = text.strip(" \t\r\n")
    if stripped == text:
        return text, entities
    lead = _utf16_len(text[: len(text) - len(text.lstrip(" \t\r\n"))])
    total = _utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


_COMMAND = re.compile(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]*)?")


def bot_command_entities(text: str) -> list[dict]:
    """bot_command entities as Telegram finds them in a user's message (TDLib's rules)."""
    entities = []
    for match in _COMMAND.finditer(text):
        start, end = match.span()
        before = text[start - 1] if start else ""
        after = text[end] if end < len(text) else ""
        command = match.group(0).split("@")[0]
        mention = match.group(1)
        if before and (before.isalnum() or before in "_/<>"):
            continue
        if not 2 <= len(command) <= 65 or (mention is not None and not 4 <= len(mention) <= 33):
            continue
        if after and (after.isalnum() or after in "_/<>"):
            continue
        entities.append({"offset": _utf16_len(text[:start]),
                         "length": _utf16_len(match.group(0)), "type": "bot_command"})
    return entities


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A file sent as a multipart part."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Call:
    """One request the fake answered."""

    method: str  # canonical spelling, e.g. "sendMessage"
    params: dict
    status: int  # 0: no answer was sent (a timeout fault, or stopping)
    description: str | None  # None when ok
    chat_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Message:
    """The current state of one message in a chat (a copy is handed to tests)."""

    chat_id: int
    message_id: int
    date: int
    text: str  # plain text after entity parsing (the caption for a photo)
    html: str  # as sent
    entities: list[dict] = field(default_factory=list)
    parse_mode: str | None = None
    reply_markup: dict | None = None
    disable_notification: bool = False
    link_preview_options: dict | None = None
    disable_web_page_preview: bool | None = None
    message_thread_id: int | None = None
    edited: int = 0
    deleted: bool = False
    photo: bool = False
    photo_sizes: list[dict] | None = None
    from_bot: bool = True
    user: dict | None = None  # the sender, for a user's message
    edit_date: int | None = None

    def buttons(self) -> list[dict]:
        """Every inline button on the message, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


@dataclass
class Chat:
    """A chat the fake knows."""

    id: int
    kind: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    language_code: str = "en"
    is_forum: bool = False
    topics: frozenset[int] | None = None
    blocked: bool = False
    migrated_to: int | None = None
    next_message_id: int = 1
    messages: dict[int, Message] = field(default_factory=dict)

    def as_json(self) -> dict:
        """The Chat object Telegram embeds in a Message."""
        body: dict[str, Any] = {"id": self.id}
        if self.kind == "private":
            body["first_name"] = self.first_name
        else:
            body["title"] = self.title
        if self.username:
            body["username"] = self.username
        if self.kind == "group":
            body["all_members_are_administrators"] = True
        if self.is_forum:
            body["is_forum"] = True
        body["type"] = self.kind
        return body


@dataclass
class Fault:
    """An injected failure for a method (and chat), `times` more times (None: forever)."""

    method: str
    chat_id: str | None
    error: str
    times: int | None
    retry_after: int
    delay: float
    description: str | None
    deliver: bool


class TokenBucket:
    """capacity tokens, refilled at `rate` per second of the injected clock."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate, self.tokens, self.stamp = capacity, rate, capacity, now

    def wait(self, now: float) -> float:
        """Seconds until one token is there (0 if one is there now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        missing = 1 - self.tokens
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def take(self) -> None:
        self.tokens -= 1


# -- the server ------------------------------------------------------------------------------


class FakeBotAPI:
    """The Bot API on 127.0.0.1:<free port>, with chats, a simulated user and records."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        strict: bool = False,
        clock: Callable[[], float] = time.monotonic,
        *,
        strict_html: bool = True,
    ) -> None:
        self.token = token
        self.strict = strict
        self.strict_html = strict_html
        self.port = 0
        self._clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.bot_id = int(token.split(":")[0]) if token.split(":")[0].isdigit() else 1
        self._chats: dict[int, Chat] = {}
        self._calls: list[Call] = []
        self._faults: list[Fault] = []
        self._updates: list[dict] = []
        self._update_ids = itertools.count(100_001)
        self._query_ids = itertools.count(7_000_001)
        self._open_queries: dict[str, tuple[int, int]] = {}
        self._answers: list[dict] = []
        self._commands: dict[tuple[str, str], list[dict]] = {}
        self._files: dict[str, list[dict]] = {}  # file_id -> the photo's sizes
        self._allowed = _DEFAULT_UPDATES
        self._webhook = ""
        self._poll_generation = 0
        self._polls_waiting = 0
        self._buckets: dict[object, TokenBucket] = {}
        self._too_many = 0
        self._bugs: list[str] = []  # tracebacks of the fake's own failures
        self._methods: dict[str, tuple[str, Callable[[dict], Any]]] = {
            name.lower(): (name, getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()))
            for name in METHODS
        }

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """What PTB's base_url (and VEILLE_TELEGRAM_API_URL) takes: the token follows it."""
        return f"http://127.0.0.1:{self.port}/bot"

    def start(self) -> Self:
        """Serve in a background thread; returns self once the port is bound.

        After stop(), start() serves the same state on the same port (a Telegram outage).
        """
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.api = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fakebot", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: long polls and delays end at once, open connections close."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
            connections = list(self._connections)
        server.shutdown()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        assert self._thread is not None
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- setting the scene -----------------------------------------------------------------
    def add_chat(
        self,
        chat_id: int,
        kind: str = "private",
        *,
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
        language_code: str = "en",
        is_forum: bool = False,
        topics: tuple[int, ...] | None = None,
    ) -> dict:
        """Make a chat exist; returns its Chat JSON. topics: the only thread ids a forum has."""
        if kind not in _CHAT_KINDS:
            raise ValueError(f"chat kind must be one of {_CHAT_KINDS}, not {kind!r}")
        if (kind == "private") != (chat_id > 0):
            raise ValueError(f"chat {chat_id}: private chats have positive ids, others negative")
        if is_forum and kind != "supergroup":
            raise ValueError(f"chat {chat_id}: only a supergroup can be a forum")
        default_title = None if kind == "private" else f"Chat {chat_id}"
        chat = Chat(
            id=chat_id, kind=kind, title=title or default_title,
            username=username.lstrip("@") if username else None,
            first_name=first_name or ("Tester" if kind == "private" else None),
            language_code=language_code, is_forum=is_forum,
            topics=frozenset(topics) if topics is not None else None,
        )
        with self._cond:
            self._chats[chat_id] = chat
            return chat.as_json()

    def fail(
        self,
        method: str,
        chat_id: int | str | None = None,
        error: str = "server_error",
        times: int | None = 1,
        *,
        retry_after: int = 7,
        migrate_to: int | None = None,
        delay: float | None = None,
        description: str | None = None,
        deliver: bool = False,
    ) -> None:
        """Make `method` (for chat_id, or any chat) fail `times` more times (None: forever).

        error: retry_after (429 + parameters.retry_after), server_error (500), bad_gateway
        (502), timeout (no answer for `delay`, default 10 s, past PTB's 5 s read timeout; with
        deliver=True the request is then carried out, as when Telegram is only slow),
        blocked / kicked / deactivated (403), not_found (400 chat not found), bad_request
        (400, `description`), migrated (permanent, as in Telegram: see migrate_chat).
        delay: seconds to wait before answering, for any error. description overrides the text.
        """
        if error not in FAULTS:
            raise ValueError(f"unknown fault {error!r}; one of {sorted(FAULTS)}")
        if error == "migrated":
            if chat_id is None:
                raise ValueError("a migration needs the chat_id of the group")
            self.migrate_chat(int(chat_id), migrate_to)
            return
        if delay is None:
            delay = 10.0 if error == "timeout" else 0.0
        with self._cond:
            self._faults.append(Fault(
                method.lower(), None if chat_id is None else str(chat_id), error, times,
                retry_after, delay, description, deliver,
            ))

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        with self._cond:
            self._faults.clear()

    def migrate_chat(self, chat_id: int, new_id: int | None = None) -> int:
        """Upgrade a group to a supergroup: the old id answers 400 + migrate_to_chat_id."""
        with self._cond:
            old = self._require_chat(chat_id)
            if old.kind != "group":
                raise ValueError(f"chat {chat_id} is a {old.kind}; only groups migrate")
            new_id = new_id if new_id is not None else int(f"-100{abs(chat_id)}")
            self._chats[new_id] = Chat(id=new_id, kind="supergroup", title=old.title,
                                       language_code=old.language_code)
            old.migrated_to = new_id
            user = self._user_json(old, None, None)
            self._push("message", self._user_message(old, "", user, None,
                                                     extra={"migrate_to_chat_id": new_id}))
            self._push("message", self._user_message(self._chats[new_id], "", user, None,
                                                     extra={"migrate_from_chat_id": chat_id}))
            return new_id

    # -- the simulated user ----------------------------------------------------------------
    def user_sends(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        language_code: str | None = None,
        message_thread_id: int | None = None,
    ) -> dict:
        """A user writes in a chat (a post, in a channel): queued for getUpdates; returns it."""
        with self._cond:
            chat = self._require_chat(chat_id)
            user = self._user_json(chat, user_id, language_code)
            message = self._user_message(chat, text, user, message_thread_id)
            self._push("channel_post" if chat.kind == "channel" else "message", message)
            return message

    def user_presses(
        self, chat_id: int, message_id: int, data: str, user_id: int | None = None
    ) -> str:
        """A user presses the inline button carrying `data`; returns the callback query id."""
        with self._cond:
            chat = self._require_chat(chat_id)
            message = chat.messages.get(message_id)
            if message is None or message.deleted:
                raise ValueError(f"chat {chat_id} has no message {message_id} to press on")
            if not any(b.get("callback_data") == data for b in message.buttons()):
                raise ValueError(
                    f"message {message_id} in chat {chat_id} has no button {data!r}; it has "
                    f"{[b.get('callback_data') for b in message.buttons()]}"
                )
            query_id = str(next(self._query_ids))
            self._open_queries[query_id] = (chat.id, message_id)
            self._push("callback_query", {
                "id": query_id,
                "from": self._user_json(chat, user_id, None),
                "message": self._message_json(chat, message),
                "chat_instance": str(abs(chat.id) * 7_919 + self.bot_id),
                "data": data,
            })
            return query_id

    def user_blocks(self, chat_id: int, blocked: bool = True) -> None:
        """The user blocks the bot (or unblocks it): sends answer 403 from now on."""
        with self._cond:
            chat = self._require_chat(chat_id)
            chat.blocked = blocked
            user = self._user_json(chat, None, None)
            bot = self._bot_user()
            member = {"status": "member", "user": bot}
            kicked = {"status": "kicked", "user": bot, "until_date": 0}
            self._push("my_chat_member", {
                "chat": chat.as_json(), "from": user, "date": int(time.time()),
                "old_chat_member": member if blocked else kicked,
                "new_chat_member": kicked if blocked else member,
            })

    # -- records ---------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        """Every request answered, in order."""
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str, chat_id: int | None = None) -> list[Call]:
        """The calls to one method (any spelling), optionally for one chat."""
        return [c for c in self.calls if c.method.lower() == method.lower()
                and (chat_id is None or c.chat_id == chat_id)]

    def messages(self, chat_id: int | str, *, include_users: bool = False) -> list[Message]:
        """Copies of the chat's messages in order: the bot's (and users' if asked), deleted too."""
        with self._cond:
            chat = self._resolve(chat_id)
            if chat is None:
                raise KeyError(f"no chat {chat_id!r}")
            return [copy.deepcopy(m) for m in chat.messages.values()
                    if m.from_bot or include_users]

    def sent_count(self, chat_id: int | str | None = None) -> int:
        """Messages the bot delivered (to one chat, or all), deleted ones included."""
        with self._cond:
            chats = self._chats.values() if chat_id is None else [self._resolve(chat_id)]
            return sum(1 for c in chats if c for m in c.messages.values() if m.from_bot)

    @property
    def callback_answers(self) -> list[dict]:
        """answerCallbackQuery calls accepted, as {callback_query_id, text, show_alert, ...}."""
        with self._cond:
            return copy.deepcopy(self._answers)

    @property
    def commands(self) -> dict[tuple[str, str], list[dict]]:
        """setMyCommands state: (scope, language_code) -> [{command, description}].

        scope is "default", "all_private_chats", ..., or "chat:<id>" / "chat_member:<id>:<user>".
        """
        with self._cond:
            return copy.deepcopy(self._commands)

    @property
    def too_many_requests(self) -> int:
        """429s the strict limits answered (injected retry_after faults not counted)."""
        with self._cond:
            return self._too_many

    @property
    def bugs(self) -> list[str]:
        """Tracebacks of requests the fake itself failed on (answered 500): should be empty."""
        with self._cond:
            return list(self._bugs)

    @property
    def polls_waiting(self) -> int:
        """getUpdates requests held open right now (long polling)."""
        with self._cond:
            return self._polls_waiting

    @property
    def pending_updates(self) -> list[dict]:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        with self._cond:
            return copy.deepcopy(self._updates)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Block until predicate() is truthy (re-checked on every change); returns its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"fake Bot API: condition not met in {timeout}s\n"
                                         + self.dump())
                self._cond.wait(remaining)

    async def until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """wait_for, without blocking the event loop the bot under test runs in."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    def dump(self, last: int = 20) -> str:
        """The last calls and every chat's messages, for failure messages."""
        with self._cond:
            lines = [f"last {min(last, len(self._calls))} of {len(self._calls)} calls:"]
            for c in self._calls[-last:]:
                shown = {k: v for k, v in c.params.items() if k != "text"}
                text = str(c.params.get("text", ""))[:60]
                lines.append(f"  {c.method} chat={c.chat_id} -> {c.status} "
                             f"{c.description or 'ok'} {shown} {text!r}")
            for chat in self._chats.values():
                bot = [m for m in chat.messages.values() if m.from_bot]
                lines.append(f"chat {chat.id} ({chat.kind}): {len(bot)} bot messages"
                             + "".join(f"\n  #{m.message_id}{' (deleted)' if m.deleted else ''}"
                                       f" {m.text[:60]!r}" for m in bot[-5:]))
            lines.append(f"pending updates: {len(self._updates)}; 429s: {self._too_many}")
            return "\n".join(lines)

    # -- HTTP entry point ------------------------------------------------------------------
    def handle(self, verb: str, target: str, content_type: str, body: bytes) -> tuple[int, dict]:
        """Answer one HTTP request: (status, JSON body). Called from the handler threads."""
        parts = urlsplit(target)
        match = re.fullmatch(r"/bot([^/]*)/([^/]+)", parts.path)
        if match is None:
            return 404, ApiError(404, "Not Found").payload()
        token, name = match.groups()
        if token != self.token:
            if _TOKEN_SHAPE.match(token):
                return 401, ApiError(401, "Unauthorized").payload()
            return 404, ApiError(404, "Not Found").payload()
        if name.lower() not in self._methods:
            return 404, ApiError(404, "Not Found").payload()
        method, handler = self._methods[name.lower()]
        params: dict = {}
        chat_id = None
        try:
            params = _decode_params(parts.query, content_type, body)
            chat_id = self._chat_id_of(params)
            self._apply_fault(name.lower(), params)
            with self._cond:
                result = handler(params)
            status, payload = 200, {"ok": True, "result": result}
        except ApiError as exc:
            status, payload = exc.status, exc.payload()
        except _Silence:  # recorded with status 0: the client got no answer
            status, payload = 0, {"description": "no answer (timeout fault or stopping)"}
        except Exception as exc:  # a bug in the fake: answer 500, and the fixture fails the test
            status, payload = 500, ApiError(500, f"fake Bot API bug: {exc!r}").payload()
            with self._cond:
                self._bugs.append(f"{method}: {traceback.format_exc()}")
        with self._cond:
            self._calls.append(Call(method, params, status, payload.get("description"), chat_id))
            self._cond.notify_all()
        return status, payload

    def _apply_fault(self, method: str, params: dict) -> None:
        with self._cond:
            fault = self._take_fault(method, params)
        if fault is None:
            return
        if fault.delay and self._stopping.wait(fault.delay):
            raise _Silence  # stopping: the client gets a closed connection
        if fault.error == "timeout":
            if fault.deliver:
                return
            raise _Silence
        status, text = FAULTS[fault.error]
        if fault.error == "kicked":
            with self._cond:
                chat = self._resolve(params.get("chat_id"))
            text = _KICKED.get(chat.kind, text) if chat else text
        description = fault.description or text.format(retry_after=fault.retry_after)
        if fault.error == "bad_request" and not description.startswith("Bad Request: "):
            description = "Bad Request: " + description
        extra = {"retry_after": fault.retry_after} if fault.error == "retry_after" else None
        raise ApiError(status, description, extra)

    def _take_fault(self, method: str, params: dict) -> Fault | None:
        chat = self._resolve(params.get("chat_id")) if "chat_id" in params else None
        keys = {str(params.get("chat_id"))} | ({str(chat.id)} if chat else set())
        for fault in self._faults:
            if fault.method == method and (fault.chat_id is None or fault.chat_id in keys):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _chat_id_of(self, params: dict) -> int | None:
        with self._cond:
            chat = self._resolve(params.get("chat_id")) if "chat_id" in params else None
        if chat is not None:
            return chat.id
        try:
            return int(params["chat_id"])
        except (KeyError, TypeError, ValueError):
            return None

    # -- chats, messages, updates ----------------------------------------------------------
    def _resolve(self, chat_id: object) -> Chat | None:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            name = chat_id[1:].lower()
            return next((c for c in self._chats.values()
                         if c.username and c.username.lower() == name), None)
        try:
            return self._chats.get(int(chat_id))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    def _require_chat(self, chat_id: int | str) -> Chat:
        chat = self._resolve(chat_id)
        if chat is None:
            raise KeyError(f"fake Bot API: no chat {chat_id!r}; add_chat() it first")
        return chat

    def _target(self, params: dict) -> Chat:
        """The chat a method acts on, refused as Telegram refuses it."""
        if params.get("chat_id") in (None, ""):
            raise _bad("chat_id is empty")
        chat = self._resolve(params["chat_id"])
        if chat is None:
            raise _bad("chat not found")
        if chat.migrated_to is not None:
            raise ApiError(400, FAULTS["migrated"][1], {"migrate_to_chat_id": chat.migrated_to})
        if chat.blocked:
            raise ApiError(403, FAULTS["blocked"][1])
        return chat

    def _topic(self, chat: Chat, params: dict) -> int | None:
        thread = params.get("message_thread_id")
        if thread in (None, ""):
            return None
        thread = _int(thread, "message_thread_id")
        if not chat.is_forum or (chat.topics is not None and thread not in chat.topics):
            raise _bad("message thread not found")
        return thread

    def _bot_user(self) -> dict:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Veille Test",
                "username": "veille_test_bot"}

    def _user_json(self, chat: Chat, user_id: int | None, language_code: str | None) -> dict:
        uid = user_id if user_id is not None else (chat.id if chat.kind == "private" else 4242)
        name = chat.first_name if chat.kind == "private" and uid == chat.id else f"User {uid}"
        user = {"id": uid, "is_bot": False, "first_name": name or "Tester"}
        if chat.kind == "private" and uid == chat.id and chat.username:
            user["username"] = chat.username
        user["language_code"] = language_code or chat.language_code
        return user

    def _user_message(self, chat: Chat, text: str, user: dict, thread: int | None,
                      extra: dict | None = None) -> dict:
        if thread is not None and not chat.is_forum:
            raise ValueError(f"chat {chat.id} is not a forum; it has no thread {thread}")
        message = Message(chat_id=chat.id, message_id=chat.next_message_id,
                          date=int(time.time()), text=text, html=text,
                          entities=bot_command_entities(text), message_thread_id=thread,
                          from_bot=False, user=user)
        chat.next_message_id += 1
        chat.messages[message.message_id] = message
        body = self._message_json(chat, message)
        if extra:
            body.pop("text", None)
            body.update(extra)
        return body

    def _push(self, kind: str, payload: dict) -> None:
        if kind in self._allowed:
            self._updates.append({"update_id": next(self._update_ids), kind: payload})
        self._cond.notify_all()

    def _message_json(self, chat: Chat, m: Message) -> dict:
        """A Message object, keys in Telegram's order."""
        body: dict[str, Any] = {"message_id": m.message_id}
        if m.message_thread_id is not None:
            body["message_thread_id"] = m.message_thread_id
        if chat.kind == "channel":
            body["sender_chat"] = chat.as_json()
        else:
            body["from"] = self._bot_user() if m.from_bot else m.user
        body["chat"] = chat.as_json()
        body["date"] = m.date
        if m.edit_date is not None:
            body["edit_date"] = m.edit_date
        if m.message_thread_id is not None:
            body["is_topic_message"] = True
        if m.photo:
            body["photo"] = m.photo_sizes
            if m.text:
                body["caption"] = m.text
            if m.entities:
                body["caption_entities"] = m.entities
        else:
            body["text"] = m.text
            if m.entities:
                body["entities"] = m.entities
            if m.link_preview_options:
                body["link_preview_options"] = m.link_preview_options
        if m.reply_markup and "inline_keyboard" in m.reply_markup:
            body["reply_markup"] = m.reply_markup
        return body

    def _format(self, params: dict, key: str, limit: int, *, empty_ok: bool) -> tuple[str, list]:
        """(plain text, entities) of a text or caption, checked as Telegram checks it."""
        raw = params.get(key)
        raw = "" if raw is None else str(raw)
        if not raw and not empty_ok:
            raise _bad("message text is empty")
        mode = str(params.get("parse_mode") or "")
        if mode.lower() == "html":
            try:
                text, entities = parse_html(raw, strict=self.strict_html)
            except EntityParseError as exc:
                raise _bad(f"can't parse entities: {exc}") from None
        elif mode.lower() in ("markdown", "markdownv2"):
            raise _bad(f"the fake Bot API does not model parse_mode {mode}; use HTML")
        elif mode:
            raise _bad("unsupported parse_mode")
        else:
            text, entities = raw, params.get(f"{key}_entities" if key == "caption"
                                             else "entities") or []
        text, entities = trim(text, entities)
        if not text and not empty_ok:
            raise _bad("message text is empty")
        if _utf16_len(text) > limit:
            raise _bad("message caption is too long" if key == "caption"
                       else "message is too long")
        return text, entities

    def _markup(self, params: dict) -> dict | None:
        """The reply_markup, with inline keyboards checked as Telegram checks them."""
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return markup  # reply keyboards and removals are accepted, not echoed
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("field \"inline_keyboard\" of the InlineKeyboardMarkup "
                       "should be an Array of Arrays")
        if sum(len(r) for r in rows) > 100:
            raise _bad("BUTTONS_TOO_MUCH")
        for button in (b for r in rows for b in r):
            _check_button(button)
        return markup

    def _limit(self, chat: Chat) -> None:
        """Strict mode: take a token from each bucket the send falls in, or answer 429."""
        if not self.strict:
            return
        now = self._clock()
        buckets = [self._bucket(("chat", chat.id), PER_CHAT_BUCKET, now),
                   self._bucket("all", GLOBAL_BUCKET, now)]
        if chat.kind != "private":
            buckets.append(self._bucket(("group", chat.id), GROUP_BUCKET, now))
        wait = max(b.wait(now) for b in buckets)
        if wait > 0:
            self._too_many += 1
            retry = max(1, math.ceil(wait - _EPSILON))
            raise ApiError(429, f"Too Many Requests: retry after {retry}",
                           {"retry_after": retry})
        for bucket in buckets:
            bucket.take()

    def _bucket(self, key: object, spec: tuple[float, float], now: float) -> TokenBucket:
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(spec[0], spec[1], now)
        return self._buckets[key]

    def _deliver(self, chat: Chat, params: dict, **fields: Any) -> dict:
        message = Message(
            chat_id=chat.id, message_id=chat.next_message_id, date=int(time.time()),
            parse_mode=params.get("parse_mode") or None,
            disable_notification=_bool(params.get("disable_notification")),
            message_thread_id=self._topic(chat, params), **fields,
        )
        self._limit(chat)
        chat.next_message_id += 1
        chat.messages[message.message_id] = message
        return self._message_json(chat, message)

    def _bot_message(self, params: dict, missing: str) -> tuple[Chat, Message]:
        chat = self._target(params)
        if params.get("inline_message_id"):
            raise _bad("the fake Bot API does not model inline messages")
        message_id = params.get("message_id")
        if message_id in (None, ""):
            raise _bad("message identifier is not specified")
        message = chat.messages.get(_int(message_id, "message_id"))
        if message is None or message.deleted:
            raise _bad(missing)
        return chat, message

    # -- methods ---------------------------------------------------------------------------
    def _get_me(self, params: dict) -> dict:
        return {**self._bot_user(), "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False,
                "can_connect_to_business": False, "has_main_web_app": False}

    def _send_message(self, params: dict) -> dict:
        chat = self._target(params)
        text, entities = self._format(params, "text", TEXT_LIMIT, empty_ok=False)
        preview = params.get("link_preview_options")
        legacy = params.get("disable_web_page_preview")
        if preview is None and legacy is not None and _bool(legacy):
            preview = {"is_disabled": True}
        return self._deliver(
            chat, params, text=text, html=str(params.get("text")), entities=entities,
            reply_markup=self._markup(params), link_preview_options=preview,
            disable_web_page_preview=None if legacy is None else _bool(legacy),
        )

    def _send_photo(self, params: dict) -> dict:
        chat = self._target(params)
        sizes = self._photo_sizes(params.get("photo"))
        caption, entities = self._format(params, "caption", CAPTION_LIMIT, empty_ok=True)
        return self._deliver(
            chat, params, text=caption, html=str(params.get("caption") or ""),
            entities=entities, reply_markup=self._markup(params), photo=True,
            photo_sizes=sizes,
        )

    def _photo_sizes(self, photo: object) -> list[dict]:
        if photo in (None, ""):
            raise _bad("there is no photo in the request")
        if isinstance(photo, str) and photo in self._files:
            return copy.deepcopy(self._files[photo])  # a file sent before: the same sizes
        if isinstance(photo, Upload):
            if not photo.data:
                raise _bad("file must be non-empty")
            digest = hashlib.sha1(photo.data).hexdigest()
            width, height = _png_size(photo.data) or (800, 600)
            size = len(photo.data)
        elif isinstance(photo, str) and photo.startswith(("http://", "https://")):
            digest, (width, height), size = hashlib.sha1(photo.encode()).hexdigest(), (800, 600), 0
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        file_id = f"AgACAgIAAxk{digest[:40]}"
        scale = min(1.0, 90 / max(width, height))
        sizes = [
            {"file_id": f"{file_id}-s", "file_unique_id": f"AQAD{digest[:10]}s",
             "file_size": 1200, "width": max(1, int(width * scale)),
             "height": max(1, int(height * scale))},
            {"file_id": file_id, "file_unique_id": f"AQAD{digest[:10]}",
             "file_size": size or 50_000, "width": width, "height": height},
        ]
        for item in sizes:
            self._files[item["file_id"]] = sizes
        return copy.deepcopy(sizes)

    def _edit_message_text(self, params: dict) -> dict:
        chat, message = self._bot_message(params, "message to edit not found")
        if message.photo:
            raise _bad("there is no text in the message to edit")
        if not message.from_bot:
            raise _bad("message can't be edited")
        text, entities = self._format(params, "text", TEXT_LIMIT, empty_ok=False)
        markup = self._markup(params)
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise _bad(NOT_MODIFIED[len("Bad Request: "):])
        message.text, message.entities, message.reply_markup = text, entities, markup
        message.html, message.parse_mode = str(params["text"]), params.get("parse_mode") or None
        preview = params.get("link_preview_options")
        if preview is not None:
            message.link_preview_options = preview
        return self._edited(chat, message)

    def _edit_message_reply_markup(self, params: dict) -> dict:
        chat, message = self._bot_message(params, "message to edit not found")
        if not message.from_bot:
            raise _bad("message can't be edited")
        markup = self._markup(params)
        if markup == message.reply_markup:
            raise _bad(NOT_MODIFIED[len("Bad Request: "):])
        message.reply_markup = markup
        return self._edited(chat, message)

    def _edited(self, chat: Chat, message: Message) -> dict:
        message.edited += 1
        message.edit_date = int(time.time())
        return self._message_json(chat, message)

    def _delete_message(self, params: dict) -> bool:
        _, message = self._bot_message(params, "message to delete not found")
        message.deleted = True
        return True

    def _answer_callback_query(self, params: dict) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._open_queries:
            raise _bad(_STALE_QUERY[len("Bad Request: "):])
        text = str(params.get("text") or "")
        if len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        del self._open_queries[query_id]
        self._answers.append({
            "callback_query_id": query_id, "text": text or None,
            "show_alert": _bool(params.get("show_alert")), "url": params.get("url"),
            "cache_time": _int(params.get("cache_time") or 0, "cache_time"),
        })
        return True

    def _get_updates(self, params: dict) -> list[dict]:
        if self._webhook:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is "
                                "active; use deleteWebhook to delete the webhook first")
        offset = _int(params.get("offset") or 0, "offset")
        limit = min(max(_int(params.get("limit") or 100, "limit"), 1), 100)
        timeout = max(0, _int(params.get("timeout") or 0, "timeout"))
        allowed = params.get("allowed_updates")
        if allowed is not None:
            self._allowed = frozenset(allowed) or _DEFAULT_UPDATES
        self._poll_generation += 1
        generation = self._poll_generation
        self._cond.notify_all()  # an older poll still waiting is terminated (409)
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        deadline = time.monotonic() + timeout
        while True:
            if self._poll_generation != generation:
                raise ApiError(409, POLL_CONFLICT)
            remaining = deadline - time.monotonic()
            if self._updates or remaining <= 0 or self._stopping.is_set():
                return copy.deepcopy(self._updates[:limit])
            self._polls_waiting += 1
            self._cond.notify_all()
            try:
                self._cond.wait(remaining)
            finally:
                self._polls_waiting -= 1

    def _set_my_commands(self, params: dict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        for item in commands:
            if not isinstance(item, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}",
                                                               str(item.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(item.get("description", "")).strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params)
        if commands:
            self._commands[key] = [{"command": c["command"], "description": c["description"]}
                                   for c in commands]
        else:
            self._commands.pop(key, None)
        return True

    def _get_my_commands(self, params: dict) -> list[dict]:
        return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    def _delete_my_commands(self, params: dict) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _commands_key(self, params: dict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        language = str(params.get("language_code") or "")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _bad("invalid language code specified")
        kind = str(scope.get("type", "default"))
        if kind in ("chat", "chat_administrators"):
            return f"{kind}:{scope.get('chat_id')}", language
        if kind == "chat_member":
            return f"chat_member:{scope.get('chat_id')}:{scope.get('user_id')}", language
        return kind, language

    def _set_webhook(self, params: dict) -> bool:
        self._webhook = str(params.get("url") or "")
        return True

    def _delete_webhook(self, params: dict) -> bool:
        self._webhook = ""
        if _bool(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    def _get_webhook_info(self, params: dict) -> dict:
        return {"url": self._webhook, "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    def _send_chat_action(self, params: dict) -> bool:
        self._target(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _get_chat(self, params: dict) -> dict:
        chat = self._resolve(params.get("chat_id"))
        if chat is None:
            raise _bad("chat not found")
        return {**chat.as_json(), "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                        "unique_gifts": False, "premium_subscription": False,
                                        "gifts_from_channels": False}}

    def _close(self, params: dict) -> bool:
        return True

    def _log_out(self, params: dict) -> bool:
        return True


class _Silence(Exception):
    """The request gets no answer: its connection is closed (a timeout, or stopping)."""


def _check_button(button: object) -> None:
    """One inline keyboard button, refused as Telegram refuses it."""
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise _bad("can't parse inline keyboard button: Field \"text\" must be of type String")
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
            raise _bad("BUTTON_DATA_INVALID")
    elif "url" in button:
        if _checked_link(str(button["url"])) is None:
            raise _bad("BUTTON_URL_INVALID")
    elif not set(button) - {"text"}:
        raise _bad("can't parse inline keyboard button: "
                   "Text buttons are unallowed in the inline keyboard")


# -- request decoding ------------------------------------------------------------------------


def _decode_params(query: str, content_type: str, body: bytes) -> dict:
    """Parameters from the query string and a urlencoded, JSON or multipart body."""
    try:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True, errors="strict"))
        mime = content_type.split(";")[0].strip().lower()
        if mime == "application/json" and body:
            decoded = json.loads(body.decode("utf-8"))
            if not isinstance(decoded, dict):
                raise _bad("can't parse JSON encoded request: an object expected")
            params.update(decoded)
        elif mime == "application/x-www-form-urlencoded":
            params.update(parse_qsl(body.decode("ascii"), keep_blank_values=True,
                                    errors="strict"))
        elif mime == "multipart/form-data":
            params.update(_multipart(content_type, body))
    except UnicodeDecodeError:
        raise _bad("strings must be encoded in UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _bad(f"can't parse JSON encoded request: {exc.msg}") from None
    for key in _JSON_PARAMS & params.keys():
        if isinstance(params[key], str):
            try:
                params[key] = json.loads(params[key])
            except json.JSONDecodeError:
                raise _bad(f"can't parse {key} JSON object") from None
    return params


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    params: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            params[name] = Upload(filename, part.get_content_type(), data)
        else:
            params[name] = data.decode("utf-8")
    return params


def _bool(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _int(value: object, name: str) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        pass
    try:
        return int(float(value))  # type: ignore[arg-type]  # "1.5" seconds, say
    except (TypeError, ValueError):
        raise _bad(f"invalid {name} specified") from None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    api: FakeBotAPI

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (a killed `veille run`) is normal here; anything else is not."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as PTB's httpx pool expects
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this, Nagle and the client's delayed
        # ACK hold every answer back ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.api._cond:
            self.server.api._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.api._cond:
            self.server.api._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client died mid-request: nothing to carry out
            self.close_connection = True
            return
        status, payload = self.server.api.handle(
            self.command, self.path, self.headers.get("Content-Type", ""), body
        )
        if status == 0:
            self.close_connection = True
            return
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: the records are the log


@pytest.fixture
def fake_bot() -> Iterator[FakeBotAPI]:
    """A started FakeBotAPI (lenient limits) on 127.0.0.1, stopped after the test.

    The test fails if the fake itself crashed on a request (see FakeBotAPI.bugs).
    """
    with FakeBotAPI() as fake:
        yield fake
    if fake.bugs:
        pytest.fail("the fake Bot API failed on a request:\n" + "\n".join(fake.bugs))


__all__ = [
    "ApiError", "Call", "Chat", "EntityParseError", "FakeBotAPI", "Message", "TokenBucket",
    "Upload", "bot_command_entities", "fake_bot", "parse_html", "trim",
]
