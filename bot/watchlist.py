"""Operators' YAML: load `watchlists/`, validate it, report every problem at file:line:col.

`feeds.yaml` lists the sources; every other `*.yaml` holds `aliases` and `topics`. Aliases
are shared by all topic files. Loading is all-or-nothing: `load_watchlist` returns a
`Watchlist` or raises `WatchlistError` with every problem found, so a running bot can keep
its last good watchlist when an edit is broken.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Mapping, Union
from urllib.parse import quote_plus, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import QuerySyntaxError, WatchlistError
from .lemmas import prepare as prepare_lemmas, words_in as lemma_words
from .model import FeedSpec, Topic
from .query import alias_hint, alias_terms, compile_query, make_term
from .text import is_cjk

FEEDS_FILE = "feeds.yaml"
_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
_LANG = re.compile(r"^[a-z]{2,3}$")
_DURATION = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s?)?\s*$")
MIN_INTERVAL, MAX_INTERVAL = 60, 86_400


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a watchlist file."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


# ---------------------------------------------------------------- schema


def parse_interval(v: Any) -> int:
    """Seconds from an int or a duration like '90s', '10m', '1h30m'."""
    if isinstance(v, bool):
        raise ValueError("interval must be seconds or a duration like '10m'")
    if isinstance(v, int):
        secs = v
    elif isinstance(v, str) and v.strip() and (m := _DURATION.match(v)) and any(m.groups()):
        h, mi, s = (int(x or 0) for x in m.groups())
        secs = h * 3600 + mi * 60 + s
    else:
        raise ValueError(f"interval {v!r} is not seconds or a duration like '10m', '1h'")
    if not MIN_INTERVAL <= secs <= MAX_INTERVAL:
        raise ValueError(f"interval {secs}s is outside {MIN_INTERVAL}s..{MAX_INTERVAL}s")
    return secs


def private_host(url: str) -> str | None:
    """Why a feed URL's host is not public ("loopback", "private"...), from the URL alone."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host or urlsplit(url).scheme == "file":
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None  # a name: only the fetcher, resolving it, can tell
    from .fetch import blocked_reason  # the one list of refused addresses

    return blocked_reason(host)


def _id_problem(v: Any) -> str:
    """Why a topic id is refused, in words, with a well-formed one to copy when possible."""
    text = str(v).strip()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    if not text:
        return "cannot be empty"
    hint = f" (e.g. {slug!r})" if slug and slug != text else ""
    if len(text) > 63:
        return f"{text[:20] + '…'!r} is {len(text)} characters long; at most 63{hint}"
    return (f"{text!r}: use lower-case letters, digits and '-' only (no spaces, capitals "
            f"or '_'), starting with a letter or digit{hint}")


# Country codes often written for a language: the language meant
_COUNTRY_FOR_LANG = {"cn": "zh", "jp": "ja", "ua": "uk", "kr": "ko", "gr": "el", "cz": "cs",
                     "dk": "da", "se": "sv", "ee": "et", "rs": "sr", "ir": "fa", "il": "he",
                     "gb": "en", "us": "en", "at": "de", "br": "pt", "by": "be", "kz": "kk"}


@functools.lru_cache(maxsize=1)
def _languages() -> dict[str, str]:
    """ISO 639 code -> English name of every language CLDR knows (through Babel)."""
    from babel import Locale  # Babel's CLDR data: the languages that exist, with names

    return {code: name for code, name in Locale("en").languages.items() if "_" not in code}


def _lang(v: Any) -> str:
    code = v.split("-")[0].split("_")[0].lower() if isinstance(v, str) else ""
    if not _LANG.match(code):
        name = str(v).lower()
        named = [c for c, n in _languages().items() if n.lower() == name]
        hint = f" (did you mean {named[0]!r}?)" if named else ""
        raise ValueError(f"{v!r} is not a language code like 'en', 'fr', 'zh'{hint}")
    if code not in _languages():
        meant = _COUNTRY_FOR_LANG.get(code)
        hint = (f"; did you mean {meant!r} ({_languages()[meant]})? {code!r} is a country"
                if meant else "")
        raise ValueError(f"unknown language code {code!r}{hint}")
    return code


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FeedModel(_Strict):
    url: str
    name: str = Field(min_length=1)
    lang: str | None = None
    interval: int | None = None
    tags: list[str] = []

    _v_interval = field_validator("interval", mode="before")(
        lambda v: None if v is None else parse_interval(v))
    _v_lang = field_validator("lang", mode="before")(lambda v: None if v is None else _lang(v))

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme == "file" and parts.path:
            return v
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in v:
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class FeedDefaults(_Strict):
    interval: int | None = None
    _v_interval = field_validator("interval", mode="before")(
        lambda v: None if v is None else parse_interval(v))


class FeedsFile(_Strict):
    defaults: FeedDefaults = FeedDefaults()
    feeds: list[dict[str, Any]] = []  # each validated on its own as a FeedModel


class TopicModel(_Strict):
    id: str
    title: str = Field(min_length=1)
    query: str = Field(min_length=1)
    context: str = ""
    priority: Literal["high", "normal", "low"] = "normal"
    languages: list[str] = []
    feeds: list[str] = []
    tags: list[str] = []
    search: Union[list[str], dict[str, str]] = []
    # a coverage surge: this many times the topic's usual rate of new stories (VEILLE_SURGE_*)
    surge: Union[float, None] = Field(default=None, ge=1)
    destinations: list[Any] = []  # chats posted to directly (checked by destination())
    preview: bool = False  # Telegram link previews for this topic's alerts

    _v_langs = field_validator("languages", mode="before")(
        lambda v: [_lang(x) for x in v] if isinstance(v, list) else v)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # `id: 2024` reads as a number in YAML
        if not isinstance(v, str):
            raise ValueError("must be text like 'power-of-siberia-2'")
        if not re.match(_ID, v.strip()):
            raise ValueError(_id_problem(v))
        return v

    @field_validator("search", mode="before")
    @classmethod
    def _search(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [_lang(x) for x in v]
        if isinstance(v, dict):
            return {_lang(k): str(q) for k, q in v.items()}
        return v


def destination(value: Any) -> tuple[str, int]:
    """'@channel', -100123, '-100123' or {chat, thread} as (chat, thread); ValueError if bad."""
    chat, thread = value, 0
    if isinstance(value, dict):
        unknown = set(value) - {"chat", "thread"}
        if unknown or "chat" not in value:
            raise ValueError("a destination is {chat: ..., thread: N}; "
                             + (f"unknown key {sorted(unknown)[0]!r}" if unknown
                                else "`chat` is missing"))
        chat, thread = value["chat"], value.get("thread", 0)
        if isinstance(thread, bool) or not isinstance(thread, int) or thread < 0:
            raise ValueError(f"thread must be a forum topic's id (a whole number), not {thread!r}")
    text = str(chat).strip()
    if isinstance(chat, bool) or not (re.fullmatch(r"@[A-Za-z][A-Za-z0-9_]{3,31}", text)
                                      or re.fullmatch(r"-?[0-9]{1,20}", text)):
        raise ValueError(f"not a Telegram chat: {chat!r} (use @channelname or a numeric chat id "
                         "such as -1001234567890, with `thread:` for a forum topic)")
    return text, int(thread)


class TopicsFile(_Strict):
    aliases: dict[str, list[str]] = {}
    topics: list[dict[str, Any]] = []  # each validated on its own as a TopicModel

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, entries in v.items():
            if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", name):
                raise ValueError(f"alias name {name!r}: use letters, digits, '_', '-', '.'")
            if not entries:
                raise ValueError(f"alias {name!r} is empty")
        return v


# ---------------------------------------------------------------- YAML with positions


class _Located:
    """A YAML document as plain data plus the position of every key and value."""

    def __init__(self, path: Path, text: str, problems: list[Problem]) -> None:
        self.file = str(path)
        self.lines = text.splitlines()
        self.values: dict[tuple, yaml.Node] = {}
        self.keys: dict[tuple, yaml.Node] = {}
        self.problems = problems
        self.data: Any = None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            what = getattr(exc, "problem", None) or str(exc)
            problems.append(Problem(self.file, line, col, f"YAML syntax: {what}"))
            return
        self.data = {} if node is None else self._convert(node, ())

    def _convert(self, node: yaml.Node, path: tuple) -> Any:
        self.values[path] = node
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for k, v in node.value:
                key = self._convert(k, (*path, "<key>"))
                if not isinstance(key, (str, int)):
                    self._add(k, "a key must be a plain string")
                    continue
                if key in out:
                    self._add(k, f"duplicate key {key!r} (first at line "
                                 f"{self.keys[(*path, key)].start_mark.line + 1})")
                    continue
                self.keys[(*path, key)] = k
                out[key] = self._convert(v, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(v, (*path, i)) for i, v in enumerate(node.value)]
        return yaml.SafeLoader(" ").construct_object(node)  # a scalar: int, str, bool...

    def _add(self, node: yaml.Node, message: str) -> None:
        m = node.start_mark
        self.problems.append(Problem(self.file, m.line + 1, m.column + 1, message))

    def at(self, path: tuple, message: str, *, key: bool = False) -> None:
        """Record a problem at the value (or key) for path, or its closest located parent."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p and p not in table and p not in self.values:
            p = p[:-1]
        node = table.get(p) or self.values.get(p)
        if node is None:
            self.problems.append(Problem(self.file, 1, 1, message))
        else:
            self._add(node, message)

    def at_char(self, path: tuple, offset: int, message: str) -> None:
        """Record a problem at a character offset inside a scalar string value."""
        node = self.values.get(path)
        if node is None:
            return self.at(path, message)
        line, col = _char_position(node, offset, self.lines)
        self.problems.append(Problem(self.file, line, col, message))


def _char_position(node: yaml.ScalarNode, offset: int, lines: list[str]) -> tuple[int, int]:
    """1-based (line, col) of character `offset` of a scalar's value in the source."""
    line, col = node.start_mark.line, node.start_mark.column
    if node.style in ("|", ">"):
        line += 1
        col = None  # content starts at its indentation
    elif node.style in ("'", '"'):
        col += 1
    remaining = offset
    while line < len(lines):
        text = lines[line]
        start = col if col is not None else len(text) - len(text.lstrip())
        content = text[start:].rstrip()
        if remaining <= len(content):
            return line + 1, start + remaining + 1
        remaining -= len(content) + 1
        line, col = line + 1, None
    return node.start_mark.line + 1, node.start_mark.column + 1


def _validate(doc: _Located, model: type[BaseModel], data: Any = None,
              at: tuple = ()) -> Any:
    """Validate data (default: the whole document) located at path `at`, or record why not."""
    try:
        return model.model_validate(data if at else (doc.data if doc.data is not None else {}))
    except ValidationError as exc:
        for err in exc.errors():
            loc = at + tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                doc.at(loc, _unknown_key(str(loc[-1]), model, tuple(err["loc"])), key=True)
            elif err["type"] == "missing":
                doc.at(loc[:-1], f"missing required key {loc[-1]!r}")
            else:
                where = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
                msg = err["msg"].removeprefix("Value error, ")
                doc.at(loc, f"{where}: {msg}" if where else msg)
        return None


def _unknown_key(key: str, model: type[BaseModel], loc: tuple) -> str:
    allowed = _fields_at(model, loc[:-1])
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
    return f"unknown key {key!r}{hint}"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        if isinstance(part, int):
            continue
        ann = model.model_fields[part].annotation
        inner = getattr(ann, "__args__", (ann,))[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    return list(model.model_fields)


# ---------------------------------------------------------------- the watchlist


@dataclass(frozen=True)
class Watchlist:
    """Everything the operators declared, validated and compiled."""

    directory: Path
    feeds: tuple[FeedSpec, ...]
    topics: tuple[Topic, ...]
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fingerprint: str = ""

    @cached_property
    def matcher(self):  # -> bot.match.Matcher (imported lazily: pyahocorasick)
        from .match import Matcher

        return Matcher(self.topics)

    def topic(self, topic_id: str) -> Topic | None:
        return next((t for t in self.topics if t.id == topic_id), None)

    def all_feeds(self, *, news_search: bool = True) -> tuple[FeedSpec, ...]:
        """Declared feeds plus the news-search feeds generated for topics."""
        if not news_search:
            return self.feeds
        seen = {f.url for f in self.feeds}
        extra = [f for t in self.topics for f in search_feeds(t)
                 if f.url not in seen and not seen.add(f.url)]  # type: ignore[func-returns-value]
        return self.feeds + tuple(extra)


def fingerprint(directory: Path) -> str:
    """A digest of the YAML files' names, sizes and mtimes: changes when an edit lands."""
    h = hashlib.blake2b(digest_size=12)
    for p in sorted(Path(directory).glob("*.yaml")):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def load_watchlist(directory: str | Path, *, allow_private_urls: bool = True) -> Watchlist:
    """Load and validate every YAML file of a watchlists directory.

    allow_private_urls=False (what `veille` passes unless VEILLE_ALLOW_PRIVATE_URLS is set):
    a feed URL naming a loopback, private or link-local host is a problem here, not only a
    refusal at fetch time. The check reads the URL only (no DNS); the fetcher's guard still
    checks every address a name resolves to.
    """
    directory = Path(directory)
    problems: list[Problem] = []
    if not directory.is_dir():
        raise WatchlistError([Problem(str(directory), 1, 1, "no such watchlists directory")])
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not files:
        raise WatchlistError([Problem(str(directory), 1, 1, "no *.yaml files found")])
    docs = {p: _Located(p, _read(p, problems), problems) for p in files}
    feeds = _load_feeds(directory, docs, problems, allow_private_urls)
    topic_docs = _topic_docs(docs)
    aliases, broken = _collect_aliases(topic_docs)
    prepare_lemmas(lemma_words([*(e for v in aliases.values() for e in v), *(  # one pass
        str(t.get("query")) for _, m in topic_docs for t in m.topics if isinstance(t, dict))]))
    topics = _load_topics(topic_docs, aliases, broken, feeds)
    if problems:
        raise WatchlistError(sorted(problems, key=lambda p: (p.file, p.line, p.col)))
    return Watchlist(directory, tuple(feeds), tuple(topics),
                     {k: tuple(v) for k, v in aliases.items()}, fingerprint(directory))


def _read(path: Path, problems: list[Problem]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(str(path), 1, 1, f"not UTF-8 text ({exc.reason})"))
    except OSError as exc:
        problems.append(Problem(str(path), 1, 1, f"cannot read: {exc.strerror}"))
    return ""


def _load_feeds(directory: Path, docs: dict[Path, _Located], problems: list[Problem],
                allow_private_urls: bool = True) -> list[FeedSpec]:
    path = directory / FEEDS_FILE
    doc = docs.get(path)
    if doc is None:
        problems.append(Problem(str(path), 1, 1, "missing: the feed list lives in feeds.yaml"))
        return []
    model = _validate(doc, FeedsFile) if doc.data is not None else None
    if model is None:
        return []
    out, seen, names = [], {}, {}
    default = model.defaults.interval or 600
    for i, raw in enumerate(model.feeds):
        f = _validate(doc, FeedModel, raw, ("feeds", i))
        if f is None:
            continue
        line = doc.values[("feeds", i)].start_mark.line + 1
        if f.url in seen:
            doc.at(("feeds", i, "url"), f"duplicate feed URL (first at line {seen[f.url]})")
            continue
        if f.name in names:  # topics name their feeds: two of one name would be ambiguous
            doc.at(("feeds", i, "name"), f"duplicate feed name {f.name!r} (first at line "
                                         f"{names[f.name]}); topics refer to feeds by name")
            continue
        if not allow_private_urls and (why := private_host(f.url)):
            doc.at(("feeds", i, "url"), f"feed URL on a {why} address: veille refuses to fetch "
                                        "it unless VEILLE_ALLOW_PRIVATE_URLS=1")
            continue
        seen[f.url], names[f.name] = line, line
        out.append(FeedSpec(url=f.url, name=f.name, lang=f.lang, interval=f.interval or default,
                            tags=tuple(f.tags), where=f"{path}:{line}"))
    return out


def _topic_docs(docs: dict[Path, _Located]) -> list[tuple[_Located, TopicsFile]]:
    out = []
    for path, doc in docs.items():
        if path.name == FEEDS_FILE or doc.data is None:
            continue
        model = _validate(doc, TopicsFile)
        if model is not None:
            out.append((doc, model))
    return out


def _collect_aliases(topic_docs: list[tuple[_Located, TopicsFile]]
                     ) -> tuple[dict[str, list[str]], set[str]]:
    """All alias groups, and the names of those that are broken (already reported)."""
    aliases: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    for doc, model in topic_docs:
        for name, entries in model.aliases.items():
            if name in aliases:
                doc.at(("aliases", name), f"alias @{name} is defined twice (also at {where[name]})",
                       key=True)
                continue
            aliases[name] = entries
            where[name] = f"{doc.file}:{doc.keys[('aliases', name)].start_mark.line + 1}"
    broken = {name for doc, model in topic_docs for name, entries in model.aliases.items()
              if not _check_alias(doc, name, entries, aliases)}
    return aliases, broken


def _check_alias(doc: _Located, name: str, entries: list[str], aliases) -> bool:
    ok = True
    for i, entry in enumerate(entries):
        try:
            if entry.strip().startswith("@"):
                alias_terms(entry.strip()[1:], aliases, (name,))
            else:
                make_term(entry, True)
        except KeyError as exc:
            doc.at(("aliases", name, i), f"alias @{name}: unknown alias @{exc.args[0]} "
                                         f"({alias_hint(exc.args[0], aliases)})")
            ok = False
        except (ValueError, QuerySyntaxError) as exc:
            doc.at(("aliases", name, i), f"alias @{name}: {exc}")
            ok = False
    return ok


def _load_topics(topic_docs: list[tuple[_Located, TopicsFile]], aliases: dict[str, list[str]],
                 broken: set[str], feeds: list[FeedSpec]) -> list[Topic]:
    topics: list[Topic] = []
    first: dict[str, str] = {}
    names = {f.name for f in feeds} | {f.url for f in feeds}
    tags = {t for f in feeds for t in f.tags}
    for doc, model in topic_docs:
        for i, raw in enumerate(model.topics):
            t = _validate(doc, TopicModel, raw, ("topics", i))
            query = raw.get("query") if isinstance(raw, dict) else None
            compiled = (_compile_topic(doc, i, raw, aliases, broken)
                        if isinstance(query, str) else None)
            if t is None or compiled is None:
                continue
            line = doc.values[("topics", i)].start_mark.line + 1
            if t.id in first:
                doc.at(("topics", i, "id"), f"duplicate topic id {t.id!r} (first at {first[t.id]})")
                continue
            first[t.id] = f"{doc.file}:{line}"
            for j, ref in enumerate(t.feeds):
                if feeds and ref not in names:
                    _unknown(doc, ("topics", i, "feeds", j), "feed", ref, names)
            for j, tag in enumerate(t.tags):
                if feeds and tag not in tags:
                    _unknown(doc, ("topics", i, "tags", j), "feed tag", tag, tags)
            search = t.search if isinstance(t.search, dict) else {lang: "" for lang in t.search}
            chats: list[tuple[str, int]] = []
            for j, d in enumerate(t.destinations):
                try:
                    chats.append(destination(d))
                except ValueError as exc:
                    doc.at(("topics", i, "destinations", j), str(exc))
            topic = Topic(
                id=t.id, title=t.title, query=t.query, compiled=compiled,
                context=" ".join(t.context.split()), priority=t.priority,
                languages=tuple(t.languages), feeds=tuple(t.feeds), tags=tuple(t.tags),
                search=tuple(sorted(search.items())), where=f"{doc.file}:{line}",
                destinations=tuple(dict.fromkeys(chats)), preview=t.preview, surge=t.surge)
            for lang, _ in topic.search:
                if not search_query(topic, lang):
                    doc.at(("topics", i, "search"),
                           f"search: no phrase of topic {t.id!r} suits language {lang!r} (terms "
                           f"with * cannot be searched); give it: search: {{{lang}: '\"...\"'}}")
            topics.append(topic)
    return topics


def _compile_topic(doc: _Located, i: int, raw: dict, aliases: dict[str, list[str]],
                   broken: set[str]) -> Any:
    """The compiled query of topic i, or None with the problem recorded at its character."""
    try:
        return compile_query(raw["query"], aliases)
    except QuerySyntaxError as exc:
        if not any(f"@{name}" in raw["query"] for name in broken):  # reported at the alias
            name = raw.get("id", f"#{i + 1}")
            doc.at_char(("topics", i, "query"), exc.pos,
                        f"topic {name!r}: query: {exc.message}\n{_indent(exc.pointer())}")
        return None


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _unknown(doc: _Located, path: tuple, what: str, value: str, known: set[str]) -> None:
    close = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    doc.at(path, f"unknown {what} {value!r}{hint}")


# ---------------------------------------------------------------- news-search feeds

# Google News editions by language: (hl, gl, ceid)
_GOOGLE_EDITIONS = {
    "en": ("en-US", "US", "US:en"), "fr": ("fr", "FR", "FR:fr"), "de": ("de", "DE", "DE:de"),
    "ru": ("ru", "RU", "RU:ru"), "zh": ("zh-CN", "CN", "CN:zh-Hans"), "es": ("es", "ES", "ES:es"),
    "it": ("it", "IT", "IT:it"), "pt": ("pt-BR", "BR", "BR:pt-419"), "ja": ("ja", "JP", "JP:ja"),
    "uk": ("uk", "UA", "UA:uk"), "ar": ("ar", "EG", "EG:ar"), "ko": ("ko", "KR", "KR:ko"),
}
SEARCH_INTERVAL = 900
MAX_SEARCH_TERMS = 6


def search_query(topic: Topic, lang: str) -> str:
    """The news-search query for a language: the operator's, else the topic's main phrases."""
    given = dict(topic.search).get(lang, "")
    if given:
        return given
    phrases = []
    for term in topic.compiled.terms:
        if any(p for _, p in term.parts) or term.scope:
            continue  # search engines know no wildcards
        if _script_fits(term.label, lang) and len(term.parts) > 1:
            phrases.append(term.label if term.label.startswith('"') else f'"{term.label}"')
    return " OR ".join(dict.fromkeys(phrases[:MAX_SEARCH_TERMS]))


def _script_fits(text: str, lang: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    cyr = sum("\u0400" <= c <= "\u04ff" for c in letters)
    cjk = sum(is_cjk(c) for c in letters)
    if lang in ("ru", "uk", "bg", "sr"):
        return cyr > len(letters) // 2
    if lang in ("zh", "ja"):
        return cjk > len(letters) // 2
    return cyr == 0 and cjk == 0


def search_feeds(topic: Topic) -> list[FeedSpec]:
    """Google News and Bing News RSS searches for each of the topic's `search` languages."""
    out = []
    for lang, _ in topic.search:
        q = search_query(topic, lang)
        if not q:
            continue
        hl, gl, ceid = _GOOGLE_EDITIONS.get(lang, (lang, lang.upper(), f"{lang.upper()}:{lang}"))
        google = (f"https://news.google.com/rss/search?q={quote_plus(q)}"
                  f"&hl={hl}&gl={gl}&ceid={ceid}")
        bing = f"https://www.bing.com/news/search?q={quote_plus(q)}&format=rss&setlang={lang}"
        for name, url in (("Google News", google), ("Bing News", bing)):
            out.append(FeedSpec(url=url, name=f"{name} ({lang}): {topic.id}", lang=lang,
                                interval=SEARCH_INTERVAL, tags=("news-search",), topic=topic.id,
                                where=topic.where))
    return out
