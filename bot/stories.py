"""Story identity and clustering (pure): canonical URLs, title fingerprints, and which open
story of its topic a matched item joins (see "clustering" below)."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import sys
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence
from urllib.parse import SplitResult, parse_qs, urljoin, urlsplit, urlunsplit

from url_normalize import url_normalize

from bot.model import Item, Match
from bot.text import Token, normalize, tokens
from bot.text import is_cjk as _is_cjk

if TYPE_CHECKING:
    import numpy as np

# Query parameters that only say where a click came from, never which page it is.
TRACKING_PARAMS = (
    "utm_*",
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "maca",
    "ocid",
    "cmpid",
    "xtor",
    "at_medium",
    "at_campaign",
    "ref_src",
    "igshid",
    "_ga",
    "yclid",
    "smid",
)
_TRACKING_PREFIXES = tuple(p[:-1] for p in TRACKING_PARAMS if p.endswith("*"))
_TRACKING_NAMES = frozenset(p for p in TRACKING_PARAMS if not p.endswith("*"))
_SHORT_TITLE_WORDS = 5  # titles shorter than this also fingerprint the summary
_SUMMARY_CHARS = 200


# Memoised: a re-polled feed repeats most of its links. Small: a process sees a feed again
# only after the links of all its other feeds (50,000 for 1,000 feeds), which no cache of a
# sensible size outlives, and each entry costs ~300 bytes in every process.
@functools.lru_cache(maxsize=4096)
def canonical_url(url: str, base: str | None = None, *, fast: bool = True) -> str:
    """The key two links to the same page share (the stripped input when it is not a URL).

    A key, never a link to show or fetch: http and https, and a host with and without
    "www.", are one page (outlets serve both, and feeds and partners copy either), so the
    key of either is https:// without "www." (items keep their own link for display).
    """
    raw = url.strip() if isinstance(url, str) else ""
    if fast and not base and (simple := _SIMPLE_URL.fullmatch(raw)):
        return _same_site(simple.group(1) + (simple.group(2).rstrip("/") or "/"))  # common
    try:
        absolute = urljoin(base, raw) if base else raw
        parts = urlsplit(absolute)
        if not parts.scheme or not parts.netloc:
            return raw
        already = _already_normal(absolute, parts) if fast else None
        if already is not None:
            return _same_site(_clean(already))
        # url-normalize does the RFC 3986 part (case, ports, IDNA, percent-encoding, dot segments).
        normal = url_normalize(urlunsplit(parts._replace(fragment="")))
        return _same_site(_clean(urlsplit(normal))) if normal else raw
    except ValueError:  # bad IPv6 literal, bad port, IDNA failure (UnicodeError): not a URL
        return raw


def _same_site(url: str) -> str:
    """A normalised http(s) URL with https and without a leading "www." on a host that has a
    dot left ("www.example.org", not "www.com"); other URLs unchanged."""
    if url.startswith("http://"):
        url = "https://" + url[7:]
    if url.startswith("https://www."):
        host = url[12:].split("/", 1)[0].split(":", 1)[0]
        if "." in host.strip("."):
            url = "https://" + url[12:]
    return url


# The commonest link: lower-case http(s) host, no port, no user, a path of plain non-empty
# segments (no "%", no dot segment), no query, no fragment. Its canonical form is itself
# without a trailing slash; tests/test_canonical.py proves it agrees with the full path.
_SIMPLE_URL = re.compile(
    r"(https?://[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)"
    r"((?:/(?!\.\.?(?:/|$))[A-Za-z0-9\-._~!$&'()*+,;=:@]+)*/?)")

# Characters RFC 3986 allows unescaped; a URL made only of them (and no "%", no dot segment,
# no upper-case scheme or host, no default port) is what url-normalize would return anyway.
_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]*")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def _already_normal(url: str, parts: SplitResult) -> SplitResult | None:
    """parts, when url-normalize would change nothing that _clean keeps (about 100x faster)."""
    if not _PLAIN_URL.fullmatch(url) or "@" in parts.netloc or "[" in parts.netloc:
        return None
    if parts.scheme not in _DEFAULT_PORTS or parts.netloc != parts.netloc.lower():
        return None
    if not _HOST.fullmatch(parts.hostname or ""):
        return None  # empty labels, a root dot: url-normalize rewrites them
    if _DOT_SEGMENT.search(parts.path) or "//" in parts.path:  # url-normalize rewrites these
        return None
    if any(pair.count("=") > 1 for pair in parts.query.split("&")):
        return None  # url-normalize escapes a second "=" in a pair
    try:
        port = parts.port
    except ValueError:
        return None  # an out-of-range port: let url-normalize judge it
    if port == _DEFAULT_PORTS[parts.scheme] or (":" in parts.netloc and port is None):
        return None
    if port is not None and parts.netloc.rsplit(":", 1)[1] != str(port):
        return None  # leading zeros
    return parts._replace(path=parts.path or "/", fragment="")


def _clean(parts: SplitResult) -> str:
    """Drop tracking parameters, sort the rest, drop the fragment and a trailing slash."""
    pairs = [p for p in parts.query.split("&") if p and not _is_tracking(p.partition("=")[0])]
    path = (parts.path.rstrip("/") or "/") if parts.path else ""
    return urlunsplit((parts.scheme, parts.netloc, path, "&".join(sorted(pairs)), ""))


def _is_tracking(key: str) -> bool:
    """Whether a query parameter name is a known tracking parameter."""
    key = key.lower()
    return key in _TRACKING_NAMES or key.startswith(_TRACKING_PREFIXES)


def title_fingerprint(title: str, summary: str = "") -> str:
    """A short stable hex digest of the normalised title (plus summary for short titles)."""
    words = normalize(title)
    if len(words.split()) < _SHORT_TITLE_WORDS:
        words = f"{words}\n{normalize(summary)[:_SUMMARY_CHARS]}".strip()
    if not words:
        return ""
    return hashlib.blake2b(words.encode("utf-8"), digest_size=16).hexdigest()


# ================================================================ clustering
#
# A matched item joins an open story of its topic when it is (1) the same article: the same
# canonical URL, or the outlet's URL behind a Google/Bing News redirect; (2) a syndicated
# copy: near-identical title or lead (MinHash LSH, minhash.py, finds the candidates among
# thousands of stories in microseconds; the exact Jaccard of the shingle sets decides); or
# (3) another outlet's own report of the same event, in the same language, within a short
# window: a weighted Jaccard of names, numbers, places and other content words of the title
# and lead. Our own weighted Jaccard rather than rapidfuzz: rapidfuzz scores characters and
# counts every word alike, while what tells two events apart is which words are shared (a
# number or a name weighs more than a verb; the topic's own terms, shared by every story of
# the topic, weigh little), and an inverted index over those words gives the candidates.
# Else it opens a new story. Precision first: merging two events is worse than alerting
# twice, so two reports whose titles carry numbers and share none stay apart.
#
# Cross-language: reports join only within one language (names are spelled, and words
# stemmed, differently across scripts); the same event in two languages stays two stories.
# The same URL joins whatever the language.

STORY_WINDOW = timedelta(hours=72)  # a story stays open this long after its last join
REPORT_WINDOW = timedelta(hours=24)  # another outlet's report joins within this of the story
COPY_TITLE = 0.7  # Jaccard of title words: a syndicated copy
COPY_LEAD = 0.5  # Jaccard of lead 3-word shingles: a syndicated copy
REPORT_SCORE = 0.35  # weighted Jaccard of names, numbers and words: the same event
_MIN_TITLE_UNITS = 4  # shorter titles are too generic to call copies on their own
_MIN_LEAD_SHINGLES = 6
_LEAD_CHARS = 400
_COMMON = 100  # a word in more members' postings than this gives no candidates (too common)
_CANDIDATES = 24  # members scored for a report: those sharing the most weighty words
_MEMBERS_COMPARED = 24  # a big story is compared through its latest members
_PERMS = 64
# (bands, rows) that datasketch's _optimal_param picks for 64 permutations at thresholds 0.5
# (titles) and 0.4 (leads)
_TITLE_BANDS = (14, 4)
_LEAD_BANDS = (16, 4)
_NEWS_HOSTS = ("news.google.com", "www.bing.com", "bing.com")
is_cjk = functools.lru_cache(maxsize=1 << 16)(_is_cjk)  # asked of every token's first char

# Words that say nothing about which event it is (the commonest of each language).
_STOP = frozenset("""
the and for with from that this into over after before about than will would could says said
say has have had was were are been being its his her their our who what when where which why
how not but all new more most out off amid as at by of on in to up is be it an or a s
les des une aux dans pour par sur avec sans est sont ont qui que quoi dont plus son ses leur
leurs mais pas apres avant entre selon contre vers chez cette ces elle ils elles nous vous
der die das den dem des ein eine einen einem einer und mit von fur auf aus bei nach vor uber
unter ist sind hat haben wird werden nicht auch sich als wie zum zur dass oder
los las del con para por una unos unas que mas sus tras ante sobre entre sin segun
и в во на по с со к ко о об от до за из у для при не что как это его ее их был была были
будет после перед через между против также уже или но а
il lo gli le di da con per tra fra una uno che non della dello delle degli nel nella sul
""".split())


def news_redirect(link: str) -> tuple[str, bool]:
    """(the outlet's URL behind a Google/Bing News redirect link, or link; whether it was one)."""
    try:
        parts = urlsplit(link)
    except ValueError:
        return link, False
    host = (parts.hostname or "").lower()
    if host not in _NEWS_HOSTS:
        return link, False
    if host.endswith("bing.com"):
        target = parse_qs(parts.query).get("url", [""])[0]
        return (target, True) if target.startswith(("http://", "https://")) else (link, True)
    return _google_target(parts.path) or link, True


def _google_target(path: str) -> str | None:
    """The URL inside an old-style Google News article id (base64 of a small protobuf)."""
    article = path.rstrip("/").rsplit("/", 1)[-1]
    try:
        raw = base64.urlsafe_b64decode(article + "=" * (-len(article) % 4))
    except (binascii.Error, ValueError):
        return None
    found = re.search(rb"https?://[\x21-\x7e]+", raw)
    return found.group().decode("ascii") if found else None  # newer ids hold no URL: None


def outlet_and_title(item: Item) -> tuple[str, str, bool]:
    """(outlet, title without a news search's " - Outlet" suffix, whether from a news search)."""
    _, searched = news_redirect(item.link)
    searched = searched or "google news" in item.source.lower() or "bing" in item.source.lower()
    title = " ".join(item.title.split())
    if searched:
        head, sep, tail = title.rpartition(" - ")
        if sep and head and 0 < len(tail) <= 60:
            return tail.strip(), head.strip(), True
    return item.source or urlsplit(item.link).hostname or item.feed, title, searched


@dataclass(frozen=True, slots=True)
class Signature:
    """What clustering knows of one matched item: identity, text features, time."""

    key: str  # unique per (item, topic): "<item id or guid>:<topic>"
    topic: str
    url: str  # canonical URL of the article (behind a news-search redirect when known)
    link: str  # the link to show: the outlet's own when a news search's redirect names it
    outlet: str
    title: str
    lang: str
    when: datetime | None  # None until the claim gives the time (an undated item's)
    # hashed (shingle_hash): an index holds 72 h of them, and ints are half the size of the
    # strings; the exact Jaccard of two sets of 32-bit hashes differs from the strings' only
    # on a collision
    title_units: frozenset[int]  # title words (CJK: character pairs), for copies
    lead_shingles: frozenset[int]  # 3-unit shingles of the lead, for copies
    features: Mapping[str, float]  # weighted names, numbers, words of title and lead
    title_features: Mapping[str, float]  # the same, of the title alone
    numbers: frozenset[str]  # numbers in the title
    # MinHash values of title_units and lead_shingles (hashed(): before the claim, once)
    title_hash: "np.ndarray | None" = field(default=None, compare=False)
    lead_hash: "np.ndarray | None" = field(default=None, compare=False)

    @property
    def salient(self) -> list[str]:
        """Features that can make a candidate (the weightier ones)."""
        return [f for f, w in self.features.items() if w >= 1.0]


def signature(item: Item, match: Match | None, *, key: str,
              when: datetime | None) -> Signature:
    """The Signature of an item matched to a topic (pure); `when` stands for a missing
    publication time (None: given later, by keyed())."""
    outlet, title, searched = outlet_and_title(item)
    target, _ = news_redirect(item.link)
    url = canonical_url(target) if target != item.link else (item.url or canonical_url(item.link))
    lead = "" if searched else (item.summary or item.content)[:_LEAD_CHARS]  # search feeds
    # carry other outlets' headlines in the description, not this article's lead
    terms = frozenset(w for t in (match.terms if match else ()) for w in _term_units(t))
    title_toks, lead_toks = tokens(title), tokens(lead)
    title_units = _units(title_toks)
    in_title = _features(title, title_toks, 1.5, terms)
    features = dict(_features(lead, lead_toks, 1.0, terms))
    for f, w in in_title.items():
        features[f] = max(w, features.get(f, 0.0))
    return Signature(
        key=key, topic=match.topic if match else "", url=url, link=target, outlet=outlet,
        title=title,
        lang=(item.lang or "").split("-")[0].lower(), when=item.published or when,
        title_units=frozenset(map(shingle_hash, _title_shingles(title_units))),
        lead_shingles=frozenset(map(shingle_hash, _ngrams(_units(lead_toks), 3))),
        features=features, title_features=in_title,
        numbers=_title_numbers(title, title_toks, match))


def _title_numbers(title: str, toks: Sequence[Token], match: Match | None) -> frozenset[str]:
    """The numbers a title names, but those inside the topic's own matched phrase there
    ("Power of Siberia 2"), which every story of the topic shares."""
    low = title.casefold()
    own = [(m.start(), m.end()) for h in (match.hits if match else ()) if h.field == "title"
           and h.text for m in re.finditer(re.escape(h.text.casefold()), low)]
    return frozenset(m.group() for t in toks if (m := _NUMBER.match(t.norm))
                     and not any(s <= t.start and t.end <= e for s, e in own))


_NUMBER = re.compile(r"\d+")  # "19th", "20-й", "2026": the number they name


def _units(toks: Sequence[Token]) -> list[str]:
    """Folded words, stemmed to six letters (inflected Russian, German), CJK characters alone."""
    return [t.norm if (t.norm.isdigit() or is_cjk(t.norm[0])) else t.norm[:6] for t in toks]


@functools.lru_cache(maxsize=4096)
def _term_units(term: str) -> tuple[str, ...]:
    """The units of a matched term (a topic's terms repeat on every item)."""
    return tuple(_units(tokens(term)))


def shingle_hash(shingle: str) -> int:
    """A shingle's stable 32-bit hash (the same in every process, unlike hash())."""
    return zlib.crc32(shingle.encode("utf-8"))


def _title_shingles(units: list[str]) -> list[str]:
    """Words of a title; pairs of characters where it is CJK."""
    words = [u for u in units if not is_cjk(u[0])]
    cjk = [u for u in units if is_cjk(u[0])]
    return words + _ngrams(cjk, 2)


def _ngrams(units: list[str], n: int) -> list[str]:
    return [" ".join(units[i:i + n]) for i in range(len(units) - n + 1)]


def _features(text: str, toks: Sequence[Token], base: float,
              terms: frozenset[str]) -> dict[str, float]:
    """Weighted features of one text: numbers and names weigh most, the topic's matched
    terms least; `base` weighs a title above a lead."""
    out: dict[str, float] = {}
    names = _name_spans(text, toks)
    cjk = [t.norm for t in toks if is_cjk(t.norm[0])]
    for pair in _ngrams(cjk, 2):
        out[pair] = base
    for t in toks:
        norm = t.norm
        if norm in _STOP or is_cjk(norm[0]):
            continue
        digit = norm.isdigit()
        if len(norm) < 3 and not digit and not _acronym(text, t):
            continue
        unit = norm if digit else norm[:6]
        weight = 0.3 if unit in terms else (  # every story of the topic has them
            base * (2.0 if digit else 1.5 if t.start in names else 1.0))
        if weight > out.get(unit, 0.0):
            out[unit] = weight
    return out


def _acronym(text: str, token: Token) -> bool:
    """Whether a short token is written in capitals (US, EU, UN): a name, not a word."""
    return text[token.start:token.end].isupper()


def _name_spans(text: str, toks: Sequence[Token]) -> set[int]:
    """Starts of capitalised words not opening a sentence (names, places); none in Title Case."""
    caps = [t for t in toks if text[t.start].isupper()]
    if len(toks) >= 4 and len(caps) > 0.6 * len(toks):
        return set()  # a Title Case headline says nothing about names
    return {t.start for t in caps if t.start > 0 and text[:t.start].rstrip()[-1:] not in ".!?:"}


def weighted_jaccard(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Σ min / Σ max of the weights over the union of features (0 when both are empty)."""
    if not a or not b:
        return 0.0
    low = sum(min(a[f], b[f]) for f in a.keys() & b.keys())  # the shared ones: a few
    high = sum(a.values()) + sum(b.values()) - low
    return low / high if high else 0.0


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    both = len(a & b)
    return both / (len(a) + len(b) - both)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a matched item goes: story None opens a new one; how says why it joined."""

    story: str | None
    how: str  # "new", "url", "copy", "report"
    score: float = 0.0
    member: str | None = None  # the key of the member it resembled


@dataclass(slots=True)
class _Member:
    story: str
    sig: Signature


class _TopicIndex:
    """The open stories of one topic: URLs, two MinHash LSH indexes, postings of features."""

    def __init__(self) -> None:
        self.members: dict[str, _Member] = {}
        self.by_url: dict[str, str] = {}  # url -> member key
        from .minhash import BandedLSH  # numpy, on first use: the parse workers never need it

        self.titles = BandedLSH(*_TITLE_BANDS)
        self.leads = BandedLSH(*_LEAD_BANDS)
        self.postings: dict[str, set[str]] = {}
        self.stories: dict[str, list[str]] = {}  # story -> member keys, oldest first
        self.last: dict[str, datetime] = {}  # story -> time of its latest member

    def add(self, story: str, sig: Signature) -> None:
        sig = hashed(sig)
        self.members[sig.key] = _Member(story, sig)
        if sig.url:
            self.by_url.setdefault(sig.url, sig.key)
        if len(sig.title_units) >= 2 and sig.title_hash is not None:
            self.titles.insert(sig.key, sig.title_hash)
        if len(sig.lead_shingles) >= _MIN_LEAD_SHINGLES and sig.lead_hash is not None:
            self.leads.insert(sig.key, sig.lead_hash)
        for f in sig.salient:
            self.postings.setdefault(f, set()).add(sig.key)
        # kept for 72 h: the bands keep the MinHash values; features share their strings
        self.members[sig.key] = _Member(story, replace(
            sig, title_hash=None, lead_hash=None, features=_shared(sig.features),
            title_features=_shared(sig.title_features)))
        keys = self.stories.setdefault(story, [])
        keys.append(sig.key)
        self.last[story] = max(self.last.get(story, sig.when), sig.when)
        if len(keys) > _MEMBERS_COMPARED:  # a big story is compared through its latest members
            self._retire(self.members[keys[-_MEMBERS_COMPARED - 1]].sig)

    def _retire(self, sig: Signature) -> None:
        """Stop offering a member as a candidate (its URL still names its story)."""
        self.titles.remove(sig.key)
        self.leads.remove(sig.key)
        for f in sig.salient:
            posting = self.postings.get(f)
            if posting is not None:
                posting.discard(sig.key)
                if not posting:
                    del self.postings[f]

    def remove(self, key: str) -> None:
        member = self.members.pop(key, None)
        if member is None:
            return
        sig = member.sig
        if self.by_url.get(sig.url) == key:
            del self.by_url[sig.url]
        self._retire(sig)
        keys = self.stories.get(member.story, [])
        if key in keys:
            keys.remove(key)
        if not keys:
            self.stories.pop(member.story, None)
            self.last.pop(member.story, None)

    def decide(self, sig: Signature, reports: bool = True) -> Decision:
        sig = hashed(sig)
        if sig.url and (key := self.by_url.get(sig.url)) is not None:
            return Decision(self.members[key].story, "url", 1.0, key)
        copy = self._copy(sig)
        if copy is not None:
            return copy
        return (self._report(sig) if reports else None) or Decision(None, "new")

    def _copy(self, sig: Signature) -> Decision | None:
        best: Decision | None = None
        if len(sig.title_units) >= _MIN_TITLE_UNITS and sig.title_hash is not None:
            for key in self.titles.query(sig.title_hash):
                other = self.members[key].sig
                score = jaccard(sig.title_units, other.title_units)
                if score >= COPY_TITLE and _numbers_agree(sig, other) and (
                        best is None or score > best.score):
                    best = Decision(self.members[key].story, "copy", score, key)
        if len(sig.lead_shingles) >= _MIN_LEAD_SHINGLES and sig.lead_hash is not None:
            for key in self.leads.query(sig.lead_hash):
                other = self.members[key].sig
                score = jaccard(sig.lead_shingles, other.lead_shingles)
                if score >= COPY_LEAD and _numbers_agree(sig, other) and (
                        best is None or score > best.score):
                    best = Decision(self.members[key].story, "copy", score, key)
        return best

    def _report(self, sig: Signature) -> Decision | None:
        shared: Counter[str] = Counter()
        for f in sig.salient:
            posting = self.postings.get(f)
            if posting and len(posting) <= _COMMON:
                shared.update(posting)
        best: Decision | None = None
        for key, n in shared.most_common(_CANDIDATES):
            if n < 2:
                break
            other = self.members[key].sig
            if not _may_report(sig, other, self.last.get(self.members[key].story)):
                continue
            score = max(weighted_jaccard(sig.title_features, other.title_features),
                        weighted_jaccard(sig.features, other.features))
            if score >= REPORT_SCORE and (best is None or score > best.score):
                best = Decision(self.members[key].story, "report", score, key)
        return best


def _shared(features: Mapping[str, float]) -> dict[str, float]:
    """features with interned names and weights (thousands of members repeat them)."""
    return {sys.intern(f): _WEIGHTS.setdefault(w, w) for f, w in features.items()}


_WEIGHTS: dict[float, float] = {}  # a handful of distinct weights: one float object each


def _may_report(sig: Signature, other: Signature, last: datetime | None) -> bool:
    """Whether two items may be one event's reports at all: one language, close in time,
    and titles whose numbers, if both have some, share one."""
    if sig.lang != other.lang:
        return False
    if abs(sig.when - (last or other.when)) > REPORT_WINDOW:
        return False
    return _numbers_agree(sig, other)


def _numbers_agree(sig: Signature, other: Signature) -> bool:
    """False when each title carries a number the other lacks (the 19th and the 20th
    package; "Power of Siberia 2: round 3" and "...: round 4"): two events, however alike
    the rest. A copy that only adds a number (a year, a count) may still join."""
    return not (sig.numbers - other.numbers and other.numbers - sig.numbers)


def keyed(sig: Signature, key: str, when: datetime) -> Signature:
    """A signature made ahead (in a parse worker) with the key and time the claim gives."""
    return replace(sig, key=key, when=sig.when or when)


def hashed(sig: Signature) -> Signature:
    """sig with the MinHash values of its title units and lead shingles (computed once, and
    best before the claim's transaction: they are most of a decision's cost)."""
    if sig.title_hash is not None or sig.lead_hash is not None:
        return sig
    if len(sig.title_units) < 2 and len(sig.lead_shingles) < _MIN_LEAD_SHINGLES:
        return sig
    minhash = _minhasher()
    return replace(sig, title_hash=minhash(sig.title_units), lead_hash=minhash(sig.lead_shingles))


@functools.cache
def _minhasher() -> Any:
    from .minhash import MinHasher  # numpy, on first use: the parse workers never need it

    return MinHasher(_PERMS, seed=7)


class StoryIndex:
    """The open stories of every topic, in memory: a cache of the store's story_items.

    decide() is pure; add() and remove() change the index. Safe to share between threads
    (one lock); the store serialises the decisions of one topic across instances. offer()
    and take() carry signatures made before a claim into it, so that its transaction only
    decides.
    """

    def __init__(self, *, window: timedelta = STORY_WINDOW, reports: bool = True) -> None:
        self.window = window
        self.reports = reports  # False: join only the same article and syndicated copies
        self._topics: dict[str, _TopicIndex] = {}
        self.lock = threading.RLock()  # also held by the store while it moves its sync mark
        self.synced_at: datetime | None = None  # the store's sync: when it last read rows,
        self.synced_id: int | None = None  # the highest story_items id it read (None: by time)
        self.gaps: dict[int, datetime] = {}  # ids below that not read yet, since when
        self._ready: dict[tuple[str, str, str], tuple[Item, Signature]] = {}  # offer()

    def __len__(self) -> int:
        return sum(len(t.members) for t in self._topics.values())

    def __contains__(self, key: str) -> bool:
        return any(key in t.members for t in self._topics.values())

    def stories(self, topic: str) -> int:
        """The number of open stories of a topic."""
        index = self._topics.get(topic)
        return len(index.stories) if index else 0

    def decide(self, sig: Signature) -> Decision:
        """Where sig goes, without changing anything."""
        with self.lock:
            index = self._topics.get(sig.topic)
            return index.decide(sig, self.reports) if index else Decision(None, "new")

    def add(self, story: str, sig: Signature) -> None:
        """Record that sig belongs to story (no-op when its key is already there)."""
        with self.lock:
            index = self._topics.get(sig.topic)
            if index is None:
                index = self._topics[sig.topic] = _TopicIndex()
            if sig.key not in index.members:
                index.add(story, sig)

    def offer(self, ready: Iterable[tuple[Item, str, Signature]]) -> list[tuple[str, str, str]]:
        """Signatures made before a claim (in the parse workers; hashed here), waiting for
        the claim that places their items to take() them; the caller withdraw()s the tickets
        returned after the claim."""
        made = [((item.feed, item.guid, topic), item, hashed(sig)) for item, topic, sig in ready]
        with self.lock:
            for ticket, item, sig in made:
                self._ready[ticket] = (item, sig)
        return [ticket for ticket, _item, _sig in made]

    def take(self, item: Item, topic: str) -> Signature | None:
        """The signature offered for this very item and topic, if any (once)."""
        with self.lock:
            found = self._ready.pop((item.feed, item.guid, topic), None)
        return found[1] if found is not None and found[0] == item else None

    def withdraw(self, tickets: Iterable[tuple[str, str, str]]) -> None:
        with self.lock:
            for ticket in tickets:
                self._ready.pop(ticket, None)

    def remove(self, topic: str, key: str) -> None:
        with self.lock:
            if (index := self._topics.get(topic)) is not None:
                index.remove(key)

    def expire(self, now: datetime) -> int:
        """Close stories with no member newer than the window; the members dropped."""
        dropped = 0
        with self.lock:
            for index in self._topics.values():
                old = [s for s, last in index.last.items() if last < now - self.window]
                for story in old:
                    for key in list(index.stories.get(story, ())):
                        index.remove(key)
                        dropped += 1
        return dropped

    def assign(self, sig: Signature, new_story: str) -> Decision:
        """decide() then add(): a new story is named new_story (for previews and tests)."""
        with self.lock:
            decision = self.decide(sig)
            self.add(decision.story or new_story, sig)
            return decision if decision.story else Decision(new_story, "new")


@dataclass(frozen=True, slots=True)
class StoryGroup:
    """Items of one topic that would have made one story (veille test's preview)."""

    topic: str
    items: tuple[Item, ...]
    how: tuple[str, ...]  # per item: "new" for the first, then "url", "copy" or "report"


def cluster_preview(items_with_matches: Iterable[tuple[Item, Sequence[Match]]],
                    *, now: datetime | None = None) -> list[StoryGroup]:
    """How these items would cluster, per topic, oldest first (no state is read or written)."""
    when = now or datetime.now(timezone.utc)
    pairs = [(item, m) for item, found in items_with_matches for m in found]
    pairs.sort(key=lambda p: p[0].published or when)
    index = StoryIndex()
    groups: dict[tuple[str, str], list[tuple[Item, str]]] = {}
    for n, (item, m) in enumerate(pairs):
        sig = signature(item, m, key=f"{n}:{m.topic}", when=when)
        decision = index.assign(sig, f"{m.topic}#{n}")
        groups.setdefault((m.topic, decision.story), []).append((item, decision.how))
    return [StoryGroup(topic, tuple(i for i, _ in got), tuple(h for _, h in got))
            for (topic, _), got in groups.items()]


@dataclass(frozen=True, slots=True)
class Also:
    """The data of an "also: Reuters, TASS, Caixin (+3)" line."""

    names: tuple[str, ...]
    more: int

    def __bool__(self) -> bool:
        return bool(self.names)


def also_line(first_outlet: str, outlets: Iterable[str], limit: int = 3) -> Also:
    """The outlets that joined a story after its first (distinct, in order), first `limit`
    named and the rest counted."""
    seen: dict[str, None] = {}
    for name in outlets:
        name = " ".join(name.split())
        if name and name.casefold() != first_outlet.casefold():
            seen.setdefault(name, None)
    names = tuple(seen)
    return Also(names[:limit], max(0, len(names) - limit))


# ================================================================ coverage surges


@dataclass(frozen=True, slots=True)
class SurgeRule:
    """When a topic's new stories come in a surge (the VEILLE_SURGE_* settings)."""

    recent: timedelta = timedelta(hours=3)  # the window counted
    baseline: timedelta = timedelta(days=7)  # the time before it, for the usual rate
    factor: float = 3.0  # a surge: this many times the usual number in such a window...
    min_stories: int = 5  # ...and at least this many new stories
    cooldown: timedelta = timedelta(hours=12)  # no second surge alert of a topic before

    @classmethod
    def from_settings(cls, settings: object) -> SurgeRule:
        """The rule that Settings describe."""
        get = lambda name: getattr(settings, name)  # noqa: E731
        return cls(timedelta(hours=get("surge_hours")),
                   timedelta(days=get("surge_baseline_days")), get("surge_factor"),
                   get("surge_min_stories"), timedelta(hours=get("surge_cooldown_hours")))


@dataclass(frozen=True, slots=True)
class Surge:
    """A topic's coverage surge: new stories in the recent window against the usual number."""

    recent: int
    usual: float  # the number of new stories a window of that length usually has


def detect_surge(opened: Iterable[datetime], *, now: datetime, rule: SurgeRule,
                 factor: float | None = None,
                 cooling_until: datetime | None = None,
                 watching_since: datetime | None = None) -> Surge | None:
    """A Surge when the stories opened in the recent window reach `factor` (the topic's own,
    else the rule's) times the baseline's rate, and at least min_stories; None otherwise, while
    a previous surge cools down, or before veille has watched for a whole baseline
    (watching_since: its first successful poll; a new install's backlog is no surge)."""
    if cooling_until is not None and cooling_until > now:
        return None
    start = now - rule.recent
    if watching_since is not None and watching_since > start - rule.baseline:
        return None
    times = list(opened)
    recent = sum(start < t <= now for t in times)
    before = sum(start - rule.baseline <= t <= start for t in times)
    usual = before * (rule.recent / rule.baseline)
    wanted = max(rule.min_stories, (factor or rule.factor) * max(usual, 1.0))
    return Surge(recent, round(usual, 3)) if recent >= wanted else None
