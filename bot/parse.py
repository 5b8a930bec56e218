"""Feed bytes to Items: the only module that imports a feed parser (pure: no I/O, no clock).

parse_feed(body, url=..., headers=...) -> ParsedFeed
  1. gunzip (capped at MAX_DECOMPRESSED); an empty body is a ParseError
  2. JSON Feed 1.0/1.1 -> the json module (feedparser cannot read it)
  3. XML is re-encoded as UTF-8 (a BOM, else valid UTF-8, else the HTTP charset, else the
     XML declaration, else windows-1252) and rid of characters XML forbids, so that both
     parsers read the same text
  4. well-formed (lxml, strict) RSS 2.0, RSS 1.0 or Atom 1.0 without xml:base or DOCTYPE,
     with every item element where feedparser would look, no item or entry of another
     format or namespace anywhere, no Atom 0.3 `mode` attribute, no item field feedparser
     reads across formats (an un-namespaced <id>, <summary>, <content>, <link href> in RSS,
     Atom 0.3 names in Atom 1.0), not read in a Japanese legacy encoding -> "fast": the lxml
     tree is read by feedparser's rules (id, link, title, text fields, dates, authors,
     language)
  5. everything else -> feedparser, the tolerant reference
Every reading becomes parser-neutral _Entry values and every Item is built in one place
(_item_from_entry). tests/test_parse.py checks that the fast path yields the same Items as
feedparser on every corpus file that takes it. (fastfeedparser was the fast path first; the
tree that the shape check builds anyway proved enough, and reading it is cheaper than a
second parse.)
"""

from __future__ import annotations

import codecs
import email.utils
import functools
import html
import io
import json
import re
import warnings
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import urljoin

import dateutil.parser
import feedparser
from lxml import etree

from bot.errors import ParseError
from bot.model import Item
from bot.stories import canonical_url, title_fingerprint

MAX_DECOMPRESSED = 50 * 1024 * 1024  # bytes; a bigger gunzipped body is refused
MAX_TEXT_CHARS = 20_000  # summary and content are cut to this many characters
MIN_YEAR, MAX_YEAR = 1990, 2100  # a date outside these years is treated as absent

_ATOM = "{http://www.w3.org/2005/Atom}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
_DC = "{http://purl.org/dc/elements/1.1/}"
_DCTERMS = "{http://purl.org/dc/terms/}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# Declared legacy encodings read as the superset real servers mean by them (as browsers do).
_SUPERSETS = {"ascii": "cp1252", "iso8859-1": "cp1252", "gb2312": "gb18030", "gbk": "gb18030",
              "euc_kr": "cp949", "shift_jis": "cp932", "tis-620": "cp874", "iso8859-9": "cp1254"}
# Documents read in these go to feedparser: on feedparser's own Shift-JIS test feeds the two
# paths disagreed, and a Japanese legacy-encoded feed is rare enough to take the slow path.
_FEEDPARSER_ENCODINGS = frozenset({"cp932", "shift_jis", "shift_jis_2004", "shift_jisx0213",
                                   "euc_jp", "euc_jis_2004", "euc_jisx0213", "iso2022_jp"})
_XML_DECL_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)
_XML_INVALID_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_XML_NONCHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")  # U+FFFE, U+FFFF in UTF-8
_BLOCK_TAGS = ("p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
               "td", "th", "table", "blockquote", "pre", "hr", "dt", "dd", "figcaption",
               "section", "article", "header", "footer", "aside", "figure")
_SKIP_TAGS = ("script", "style", "noscript", "template")
_LANG = re.compile(r"[A-Za-z]{2,3}")
_MAX_MARKUP_CHARS = 10 * MAX_TEXT_CHARS  # HTML beyond this is not read (text is cut anyway)
# controls, lone surrogates, and _BREAK (which only plain_text may put in)
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufdd0]")
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_BREAK = "\ufdd0"  # a noncharacter: marks a word break before block tags (see plain_text)
_BEFORE_BLOCK_TAG = re.compile(r"<(?=/?(?:%s)[\s/>])" % "|".join(_BLOCK_TAGS), re.I)


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What one feed body held."""

    items: tuple[Item, ...]
    skipped: int  # malformed entries dropped (no link and no title, duplicate guid)
    format: str  # "rss20", "rss10", "atom10", "jsonfeed11", ... as feedparser names them
    title: str  # feed title (may be "")
    warning: str | None  # e.g. feedparser's bozo reason when it recovered anyway
    parser: str  # "fast", "feedparser" or "json"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One entry as a parser read it, before conversion (strings may hold HTML)."""

    guid: str
    link: str
    title: str
    summary: str
    content: str
    published: datetime | None
    lang: str | None
    author: str | None


@dataclass(frozen=True, slots=True)
class _Feed:
    """A parser's reading of one document, in parser-neutral form."""

    format: str
    title: str
    link: str
    lang: str | None
    entries: tuple[_Entry, ...]
    parser: str
    warning: str | None = None


def parse_feed(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
    source: str = "",
    lang: str | None = None,
    fast: bool = True,
) -> ParsedFeed:
    """Read a feed body into Items; raise ParseError when nothing feed-like is there."""
    # fast=False sends every XML document to feedparser (the reference), for comparisons.
    data = _gunzip(body)
    if not data.strip():
        raise ParseError("empty body")
    if data.removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"{":
        feed = _read_json(data)
    else:
        xml, encoding = _prepare(data, _http_charset(headers))
        fast = fast and encoding not in _FEEDPARSER_ENCODINGS
        feed = (_read_fast(xml) if fast else None) or _read_feedparser(xml)
    return _build(feed, url=url, source=source, lang=lang)


# --- bytes ---------------------------------------------------------------------------------


def _gunzip(body: bytes) -> bytes:
    """The body, decompressed when it is gzip, refusing more than MAX_DECOMPRESSED bytes."""
    if body[:2] != b"\x1f\x8b":
        return body
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, MAX_DECOMPRESSED + 1)
    except zlib.error as exc:
        raise ParseError(f"bad gzip data: {exc}") from None
    if len(data) > MAX_DECOMPRESSED:
        raise ParseError(f"gzip body inflates beyond {MAX_DECOMPRESSED} bytes")
    if not inflater.eof:
        raise ParseError("bad gzip data: truncated stream")
    return data


def _http_charset(headers: Mapping[str, str] | None) -> str | None:
    """The charset named by a Content-Type header, if any."""
    for key, value in (headers or {}).items():
        if key.lower() == "content-type":
            found = _CHARSET.search(value)
            return found.group(1) if found else None
    return None


def _prepare_xml(data: bytes, http_charset: str | None = None) -> bytes:
    """The document as UTF-8 bytes without characters XML forbids, declaration to match."""
    return _prepare(data, http_charset)[0]


def _prepare(data: bytes, http_charset: str | None) -> tuple[bytes, str]:
    """_prepare_xml's document and the encoding it was read in."""
    text_encoding = _decode_as(data, http_charset)
    if text_encoding != "utf-8":
        data = data.decode(text_encoding, errors="replace").encode("utf-8")
    data = data.removeprefix(codecs.BOM_UTF8).lstrip()
    found = _XML_DECL_ENCODING.match(data)
    if found and found.group(1).lower() not in (b"utf-8", b"utf8"):
        data = data[: found.start(1)] + b"utf-8" + data[found.end(1) :]
    data = data.translate(None, _XML_INVALID_BYTES)  # UTF-8 never uses these bytes in a sequence
    for noncharacter in _XML_NONCHARACTERS:
        data = data.replace(noncharacter, b"")
    return data, text_encoding


def _decode_as(data: bytes, http_charset: str | None) -> str:
    """The encoding to read the body with: a BOM, valid UTF-8, HTTP charset, XML declaration."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    # Valid UTF-8 wins over a declared legacy charset: servers and templates often mislabel
    # UTF-8, while real legacy text (Latin-1, cp1251, GB) is practically never valid UTF-8.
    if _decodes(data, "utf-8"):
        return "utf-8"
    declared = _XML_DECL_ENCODING.match(data)
    names = [http_charset, declared.group(1).decode("ascii") if declared else None]
    for name in names:
        encoding = _known_encoding(name)
        if encoding and _decodes(data, encoding):
            return encoding
    return "cp1252" if _decodes(data, "cp1252") else "latin-1"  # undeclared: feedparser's guess


def _decodes(data: bytes, encoding: str) -> bool:
    """Whether the bytes decode strictly in this encoding."""
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _known_encoding(name: str | None) -> str | None:
    """The Python codec for a declared charset (legacy names widened), or None."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    return _SUPERSETS.get(codec, codec)


# --- fast path -----------------------------------------------------------------------------

# Child element keys as _children spells them (lowercased, like feedparser's names).
_TEXT_KEYS = {  # format -> (summary, content)
    "rss20": ("description", _CONTENT_ENCODED),
    "rss10": (f"{_RSS1}description", _CONTENT_ENCODED),
    "atom10": (f"{_ATOM}summary".lower(), f"{_ATOM}content".lower()),
}
# Where feedparser reads an entry's `published` and `updated` dates from.
# (un-namespaced published/updated in RSS items: feedparser reads them as Atom's)
_PUBLISHED_KEYS = ("pubdate", f"{_ATOM}published".lower(), f"{_DCTERMS}issued", "published")
_UPDATED_KEYS = (f"{_DC}date", f"{_ATOM}updated".lower(), f"{_DCTERMS}modified", "updated")
_ATOM_AUTHOR = f"{_ATOM}author".lower()
_MEDIA_TITLE = "{http://search.yahoo.com/mrss/}title"
_TITLE_KEYS = ("title", f"{_RSS1}title", f"{_ATOM}title".lower(), f"{_DC}title", _MEDIA_TITLE)
_SOURCE_KEYS = ("source", f"{_ATOM}source".lower())  # their titles name another feed
_LINK_KEYS = ("link", f"{_RSS1}link", f"{_ATOM}link".lower())
_ID_KEYS = ("guid", f"{_ATOM}id".lower())
_HTML_TYPES = {"html": "text/html", "xhtml": "application/xhtml+xml"}
_AUTHOR_KEYS = ("author", f"{_DC}creator", "{http://www.itunes.com/dtds/podcast-1.0.dtd}author")


def _read_fast(xml: bytes) -> _Feed | None:
    """The lxml tree's reading, or None when this document must go to feedparser."""
    shape = _fast_shape(xml)
    if shape is None:
        return None
    root, fmt, items = shape
    try:
        channel = _channel(root, fmt)
        title_el = next((el for el in channel if isinstance(el.tag, str)
                         and _key(el.tag) in _TITLE_KEYS), None)
        title = (_inner_markup(title_el) if title_el is not None else "").strip()
        entries = tuple(_entry_from_tree(el, fmt) for el in items)
    except Exception:  # noqa: BLE001 (a surprise in the tree only means: use feedparser)
        return None
    return _Feed(fmt, title, _tree_link(root, fmt), _tree_lang(root, fmt), entries, "fast")


def _fast_shape(xml: bytes) -> tuple[Any, str, list] | None:
    """(root, format, item elements) when the document is plain enough for the fast path."""
    if b"xml:base" in xml:
        return None  # feedparser resolves xml:base; fastfeedparser ignores it
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=False)
    try:
        root = etree.fromstring(xml, parser)
    except (etree.XMLSyntaxError, ValueError):
        return None
    if root.getroottree().docinfo.doctype:
        return None  # a DOCTYPE may declare entities: feedparser's job
    fmt, item_tag, items = _shape_of(root)
    if not fmt or sum(1 for _ in root.iter(item_tag)) != len(items):
        return None  # items nested where feedparser would also look
    if sum(1 for _ in root.iter("{*}item", "{*}entry")) != len(items):
        return None  # items or entries of another format or namespace: feedparser counts some
    if b"mode=" in xml and any(el.get("mode") is not None for el in root.iter()):
        return None  # Atom 0.3 text modes (base64, escaped): feedparser decodes them
    if any(_foreign_fields(item, fmt) for item in items):
        return None
    return root, fmt, items


# Item children that feedparser reads whatever the format around them (un-namespaced Atom
# vocabulary in RSS, Atom 0.3 names in Atom 1.0); an item with one goes to feedparser.
_ATOMISH = frozenset({"id", "issued", "modified", "created", "summary", "content"})
_ATOM10_ENTRY = frozenset({"id", "title", "link", "updated", "published", "summary", "content",
                           "author", "contributor", "category", "rights", "source"})


def _foreign_fields(item: Any, fmt: str) -> bool:
    """Whether an item has fields the fast path would read differently from feedparser."""
    for child in item:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if fmt == "atom10":
            if tag.startswith(_ATOM) and tag[len(_ATOM):] not in _ATOM10_ENTRY:
                return True
        elif tag[0] != "{" and (tag in _ATOMISH or (tag == "link" and child.get("href"))):
            return True
    return False


def _shape_of(root: Any) -> tuple[str, str, list]:
    """(format, item tag, items) for RSS 2.0, RSS 1.0 and Atom 1.0 roots; ("", "", []) else."""
    if root.tag == "rss" and root.get("version") == "2.0":
        return "rss20", "item", root.findall("channel/item")
    if root.tag == f"{_ATOM}feed":
        return "atom10", f"{_ATOM}entry", root.findall(f"{_ATOM}entry")
    if root.tag == f"{_RDF}RDF" and root.find(f"{_RSS1}channel") is not None:
        return "rss10", f"{_RSS1}item", root.findall(f"{_RSS1}item")
    return "", "", []


def _channel(root: Any, fmt: str) -> Any:
    """The element holding the feed's own fields."""
    if fmt == "atom10":
        return root
    return root.find("channel") if fmt == "rss20" else root.find(f"{_RSS1}channel")


def _tree_link(root: Any, fmt: str) -> str:
    """The feed's web page, as feedparser picks it (the RSS link, Atom's alternate link)."""
    channel = _channel(root, fmt)
    if fmt != "atom10":
        return (channel.findtext("link" if fmt == "rss20" else f"{_RSS1}link") or "").strip()
    hrefs = [el.get("href", "").strip() for el in channel.findall(f"{_ATOM}link")
             if el.get("href") is not None and _is_html_alternate(el)]
    return hrefs[-1] if hrefs else ""  # feedparser keeps the last one


def _tree_lang(root: Any, fmt: str) -> str | None:
    """The feed's declared language, read from the tree."""
    channel = _channel(root, fmt)
    for tag in ("language", f"{_DC}language"):
        if (text := channel.findtext(tag)) and text.strip():
            return text.strip()
    return channel.get(_XML_LANG) or root.get(_XML_LANG)


def _entry_from_tree(element: Any, fmt: str) -> _Entry:
    """An item element in neutral form, read as feedparser reads it."""
    fields = _children(element)
    summary_key, content_key = _TEXT_KEYS[fmt]
    return _Entry(
        guid=_tree_guid(fields, element),
        link=_tree_entry_link(element),
        title=_tree_title(element),
        summary=_text_field(fields, summary_key),
        content=_text_field(fields, content_key),
        published=_first_date(_texts(fields, _PUBLISHED_KEYS), _texts(fields, _UPDATED_KEYS)),
        lang=next(iter(_texts(fields, (f"{_DC}language",))), None),
        author=_authors(_tree_authors(element)),
    )


def _text_field(fields: Mapping[str, list], key: str) -> str:
    """A text element's content ("" when absent): its text, or its markup when it has children."""
    found = fields.get(key)
    if not found:
        return ""
    return _inner_markup(found[0])


def _tree_entry_link(element: Any) -> str:
    """The entry's link by feedparser's rules: last text link or HTML alternate, else the guid."""
    link = None
    for child in element:
        key = _key(child.tag) if isinstance(child.tag, str) else ""
        if key in _LINK_KEYS and child.get("href") is not None:
            if _is_html_alternate(child):
                link = child.get("href", "").strip()
        elif key in _LINK_KEYS:
            link = (child.text or "").strip()
        elif key in _ID_KEYS and link is None and _is_permalink(child):
            link = (child.text or "").strip()
    return link or ""


def _is_html_alternate(link: Any) -> bool:
    """Whether an href link is the alternate HTML page (rel and type defaulted as feedparser)."""
    rel = link.get("rel", "alternate").strip().lower()
    kind = link.get("type", "application/atom+xml" if rel == "self" else "text/html").lower()
    return rel == "alternate" and _HTML_TYPES.get(kind, kind) in ("text/html",
                                                                   "application/xhtml+xml")


def _is_permalink(guid: Any) -> bool:
    """Whether a guid (or Atom id) doubles as the link: isPermaLink, true unless said otherwise."""
    flag = next((v for k, v in guid.attrib.items() if k.lower() == "ispermalink"), "true")
    return flag == "true"


def _tree_title(element: Any) -> str:
    """The entry's title as feedparser settles it among title, dc:title, media:title, image."""
    # feedparser keeps the shallowest title seen; a non-empty title or dc:title then locks out
    # any as deep or deeper, media:title never locks, and an <image> lifts the lock.
    title, stored, lock = "", None, None
    for depth, key, child in _walk(element):
        if key == "image":
            lock = None
        elif key in _TITLE_KEYS and (lock is None or depth < lock):
            if stored is None or depth <= stored:
                title, stored = _inner_markup(child), depth
                if title.strip() and key != _MEDIA_TITLE:
                    lock = depth
    return title


def _walk(element: Any, depth: int = 1) -> Iterator[tuple[int, str, Any]]:
    """(depth, key, element) for the element's descendants in document order, sources skipped."""
    for child in element:
        key = _key(child.tag) if isinstance(child.tag, str) else ""
        yield depth, key, child
        if key not in _TITLE_KEYS and key not in _SOURCE_KEYS:
            yield from _walk(child, depth + 1)


def _inner_markup(element: Any) -> str:
    """An element's text, or its inner markup when it holds child elements."""
    if len(element) == 0:
        return element.text or ""
    inner = (etree.tostring(child, method="html", encoding="unicode") for child in element)
    return html.escape(element.text or "", quote=False) + "".join(inner)


def _tree_guid(fields: Mapping[str, list], element: Any) -> str:
    """The entry's id as feedparser reads it: the last guid or Atom id, else rdf:about."""
    ids = _texts(fields, _ID_KEYS)
    return ids[-1] if ids else (element.get(f"{_RDF}about") or "").strip()


def _children(element: Any) -> dict[str, list]:
    """An element's children by tag, lowercased as feedparser compares them."""
    found: dict[str, list] = {}
    for child in element:
        if isinstance(child.tag, str):
            found.setdefault(_key(child.tag), []).append(child)
    return found


@functools.lru_cache(maxsize=4096)  # a feed uses a few dozen tags, thousands of times
def _key(tag: str) -> str:
    """A tag as feedparser matches it: lowercased, an https namespace read as http."""
    return tag.lower().replace("{https://", "{http://", 1)


def _texts(fields: Mapping[str, list], keys: Iterable[str]) -> list[str]:
    """The stripped non-empty texts of the children under these keys, in key order."""
    return [t for k in keys for el in fields.get(k, ()) if (t := (el.text or "").strip())]


def _tree_authors(element: Any) -> list[str]:
    """Author names from author, dc:creator, itunes:author and Atom author, in document order."""
    names = []
    for child in element:
        key = _key(child.tag) if isinstance(child.tag, str) else ""
        if key == _ATOM_AUTHOR:
            names.append(child.findtext(f"{_ATOM}name") or child.findtext(f"{_ATOM}email") or "")
        elif key in _AUTHOR_KEYS:
            names.append(child.text or "")
    return names


# --- feedparser ----------------------------------------------------------------------------


def _read_feedparser(xml: bytes) -> _Feed:
    """feedparser's reading of a document; ParseError when it finds no feed in it."""
    try:  # BytesIO: feedparser would fetch a str that looks like a URL or a path
        parsed = feedparser.parse(io.BytesIO(xml), sanitize_html=False,
                                  resolve_relative_uris=False)
    except Exception as exc:  # noqa: BLE001 (it should never raise; if it does, say so)
        raise ParseError(f"not a feed: feedparser failed ({type(exc).__name__}: {exc})") from None
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    fmt = parsed.get("version") or ""
    if not fmt and not parsed.entries:
        raise ParseError(_not_a_feed(xml, problem))
    rss = not fmt.startswith("atom")
    entries = tuple(_entry_from_feedparser(e, rss) for e in parsed.entries)
    head = parsed.feed
    return _Feed(fmt or "unknown", _str(_raw(head, "title")), _str(_raw(head, "link")),
                 _raw(head, "language"), entries, "feedparser", _str(problem) or None)


def _not_a_feed(xml: bytes, problem: object) -> str:
    """Why a document that feedparser could not read is not a feed."""
    head = xml[:1024].lower()
    if b"<html" in head or b"<!doctype html" in head:
        return "not a feed: got an HTML page"
    return f"not a feed: {problem or 'no RSS, Atom or RDF element found'}"


def _entry_from_feedparser(entry: Mapping[str, Any], rss: bool) -> _Entry:
    """A feedparser entry in neutral form."""
    # In RSS, feedparser files media:description captions (text/plain) as summary or content.
    caption = rss and (_raw(entry, "summary_detail") or {}).get("type") == "text/plain"
    contents = [c for c in _raw(entry, "content") or () if not rss or c.get("type") == "text/html"]
    return _Entry(
        guid=_str(_raw(entry, "id")),
        link=_str(_raw(entry, "link")),
        title=_str(_raw(entry, "title")),
        summary="" if caption else _str(_raw(entry, "summary")),
        content=_str(contents[0].get("value")) if contents else "",
        published=_first_date([_str(_raw(entry, "published"))], [_str(_raw(entry, "updated"))]),
        lang=_raw(entry, "language"),
        author=_authors(_feedparser_authors(entry, rss)),
    )


def _raw(entry: Mapping[str, Any], key: str) -> Any:
    """A feedparser entry field as stored, without FeedParserDict's aliases and fallbacks."""
    return dict.get(entry, key)


def _feedparser_authors(entry: Mapping[str, Any], rss: bool) -> list[str]:
    """Author names; a lone RSS author as written (feedparser's name/email split can garble it)."""
    authors = _raw(entry, "authors") or ()
    if rss and len(authors) <= 1:
        return [_str(_raw(entry, "author"))]
    return [_str(a.get("name") or a.get("email")) for a in authors]


# --- JSON Feed -----------------------------------------------------------------------------


def _read_json(data: bytes) -> _Feed:
    """A JSON Feed 1.0/1.1 document in neutral form."""
    try:
        doc = json.loads(data.decode(_decode_as(data, None)).lstrip("\ufeff"), strict=False)
    except ValueError as exc:
        raise ParseError(f"not a feed: invalid JSON ({exc})") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise ParseError("not a feed: JSON without a jsonfeed.org version")
    number = version.rstrip("/").rsplit("/", 1)[-1].replace(".", "").ljust(2, "0")  # 1 -> 10
    items = doc.get("items") if isinstance(doc.get("items"), list) else []
    return _Feed(f"jsonfeed{number}", _str(doc.get("title")), _str(doc.get("home_page_url")),
                 _str(doc.get("language")) or None,
                 tuple(_entry_from_json(i) for i in items if isinstance(i, dict)), "json")


def _entry_from_json(item: Mapping[str, Any]) -> _Entry:
    """A JSON Feed item in neutral form."""
    authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
    names = (_str(a.get("name")) for a in authors if isinstance(a, dict))
    return _Entry(
        guid=_str(item.get("id")),
        link=_str(item.get("url") or item.get("external_url")),
        title=_str(item.get("title")),
        summary=_str(item.get("summary")),
        content=_str(item.get("content_html")) or html.escape(_str(item.get("content_text"))),
        published=_first_date([_str(item.get("date_published"))],
                              [_str(item.get("date_modified"))]),
        lang=_str(item.get("language")) or None,
        author=_authors(names),
    )


# --- conversion (one place for every parser) -----------------------------------------------


def _build(feed: _Feed, *, url: str, source: str, lang: str | None) -> ParsedFeed:
    """Items from a parser's reading: links resolved, text plain, duplicates dropped."""
    title = plain_text(feed.title)
    base = _absolute_link(feed.link, url) or url
    feed_lang = _primary_language(feed.lang) or _primary_language(lang)
    items, seen = [], set()
    for entry in feed.entries:
        item = _item_from_entry(entry, feed=url, base=base, lang=feed_lang,
                                source=source or title)
        if item is None or item.guid in seen:
            continue
        seen.add(item.guid)
        items.append(item)
    return ParsedFeed(tuple(items), len(feed.entries) - len(items), feed.format, title,
                      feed.warning, feed.parser)


def _item_from_entry(entry: _Entry, *, feed: str, base: str, lang: str | None,
                     source: str) -> Item | None:
    """The Item for one entry, or None when it has neither link nor title."""
    link = _absolute_link(entry.link, base)
    title = plain_text(entry.title)
    if not link and not title:
        return None
    summary_html = entry.summary if entry.summary != entry.content else ""
    content = plain_text(entry.content)[:MAX_TEXT_CHARS]
    summary = plain_text(summary_html)[:MAX_TEXT_CHARS] or content
    fingerprint = title_fingerprint(title, summary)
    guid = entry.guid.strip() or link or fingerprint
    return Item(feed=feed, guid=guid, url=canonical_url(link), link=link, title=title,
                summary=summary, content=content, published=entry.published,
                lang=_primary_language(entry.lang) or lang, author=entry.author, source=source,
                fingerprint=fingerprint)


def _absolute_link(link: str, base: str, *, fast: bool = True) -> str:
    """The link resolved against the base, "" unless it is an http(s) URL."""
    # Feeds often escape '&' twice in links; feedparser undoes that, so every path does.
    link = link.strip()
    if "&" in link:
        link = _ENTITY.sub(r"&\1", link.replace("&amp;", "&"))
    if fast and _PLAIN_ABSOLUTE.fullmatch(link):
        return link  # what urljoin returns for it (tests/test_parse.py proves it)
    try:
        absolute = urljoin(base, link) if link else ""
    except ValueError:  # e.g. a malformed IPv6 host
        return ""
    return absolute if absolute.split(":", 1)[0].lower() in ("http", "https") else ""


_ENTITY = re.compile(r"&([A-Za-z0-9_]+);")
# An absolute http(s) URL that urljoin gives back unchanged, whatever the base: a host, then
# only plain ASCII (no ";" params, brackets, spaces), no empty "?" or "#" that it would drop.
_URL_CHAR = r"A-Za-z0-9\-._~!$&'()*+,=:@%"
_PLAIN_ABSOLUTE = re.compile(
    rf"https?://[{_URL_CHAR}]+(?:/[{_URL_CHAR}/]*)?(?:\?[{_URL_CHAR}/?]+)?(?:#[{_URL_CHAR}/?#]+)?")


# --- values --------------------------------------------------------------------------------


def _primary_language(tag: str | None) -> str | None:
    """The lowercase primary subtag of a language tag ("pt-BR", "en_US" -> "pt", "en")."""
    primary = re.split(r"[-_\s]", (tag or "").strip(), maxsplit=1)[0]
    return primary.lower() if _LANG.fullmatch(primary) else None


def _str(value: object) -> str:
    """A string field, "" when absent."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def _first_date(*candidates: Iterable[str]) -> datetime | None:
    """The first of these date strings that reads as a plausible date, in UTC."""
    return next((d for group in candidates for raw in group if (d := _parse_date(raw))), None)


def _parse_date(raw: str) -> datetime | None:
    """An RFC 822, ISO 8601 or looser date string as an aware UTC datetime, else None."""
    raw = raw.strip()
    if not raw or len(raw) > 100:
        return None
    moment = _rfc822(raw) or _iso8601(raw) or _loose(raw)
    if moment is None:
        return None
    if moment.tzinfo is None:  # no zone given: read it as UTC
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment = moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None
    return moment if MIN_YEAR <= moment.year <= MAX_YEAR else None


def _rfc822(raw: str) -> datetime | None:
    """RSS's date format (any weekday name, lowercase months accepted)."""
    try:
        return email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _iso8601(raw: str) -> datetime | None:
    """Atom's and JSON Feed's date format."""
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _loose(raw: str) -> datetime | None:
    """Other spellings ("2020/1/10 14:33"); a missing year stays year 1, so it is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dateutil warns about unknown zone names
            return dateutil.parser.parse(raw, default=_NO_DATE)
    except (ValueError, OverflowError, TypeError):
        return None


_NO_DATE = datetime(1, 1, 1)  # dateutil's default; never the clock, so parsing stays pure


def _authors(names: Iterable[str]) -> str | None:
    """Distinct author names in order, joined by commas; None when there are none."""
    unique = dict.fromkeys(n for name in names if (n := _author_name(name)))
    return ", ".join(unique) or None


def _author_name(raw: str) -> str:
    """The name in "jo@x.org (Jo Doe)", "Jo Doe (jo@x.org)" or "Jo Doe <jo@x.org>"."""
    text = " ".join(raw.split())
    found = _AUTHOR_FORMS.fullmatch(text)
    if found:
        return next(g for g in found.groups() if g).strip()
    return text


_AUTHOR_FORMS = re.compile(r"\S+@\S+\s*\((.+)\)|(.+?)\s*[(<]\S+@[^\s)>]+[)>]")


# --- text ----------------------------------------------------------------------------------


def plain_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, whitespace collapsed."""
    markup = _UNSAFE_CHARS.sub("", markup[:_MAX_MARKUP_CHARS])
    if "<" not in markup and "&" not in markup:
        return " ".join(markup.split())
    # A block tag (opening or closing) separates words: mark the place before parsing, as a
    # character the HTML parser keeps wherever it puts the text (a space may be dropped as
    # ignorable whitespace); cheaper than visiting the block elements of the tree afterwards.
    marked = _BEFORE_BLOCK_TAG.sub(_BREAK + "<", markup)
    try:
        root = etree.HTML(marked)  # lxml's HTML parser: libxml2, lenient like a browser
    except (etree.LxmlError, ValueError):  # e.g. an encoding declaration: use the stdlib
        return " ".join(_StdlibText.text_of(markup).split())
    if root is None:
        return ""
    etree.strip_elements(root, *_SKIP_TAGS, with_tail=False)
    text = etree.tostring(root, method="text", encoding="unicode")  # all text nodes, in C
    if "&#" in markup:  # a character reference may have brought a control character back
        text = _CONTROL_CHARS.sub("", text)
    return " ".join(text.replace(_BREAK, " ").split())


class _StdlibText(HTMLParser):
    """The standard library's HTML tokenizer, collecting text (the fallback)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    @classmethod
    def text_of(cls, markup: str) -> str:
        """Text of a fragment, tags dropped."""
        reader = cls()
        reader.feed(markup)
        reader.close()
        return "".join(reader.parts)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.skipping += tag in _SKIP_TAGS
        self.parts.append(" " if tag in _BLOCK_TAGS else "")

    def handle_endtag(self, tag: str) -> None:
        self.skipping -= tag in _SKIP_TAGS and self.skipping > 0
        self.parts.append(" " if tag in _BLOCK_TAGS else "")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)
