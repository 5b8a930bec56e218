"""Alerts and digests as Telegram messages: HTML text, inline buttons, options (pure).

Values in, values out: no I/O, no clock, no python-telegram-bot objects (the delivery
worker turns `Rendered` into a sendMessage call). Every feed-supplied string is escaped, and
every message stays within Telegram's 4096 UTF-16 code units as counted after entity
parsing: the message is built as runs of raw text, each with the tags around it, so that
shrinking cuts raw text (at a word boundary, never inside a surrogate pair or a
grapheme joiner) and tags and entities are only written afterwards, whole.

Dates and month names come from Babel (CLDR data for every language we reply in), time
zones from zoneinfo.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_skeleton

from ..model import Alert, Item, Topic

LIMIT = 4096  # message text, UTF-16 code units after entity parsing
CALLBACK_BYTES = 64  # callback_data, UTF-8 bytes
MARKERS = {"high": "🔴", "normal": "🔹", "low": "⚪"}
PRIORITY_ORDER = {"high": 0, "normal": 1, "low": 2}

# Sanity caps (UTF-16 units) for strings that are short in any sane feed; beyond them a
# string is cut like an excerpt. With these, only the excerpt can push a message past LIMIT.
TOPIC_MAX = 200
TITLE_MAX = 500
SOURCE_MAX = 80
EXCERPT_MAX = 600  # an excerpt taken from the item itself (a given summary has no cap)
EXCERPT_MIN = 40  # an excerpt shrunk below this is dropped rather than shown as a stub
CONTEXT_MAX = 1000
PREVIOUS_MAX = 300
ALSO_NAMES = 3
RAW_LINK_MAX = 300  # a link that is not http(s) is shown as code up to this length
HREF_MAX = 2048
DIGEST_TITLE_MAX = 300
DIGEST_ENTRY_MAX = 1000
TRAILING = " ,;:.—–-·"  # stripped before an ellipsis

Translate = Callable[[str], str]


def identity(text: str) -> str:
    """The default Translate: English as written."""
    return text


# ---------------------------------------------------------------- lengths and escaping


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts it."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def escape(text: str, quote: bool = False) -> str:
    """text with & < > escaped (and " too with quote=True, for attribute values)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if quote else text


_TOKEN = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>"
    r"|&(#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|lt|gt|amp|quot);")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _entity(ref: str) -> str:
    if not ref.startswith("#"):
        return _NAMED[ref]
    code = int(ref[2:], 16) if ref[1:2] in "xX" else int(ref[1:])
    return chr(code) if code <= 0x10FFFF else "\ufffd"


def _parse(html: str) -> Iterator[tuple[str, str, str]]:
    """(kind, value, extra) tokens of Telegram HTML: text (unescaped), open, close."""
    pos = 0
    for m in _TOKEN.finditer(html):
        if m.start() > pos:
            yield "text", html[pos:m.start()], ""
        if m.group(4):
            yield "text", _entity(m.group(4)), ""
        else:
            yield ("close" if m.group(1) else "open"), m.group(2).lower(), m.group(3)
        pos = m.end()
    if pos < len(html):
        yield "text", html[pos:], ""


def entity_length(html: str) -> int:
    """The length Telegram counts for this HTML text: UTF-16 units of the parsed text."""
    return sum(utf16_len(v) for kind, v, _ in _parse(html) if kind == "text")


def _href(attrs: str) -> str:
    m = _HREF.search(attrs)
    if not m:
        return ""
    raw = next(g for g in m.groups() if g is not None)
    return "".join(v for _, v, _ in _parse(raw))


# ---------------------------------------------------------------- the value types


@dataclass(frozen=True, slots=True)
class Button:
    """One inline keyboard button: a label and its callback_data (1 to 64 UTF-8 bytes)."""

    text: str
    data: str

    def __post_init__(self) -> None:
        if not self.text:
            raise ValueError("a button needs a label")
        if not 1 <= len(self.data.encode("utf-8", "surrogatepass")) <= CALLBACK_BYTES:
            raise ValueError(f"callback_data must be 1..{CALLBACK_BYTES} bytes: {self.data!r}")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message ready to send: HTML text, button rows, link preview and notification."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    preview: bool = False
    silent: bool = False

    def plain(self) -> str:
        """The same message as plain text, for resending when Telegram refused the HTML.

        Tags are dropped and entities decoded; a link's address follows its text in
        parentheses while that still fits, so the plain message keeps the article's link.
        """
        pieces: list[str] = []
        after: dict[int, str] = {}  # index of a link's last piece -> its href
        start, href = 0, ""
        for kind, value, attrs in _parse(self.text):
            if kind == "text":
                pieces.append(value)
            elif kind == "open" and value == "a":
                start, href = len(pieces), _href(attrs)
            elif kind == "close" and value == "a" and href and len(pieces) > start:
                if href != "".join(pieces[start:]).strip():
                    after[len(pieces) - 1] = href
                href = ""
        size = sum(utf16_len(p) for p in pieces)
        for index, url in sorted(after.items()):
            add = utf16_len(f" ({url})")
            if size + add > LIMIT:
                del after[index]
            else:
                size += add
        out = "".join(p + (f" ({after[i]})" if i in after else "") for i, p in enumerate(pieces))
        return _cut_text(out.strip(), LIMIT)


# ---------------------------------------------------------------- callback data


_ACTION = re.compile(r"[a-z][a-z0-9_]{0,15}")


def _digest_of(topic: str) -> str:
    raw = hashlib.sha256(topic.encode("utf-8", "surrogatepass")).digest()[:12]
    return base64.urlsafe_b64encode(raw).decode("ascii")  # 16 characters, 96 bits


def callback_data(action: str, topic: str) -> str:
    """'action:topic', or 'action#hash' when the topic id would not fit in 64 bytes."""
    if not _ACTION.fullmatch(action):
        raise ValueError(f"callback action must be 1-16 of [a-z0-9_], letter first: {action!r}")
    if not topic:
        raise ValueError("callback data needs a topic id")
    data = f"{action}:{topic}"
    if len(data.encode("utf-8", "surrogatepass")) <= CALLBACK_BYTES:
        return data
    return f"{action}#{_digest_of(topic)}"


def parse_callback(data: str, topic_ids: Iterable[str]) -> tuple[str, str] | None:
    """(action, topic id) from callback_data, the topic being one of topic_ids; else None."""
    m = re.fullmatch(r"([a-z][a-z0-9_]{0,15})([:#])(.+)", data or "", re.S)
    if not m:
        return None
    action, kind, rest = m.groups()
    ids = set(topic_ids)
    if kind == ":":
        return (action, rest) if rest in ids else None
    found = [t for t in ids if _digest_of(t) == rest
             and len(f"{action}:{t}".encode("utf-8", "surrogatepass")) > CALLBACK_BYTES]
    return (action, found[0]) if len(found) == 1 else None


# ---------------------------------------------------------------- runs of text


@dataclass(frozen=True, slots=True)
class _Run:
    """Raw (unescaped) text and the tags around it, outermost first ('b', 'a href="…"')."""

    text: str
    wrap: tuple[str, ...] = ()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# explicit bidi embeddings, overrides and isolates: a feed string could reverse the rest of
# its line (source · time) with them; right-to-left text displays right without them
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _clean(text: str) -> str:
    """Control characters as spaces, bidi overrides dropped, lone surrogates replaced (they
    cannot be sent)."""
    return _SURROGATE.sub("\ufffd", _BIDI.sub("", _CONTROL.sub(" ", text)))


def _line(text: str) -> str:
    """A feed string on one line: cleaned, whitespace collapsed."""
    return " ".join(_clean(text or "").split())


def _vis(runs: Sequence[_Run]) -> int:
    return sum(utf16_len(r.text) for r in runs)


def _html(runs: Sequence[_Run]) -> str:
    """Runs as Telegram HTML: text escaped, adjacent runs with the same tags merged."""
    out: list[str] = []
    merged: list[_Run] = []
    for r in runs:
        if merged and merged[-1].wrap == r.wrap:
            merged[-1] = _Run(merged[-1].text + r.text, r.wrap)
        elif r.text:
            merged.append(r)
    for r in merged:
        opens = "".join(f"<{tag}>" for tag in r.wrap)
        closes = "".join(f"</{tag.split(' ', 1)[0]}>" for tag in reversed(r.wrap))
        out.append(f"{opens}{escape(r.text)}{closes}")
    return "".join(out)


def _joins(text: str, n: int) -> bool:
    """Whether cutting text before index n would split a grapheme (mark, joiner, flag)."""
    c, prev = text[n], text[n - 1]
    if prev == "\u200d" or c == "\u200d" or unicodedata.category(c) in ("Mn", "Me", "Mc"):
        return True
    o = ord(c)
    if 0xFE00 <= o <= 0xFE0F or 0x1F3FB <= o <= 0x1F3FF or 0xE0020 <= o <= 0xE007F:
        return True
    if 0x1F1E6 <= o <= 0x1F1FF:  # regional indicators pair up into flags
        k = n
        while k > 0 and 0x1F1E6 <= ord(text[k - 1]) <= 0x1F1FF:
            k -= 1
        return (n - k) % 2 == 1
    return False


def _cut_point(text: str, budget: int) -> int:
    """Characters of text to keep so that they and an ellipsis fit in budget units."""
    n, used = 0, 0
    for ch in text:
        w = 2 if ord(ch) > 0xFFFF else 1
        if used + w > budget - 1:
            break
        used += w
        n += 1
    space = max(text.rfind(" ", 0, n + 1), text.rfind("\n", 0, n + 1))
    if space >= n // 2 and space > 0:
        return space
    k = n
    while 0 < k < len(text) and _joins(text, k) and n - k < 32:
        k -= 1
    return k if 0 < k < len(text) and not _joins(text, k) else n


def _cut(runs: Sequence[_Run], budget: int) -> list[_Run]:
    """runs shortened to budget units at a word boundary, with '…'; [] if budget < 1."""
    if _vis(runs) <= budget:
        return list(runs)
    if budget < 1:
        return []
    text = "".join(r.text for r in runs)
    keep = len(text[:_cut_point(text, budget)].rstrip(TRAILING))
    out: list[_Run] = []
    for r in runs:
        if keep <= 0:
            break
        out.append(_Run(r.text[:keep], r.wrap))
        keep -= len(r.text)
    wrap = out[-1].wrap if out else runs[0].wrap
    return out + [_Run("…", wrap)]


def _cut_text(text: str, budget: int) -> str:
    return "".join(r.text for r in _cut([_Run(text)], budget))


def _capped(text: str, cap: int, wrap: tuple[str, ...] = ()) -> list[_Run]:
    return _cut([_Run(text, wrap)], cap) if text else []


# ---------------------------------------------------------------- time and places


@lru_cache(maxsize=128)
def _zone(tz: str) -> tzinfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return timezone.utc  # an invalid zone never stops a message


@lru_cache(maxsize=32)
def _locale(lang: str) -> Locale:
    """The Babel locale for lang; plain English dates in the international day-month order."""
    lang = (lang or "en").replace("-", "_")
    try:
        return Locale.parse("en_GB" if lang == "en" else lang)
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse("en_GB")


def local_time(dt: datetime, *, tz: str = "UTC", lang: str = "en", date: str = "yMMMd",
               time: bool = True, zone_name: bool = True) -> str:
    """dt in zone tz, e.g. '30 Nov 2026, 14:05 CET' (en), '30 nov. 2026, 14:05 CET' (fr).

    date is a CLDR skeleton ('yMMMd', 'MMMd'): each language orders and abbreviates it its
    own way; times are 24-hour; the zone is its tz database abbreviation, else 'GMT+03:30'.
    """
    zone = _zone(tz)
    local = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(zone)
    locale = _locale(lang)
    text = format_skeleton(date, local, tzinfo=zone, locale=locale)
    if time:
        clock = format_datetime(local, "HH:mm", tzinfo=zone, locale=locale)
        joined = str(locale.datetime_formats.get("medium", "{1}, {0}")).replace("'", "")
        text = joined.replace("{1}", text).replace("{0}", clock)
    if not zone_name:
        return text
    abbr = local.tzname() or ""
    if not abbr.isalpha():  # zones without an abbreviation ('+0330')
        abbr = format_datetime(local, "ZZZZ", tzinfo=zone, locale=locale)
    return f"{text} {abbr}"


def _host(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


def _source(item: Item) -> str:
    return _line(item.source) or _host(item.link) or _host(item.feed)


def _web_link(url: str) -> str | None:
    """url as an href if it is an absolute http(s) link Telegram can take, else None."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    url = re.sub(r"[\x00-\x20\x7f]", lambda m: f"%{ord(m.group()):02X}", url)
    url = _SURROGATE.sub("%EF%BF%BD", url)
    return url if len(url) <= HREF_MAX else None


def _a(href: str) -> str:
    return f'a href="{escape(href, quote=True)}"'


# ---------------------------------------------------------------- the excerpt


def _spaceless(ch: str) -> bool:
    """Scripts written without spaces between words (no word boundary around a term)."""
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x0E00 <= o <= 0x0EFF
            or 0x1000 <= o <= 0x109F or 0x20000 <= o <= 0x3FFFF)


def _find(terms: Iterable[str], text: str) -> list[tuple[int, int]]:
    """Spans of the terms in text, case-insensitively, as whole words where words are spaced."""
    spans = []
    for term in {t.strip() for t in terms if t and t.strip()}:
        before = r"(?<!\w)" if not _spaceless(term[0]) else ""
        after = r"(?!\w)" if not _spaceless(term[-1]) else ""
        words = r"\s+".join(re.escape(w) for w in term.split())  # a line break may sit between
        pattern = re.compile(before + words + after, re.I)
        spans.extend(m.span() for m in pattern.finditer(text))
    return spans


def _merge(spans: Iterable[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Spans clipped to [0, size], empty ones dropped, overlapping ones merged, sorted."""
    out: list[tuple[int, int]] = []
    for s, e in sorted((max(0, s), min(size, e)) for s, e in spans):
        if s >= e:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _excerpt_runs(text: str, spans: list[tuple[int, int]]) -> list[_Run]:
    """text as runs with the spans in bold, cleaned, whitespace collapsed."""
    pieces: list[_Run] = []
    pos = 0
    for s, e in spans:
        pieces += [_Run(text[pos:s]), _Run(text[s:e], ("b",))]
        pos = e
    pieces.append(_Run(text[pos:]))
    out: list[_Run] = []
    spaced = True  # whether the output ends with a space (or is empty)
    for p in pieces:
        clean = _clean(p.text)
        words = clean.split()
        if clean[:1].isspace() and not spaced:
            out.append(_Run(" "))
            spaced = True
        if words:
            out.append(_Run(" ".join(words), p.wrap))
            spaced = False
            if clean[-1:].isspace():
                out.append(_Run(" "))
                spaced = True
    while out and out[-1].text == " ":
        out.pop()
    return out


_WINDOW_RAW = 40_000  # raw characters of a long body looked at for one excerpt


def _window_start(text: str, first: int) -> int:
    """Where to start an excerpt whose first match lies at first: a word or two before it."""
    if first <= EXCERPT_MAX // 2:
        return 0
    space = text.rfind(" ", first - 200, first - 80)
    start = space + 1 if space >= 0 else first - 80  # spaceless scripts: any character
    while start > 0 and _joins(text, start):
        start -= 1
    return start


def _excerpt(alert: Alert, summary: str | None,
             marks: Sequence[tuple[int, int]] | None) -> list[_Run]:
    """The excerpt: the given summary, or a window of the item's text, terms in bold."""
    terms = alert.match.terms
    if summary is not None:
        text, cap = summary, LIMIT
        spans = list(marks) if marks is not None else _find(terms, text)
    else:
        text, cap = (alert.item.summary or alert.item.content), EXCERPT_MAX
        if marks is not None:
            spans = list(marks)
        else:
            spans = [(h.start, h.end) for h in alert.match.hits if h.field == "body"
                     and text[h.start:h.end] == h.text] + _find(terms, text)
    spans = _merge(spans, len(text))
    start = _window_start(text, spans[0][0]) if summary is None and spans else 0
    window = text[start:start + _WINDOW_RAW]
    local = [(s - start, e - start) for s, e in spans if s >= start]
    runs = _excerpt_runs(window, _merge(local, len(window)))
    if start > 0 and runs:
        runs.insert(0, _Run("… "))
    return _cut(runs, cap)


# ---------------------------------------------------------------- fitting parts


@dataclass(slots=True)
class _Part:
    """One line of a message: its name (for shrinking), its block (blank lines between), runs."""

    name: str
    block: int
    runs: list[_Run]


def _seps(parts: Sequence[_Part]) -> Iterator[tuple[str, _Part]]:
    """The shown parts, each with the separator before it."""
    block = None
    for p in parts:
        if p.runs:
            yield ("" if block is None else "\n" if p.block == block else "\n\n"), p
            block = p.block


def _total(parts: Sequence[_Part]) -> int:
    return sum(len(sep) + _vis(p.runs) for sep, p in _seps(parts))


def _strip(runs: list[_Run]) -> list[_Run]:
    """runs without whitespace at either end (Telegram trims a message's ends)."""
    runs = [r for r in runs if r.text]
    if runs:
        runs[0] = _Run(runs[0].text.lstrip(), runs[0].wrap)
        runs[-1] = _Run(runs[-1].text.rstrip(), runs[-1].wrap)
    return [r for r in runs if r.text]


def _fit(parts: list[_Part], order: Sequence[tuple[str, int]]) -> list[_Part]:
    """Parts trimmed, then shrunk in order (name, least size kept else dropped) until
    within LIMIT."""
    for p in parts:
        p.runs = _strip(p.runs)
    for name, least in order:
        over = _total(parts) - LIMIT
        if over <= 0:
            break
        for p in parts:
            if p.name == name and p.runs:
                budget = _vis(p.runs) - over
                p.runs = _cut(p.runs, budget) if budget >= least else []
    return parts


def _join(parts: Sequence[_Part]) -> str:
    return "".join(sep + _html(p.runs) for sep, p in _seps(parts))


# ---------------------------------------------------------------- alerts

HEAD, EXCERPT, STORY, CONTEXT = range(4)  # blocks of an alert, with blank lines between


def _also_of(alert: Alert, also: Sequence[object]) -> Sequence[object]:
    """The other outlets: the argument, else what the story step left in alert.extra."""
    found = also or alert.extra.get("also") or ()
    return found if isinstance(found, (list, tuple)) else ()


def _also_names(also: Sequence[object], own: str) -> tuple[list[_Run], int]:
    """Outlet runs (linked where possible) and the count of further outlets."""
    seen: dict[str, tuple[str, str | None]] = {}
    for entry in also:
        if isinstance(entry, Mapping):
            url = str(entry.get("url") or "")
            name = _line(str(entry.get("source") or "")) or _host(url)
        else:
            url, name = "", _line(str(entry))
        if name and name.casefold() != own.casefold():
            seen.setdefault(name.casefold(), (name, _web_link(url)))
    runs: list[_Run] = []
    for name, href in list(seen.values())[:ALSO_NAMES]:
        if runs:
            runs.append(_Run(", "))
        runs += _capped(name, SOURCE_MAX, (_a(href),) if href else ())
    return runs, max(0, len(seen) - ALSO_NAMES)


def _head(alert: Alert, topic: Topic | None, tz: str, lang: str,
          t: Translate) -> tuple[list[_Part], str | None]:
    """Topic line, headline (linked when http(s), else the link shown as code), source · time."""
    item = alert.item
    marker = MARKERS.get(getattr(topic, "priority", "normal"), MARKERS["normal"])
    topic_title = _line(topic.title if topic else "") or alert.topic
    parts = [_Part("topic", HEAD, [_Run(marker + " ")] + _capped(topic_title, TOPIC_MAX, ("b",)))]
    href = _web_link(item.link)
    title = _line(item.title) or t("(no title)")
    parts.append(_Part("title", HEAD, _capped(title, TITLE_MAX, (_a(href),) if href else ())))
    raw = _line(item.link)
    if href is None and raw and len(raw) <= RAW_LINK_MAX:  # a cut address would mislead
        parts.append(_Part("link", HEAD, _capped(raw, RAW_LINK_MAX, ("code",))))
    meta = _capped(_source(item), SOURCE_MAX)
    if item.published:
        meta += [_Run(" · " if meta else ""), _Run(local_time(item.published, tz=tz, lang=lang))]
    parts.append(_Part("meta", HEAD, meta))
    return parts, href


def render_alert(alert: Alert, topic: Topic | None, *, tz: str = "UTC", lang: str = "en",
                 t: Translate = identity, summary: str | None = None,
                 marks: Sequence[tuple[int, int]] | None = None,
                 also: Sequence[Mapping[str, str]] = (),
                 previously: tuple[datetime, str] | None = None,
                 silent: bool = False, buttons: bool = True) -> Rendered:
    """One alert as a Telegram message, within 4096 UTF-16 units after entity parsing.

    Layout: priority marker and topic in bold; the headline linked; source · local time;
    the excerpt (summary, else the item's own text) with the matched terms in bold (marks,
    else the body hits and the matched texts); other outlets (also, else alert.extra's
    "also"); the story's previous alert; the topic's context in italics; buttons to mute
    the topic for 24 h or unsubscribe. When too long, the excerpt shrinks first, then the
    outlets line goes, then the headline is cut.
    """
    parts, href = _head(alert, topic, tz, lang, t)
    parts.append(_Part("excerpt", EXCERPT, _excerpt(alert, summary, marks)))
    names, more = _also_names(_also_of(alert, also), _source(alert.item))
    if names:
        tail = [_Run(f" (+{more})")] if more else []
        parts.append(_Part("also", STORY, [_Run(t("Also:") + " ")] + names + tail))
    if previously:
        when = local_time(previously[0], tz=tz, lang=lang, time=False, zone_name=False)
        prev = _capped(_line(previously[1]), PREVIOUS_MAX)
        # t() stays outside the f-string, where the catalog extraction finds it
        label = t("Previously:") + f" {when}" + (" — " if prev else "")
        parts.append(_Part("previously", STORY, [_Run(label)] + prev))
    context = _line(topic.context if topic else "")
    if context:
        parts.append(_Part("context", CONTEXT, _capped(context, CONTEXT_MAX, ("i",))))
    parts = _fit(parts, [("excerpt", EXCERPT_MIN), ("also", LIMIT + 1), ("title", 1),
                         ("previously", 20), ("context", 20), ("link", LIMIT + 1),
                         ("meta", 1), ("topic", 1)])
    rows: tuple[tuple[Button, ...], ...] = ()
    tid = topic.id if topic else alert.topic
    if buttons and tid:
        rows = ((Button(t("Mute 24 h"), callback_data("mute", tid)),
                 Button(t("Unsubscribe"), callback_data("unsub", tid))),)
    preview = bool(getattr(topic, "preview", False) and href)
    return Rendered(_join(parts), rows, preview=preview, silent=silent)


# ---------------------------------------------------------------- digests


@dataclass(frozen=True, slots=True)
class DigestEntry:
    """One alert held for a digest; outlets: how many outlets carried its story, if known."""

    alert: Alert
    topic: Topic | None
    outlets: int = 0


@dataclass(slots=True)
class _Story:
    entry: DigestEntry
    sources: set[str]
    outlets: int


def _when_key(entry: DigestEntry) -> float:
    dt = entry.alert.item.published
    if dt is None:
        return float("-inf")
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _topic_key(entry: DigestEntry) -> tuple[int, str, str]:
    topic = entry.topic
    priority = PRIORITY_ORDER.get(getattr(topic, "priority", "normal"), 1)
    title = _line(topic.title if topic else "") or entry.alert.topic
    return priority, title.casefold(), entry.alert.topic


def _outlets(entry: DigestEntry) -> set[str]:
    also = _also_of(entry.alert, ())
    names = {_source(entry.alert.item)} | {
        _line(str(a.get("source") or "")) for a in also if isinstance(a, Mapping)}
    return {n.casefold() for n in names if n}


def _stories(entries: Sequence[DigestEntry]) -> list[list[_Story]]:
    """Stories grouped by topic in display order, newest first; a story once, under its
    first topic (the newest entry shown, the outlets of all counted)."""
    by_topic: dict[str, dict[str, _Story]] = {}
    placed: dict[str, str] = {}  # story key -> the topic it is shown under
    for entry in sorted(entries, key=lambda e: (_topic_key(e), -_when_key(e))):
        item = entry.alert.item
        key = entry.alert.story or item.url or item.link or item.guid
        stories = by_topic.setdefault(placed.setdefault(key, entry.alert.topic), {})
        if key in stories:
            stories[key].sources |= _outlets(entry)
            stories[key].outlets = max(stories[key].outlets, entry.outlets)
        else:
            stories[key] = _Story(entry, _outlets(entry), entry.outlets)
    return [sorted(s.values(), key=lambda s: -_when_key(s.entry)) for s in by_topic.values()]


def _digest_entry(story: _Story, tz: str, lang: str, t: Translate) -> list[_Run]:
    """'• headline — source (+N) · time', the headline linked; +N more outlets carried the
    story (as on an alert's 'Also:' line, and with no words to translate)."""
    item = story.entry.alert.item
    title = _line(item.title) or t("(no title)")
    href = _web_link(item.link)
    runs = [_Run("• ")] + _capped(title, DIGEST_TITLE_MAX, (_a(href),) if href else ())
    more = max(story.outlets, len(story.sources)) - 1
    meta = [_cut_text(_source(item), SOURCE_MAX) + (f" (+{more})" if more > 0 else "")]
    if item.published:
        meta.append(local_time(item.published, tz=tz, lang=lang, date="MMMd", zone_name=False))
    runs.append(_Run(" — " + " · ".join(m for m in meta if m)))
    return _cut(runs, DIGEST_ENTRY_MAX)


def _topic_head(entry: DigestEntry) -> list[_Run]:
    topic = entry.topic
    marker = MARKERS.get(getattr(topic, "priority", "normal"), MARKERS["normal"])
    title = _line(topic.title if topic else "") or entry.alert.topic
    return [_Run(marker + " ")] + _capped(title, TOPIC_MAX, ("b",))


def _pages(groups: list[list[_Story]], reserve: int, tz: str, lang: str,
           t: Translate) -> list[list[tuple[str, list[_Run]]]]:
    """Topic headings and entries packed into messages (lines with the separator before
    each), never splitting an entry; a topic carried over repeats its heading."""
    pages: list[list[tuple[str, list[_Run]]]] = []
    size = LIMIT + 1  # the first entry opens the first message
    for stories in groups:
        head, carried = _topic_head(stories[0].entry), False
        for story in stories:
            line = _digest_entry(story, tz, lang, t)
            if size + 1 + _vis(line) + (0 if carried else _vis(head) + 2) > LIMIT:
                pages.append([])
                size, carried = reserve, False
            if not carried:
                pages[-1].append(("\n\n", head))
                size += _vis(head) + 2
                carried = True
            pages[-1].append(("\n", line))
            size += _vis(line) + 1
    return pages


def render_digest(entries: Sequence[DigestEntry], *, tz: str, lang: str,
                  t: Translate = identity, title: str | None = None) -> list[Rendered]:
    """A digest: topics by priority, each story once, newest first; [] when empty.

    One message when it fits; otherwise several, split between entries, each titled
    '(1/3)', '(2/3)'... Each line is at most DIGEST_ENTRY_MAX units, so any entry fits.
    """
    groups = _stories(entries)
    if not groups:
        return []
    heading = _cut_text(_line(title or "") or t("Digest"), DIGEST_TITLE_MAX)
    reserve = utf16_len(f"📰 {heading} (999/999)")  # the numbering is written afterwards
    pages = _pages(groups, reserve, tz, lang, t)
    out = []
    for n, lines in enumerate(pages, 1):
        numbered = f"{heading} ({n}/{len(pages)})" if len(pages) > 1 else heading
        top = _html([_Run("📰 "), _Run(numbered, ("b",))])
        out.append(Rendered(top + "".join(sep + _html(line) for sep, line in lines)))
    return out


# ---------------------------------------------------------------- coverage surges

SURGE_STORIES = 5


def render_surge(surge: Mapping[str, Any], topic: Topic | None, *, tz: str = "UTC",
                 lang: str = "en", t: Translate = identity, buttons: bool = True) -> Rendered:
    """A coverage surge (store.surge(): recent, baseline, stories): the topic, how many new
    stories against its usual rate, and the top stories linked with their outlet counts."""
    name = _cut_text(_line(topic.title if topic else str(surge.get("topic", ""))), TOPIC_MAX)
    label = t("Coverage surge")
    counts = t("{recent} new stories, against about {baseline} usually").format(
        recent=surge.get("recent", 0), baseline=round(float(surge.get("baseline", 0)), 1))
    outlets_label = t("{n} outlets")
    lines = [f"📈 <b>{escape(label)}: {escape(name)}</b>", escape(counts)]
    for story in list(surge.get("stories", ()))[:SURGE_STORIES]:
        title = escape(_cut_text(_line(str(story.get("title", ""))), DIGEST_TITLE_MAX))
        href = _web_link(str(story.get("url", "")))
        linked = f"<a href=\"{escape(href, quote=True)}\">{title}</a>" if href else title
        outlets = int(story.get("outlets", 1) or 1)
        source = escape(_cut_text(_line(str(story.get("source", ""))), SOURCE_MAX))
        lines.append(f"• {linked} — {source}" + (
            f" ({escape(outlets_label.format(n=outlets))})" if outlets > 1 else ""))
    when = surge.get("detected_at")
    if isinstance(when, datetime):
        lines.append(f"<i>{escape(local_time(when, tz=tz, lang=lang))}</i>")
    rows: tuple[tuple[Button, ...], ...] = ()
    if buttons and topic is not None:
        rows = ((Button(t("Mute 24 h"), callback_data("mute", topic.id)),),)
    return Rendered("\n".join(lines), rows)
