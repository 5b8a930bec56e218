"""Frozen value types passed between the stages (see ../shared/DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One source to poll, as the operator (or a topic's news search) declared it."""

    url: str
    name: str
    lang: str | None = None
    interval: int = 600  # seconds between polls
    tags: tuple[str, ...] = ()
    topic: str | None = None  # set for generated news-search feeds
    where: str = ""  # "file:line" of the declaration, for error messages


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one HTTP (or file://) fetch produced.

    status is 200 with a body, 304 when the validators matched, or the HTTP status of a
    failure; error is set (and body None) whenever nothing usable came back.
    """

    url: str
    status: int
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    final_url: str | None = None  # after redirects
    permanent_url: str | None = None  # set when a 301/308 chain says the feed moved
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    error: str | None = None
    transient: bool = True  # whether retrying later may help (with error)
    retry_after: float | None = None  # seconds, from a Retry-After header
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.status in (200, 304)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True, slots=True)
class Item:
    """One news item, converted once from whatever the feed held."""

    feed: str  # URL of the feed it came from
    guid: str  # the feed's id for it (or the link when the feed gives none)
    url: str  # canonical URL (see stories.canonical_url)
    link: str  # the link as published (absolute)
    title: str  # plain text, entities decoded
    summary: str = ""  # plain text
    content: str = ""  # plain text of the full content, when the feed carries it
    published: datetime | None = None  # UTC, tz-aware
    lang: str | None = None
    author: str | None = None
    source: str = ""  # outlet name
    # stories.title_fingerprint(title, summary), made where the item is parsed (a parse
    # worker), so that the store need not fold every new title again; "" when not made
    fingerprint: str = field(default="", compare=False, repr=False)

    def text_fields(self) -> tuple[str, str]:
        """The (title, body) pair that topics are matched against."""
        body = self.summary if self.summary else self.content
        return self.title, body


@dataclass(frozen=True, slots=True)
class Hit:
    """One place where a query term matched: field is 'title' or 'body'; span in that text."""

    term: str  # the query term as printed, e.g. '"Power of Siberia 2"' or 'financ*'
    field: str
    start: int
    end: int
    text: str  # the matched text as it appears in the item


@dataclass(frozen=True, slots=True)
class Match:
    """An item matched a topic, and why."""

    topic: str
    hits: tuple[Hit, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """Distinct matched texts, in order of first appearance (title first)."""
        seen: dict[str, None] = {}
        for h in sorted(self.hits, key=lambda h: (h.field != "title", h.start)):
            seen.setdefault(h.text, None)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Alert:
    """One pending notification: an item that matched a topic, for one destination."""

    topic: str
    item: Item
    match: Match
    destination: str = "console"
    story: str | None = None  # id of the story it belongs to (clustering issue)
    id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Topic:
    """A watchlist topic with its compiled query (a bot.query.Compiled)."""

    id: str
    title: str
    query: str
    compiled: Any = field(compare=False, repr=False)
    context: str = ""
    priority: str = "normal"  # high | normal | low
    languages: tuple[str, ...] = ()  # empty: every language
    feeds: tuple[str, ...] = ()  # feed names or URLs it is limited to; empty: all
    tags: tuple[str, ...] = ()  # feed tags it is limited to; empty: all
    search: tuple[str, ...] = ()  # languages of generated news-search feeds
    surge: float | None = None  # surge factor over the usual rate; None: VEILLE_SURGE_FACTOR
    where: str = ""  # "file:line"
    destinations: tuple[tuple[str, int], ...] = ()  # (chat, forum thread or 0) posted to directly
    preview: bool = False  # Telegram link previews on

    def applies_to(self, lang: str | None, feed: FeedSpec | None) -> bool:
        """Whether an item of this language from this feed is in the topic's scope."""
        if self.languages and lang and lang.split("-")[0].lower() not in self.languages:
            return False
        if feed is None or feed.topic == self.id:
            return True
        if self.feeds and feed.url not in self.feeds and feed.name not in self.feeds:
            return False
        return not self.tags or bool(set(self.tags) & set(feed.tags))


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A chat that receives alerts, with its settings (one row of `subscribers`)."""

    chat_id: int
    kind: str = "private"  # private | group | supergroup | channel
    title: str | None = None
    user_lang: str | None = None  # Telegram's language_code of the last user seen
    lang: str | None = None  # chosen with /lang; None: follow user_lang
    tz: str = "UTC"
    mode: str = "instant"  # instant | digest
    digest_every: str = "daily"  # hourly | daily
    digest_at: str = "08:00"  # local HH:MM of the daily digest
    quiet_start: str | None = None  # local HH:MM
    quiet_end: str | None = None
    paused_until: datetime | None = None
    active: bool = True
    inactive_reason: str | None = None
    dropped: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_digest_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> "Subscriber":
        """From a `subscribers` row (any mapping with its columns)."""
        values = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
        return cls(**{k: values[k] for k in cls.__slots__ if k in values})

    @property
    def language(self) -> str:
        """The language replies and alerts use: /lang, else Telegram's when supported, else en."""
        if self.lang:
            return self.lang
        code = (self.user_lang or "").split("-")[0].lower()
        return code if code in ("en", "fr") else "en"

    @property
    def is_group(self) -> bool:
        return self.kind != "private"
