"""Context summaries (pure): one to three sentences of the item's own text chosen for the
topic's matched terms and their position, the topic's context line, and "previously:" the
topic's last story.

Sentences come from sentencex (Wikimedia's splitter: rules for some 250 languages, English,
French, Russian, German, Chinese and Spanish among them, and fast); a piece it cut after an
abbreviation ("M.", "т.е.") is glued back when the next one goes on in lower case. The text
stays the item's own, so in its language; boilerplate (bylines, "Read more", cookie and
subscription notices, "The post … appeared first on …") is dropped first. When the text is
too thin (a bare title, a one-line teaser), the summary is the title.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Sequence

from sentencex import segment

from .model import Item, Match, Topic
from .text import is_cjk

CAP = 350  # characters of the summary at most
MAX_SENTENCES = 3
THIN = 120  # a feed text shorter than this (once cleaned) is a teaser: fetch the article
USABLE = 20  # a text shorter than this says no more than the title: show the title

_TAG = re.compile(r"<[^>]+>")
_BLOCK = re.compile(r"<\s*(?:br|/?p|/div|/li|/h[1-6]|/blockquote|/tr)\b[^>]*>", re.IGNORECASE)
# Whole sentences or trailing pieces that are never the news, in the languages we watch.
_BOILER = re.compile(
    r"(read more|continue reading|click here|sign up|subscribe|newsletter|cookies?\b|"
    r"all rights reserved|appeared first on|advertisement|"
    r"lire la suite|abonnez-vous|inscrivez-vous|tous droits réservés|"
    r"weiterlesen|mehr lesen|jetzt abonnieren|alle rechte vorbehalten|"
    r"читать далее|подробнее|подписывайтесь|все права защищены|"
    r"leer más|suscríbete|todos los derechos reservados|"
    r"阅读全文|点击查看|订阅|版权所有)", re.IGNORECASE)
_BYLINE = re.compile(
    r"^\s*(by|par|von|от|por|автор:?|记者)\s+[\w.'’\- ]{2,60}?(,[^.]{0,60})?\s*[|—–:-]\s*",
    re.IGNORECASE)
_BYLINE_ALONE = re.compile(r"^\s*(by|par|von|por)\s+[A-ZÀ-Ý][\w.'’\- ]{1,50}$", re.IGNORECASE)
_DATELINE = re.compile(r"^[A-ZÀ-Ý][A-ZÀ-Ý ,.'-]{2,40}\s*\((?:Reuters|AP|AFP|dpa|ТАСС)\)\s*[-—–]\s*")
_SOFT_CUTS = ("; ", ", ", " — ", " – ", ": ", "，", "、", "；")


@dataclass(frozen=True, slots=True)
class Summary:
    """What an alert says about its item: text (marks: spans of matched terms in it), the
    topic's context line, and the topic's previous story (date, title)."""

    text: str
    marks: tuple[tuple[int, int], ...] = ()
    context: str = ""
    previously: tuple[datetime, str] | None = None
    origin: str = "feed"  # feed | article | llm | title


def summarize(item: Item, match: Match | None, topic: Topic | None,
              previous: tuple[datetime, str] | None = None, *, text: str | None = None,
              cap: int = CAP) -> Summary:
    """The Summary of an item for a topic; `text` replaces the feed's (an article's text)."""
    terms = _terms(match)
    body = clean(text if text is not None else feed_text(item), item.title)
    chosen = _choose(sentences(body, item.lang), terms, cap) if len(body) >= USABLE else ""
    origin = "title" if not chosen else ("article" if text is not None else "feed")
    out = chosen or " ".join(item.title.split())
    return Summary(out, marks(out, terms), topic.context if topic else "", previous, origin)


def is_thin(item: Item) -> bool:
    """Whether the feed says too little of the item (a bare title, a one-line teaser)."""
    return len(clean(feed_text(item), item.title)) < THIN


def feed_text(item: Item) -> str:
    """The fuller of the feed's summary and content."""
    return item.content if len(item.content) > len(item.summary) else item.summary


def _terms(match: Match | None) -> list[str]:
    """The matched texts, longest first (so a phrase is marked whole, not its words)."""
    if match is None:
        return []
    found = {h.text for h in match.hits if h.text.strip()} | set(match.terms)
    return sorted(found, key=len, reverse=True)


def clean(text: str, title: str = "") -> str:
    """Plain text without HTML, bylines, datelines, boilerplate sentences, or a leading copy
    of the title."""
    text = html.unescape(_TAG.sub(" ", _BLOCK.sub("\n", text)))
    flat_title = " ".join(title.split()).lower()
    kept: list[str] = []
    for para in (" ".join(p.split()) for p in text.split("\n")):
        para = _DATELINE.sub("", _BYLINE.sub("", para))
        if not kept and flat_title and para.lower().startswith(flat_title):
            para = para[len(flat_title):].lstrip(" .:-—–|")
        if not para or _BYLINE_ALONE.match(para):
            continue
        kept += [s for s in sentences(para) if not _BOILER.search(s)]
    return " ".join(kept).strip()


def sentences(text: str, lang: str | None = None) -> list[str]:
    """The sentences of text (sentencex), each a piece of text as it is; a cut after an
    abbreviation is glued back."""
    if not text.strip():
        return []
    spans: list[tuple[int, int]] = []
    at = 0
    for piece in segment(_lang(lang), text):
        piece = piece.strip()
        if not piece:
            continue
        start = text.find(piece, at)
        if start < 0:  # the splitter changed the text: keep what it gave, in order
            start = at
        end, at = start + len(piece), start + len(piece)
        if spans and (_goes_on(piece) or spans[-1][1] - spans[-1][0] <= 4):
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return [text[a:b] for a, b in spans]


@lru_cache(maxsize=64)
def _lang(lang: str | None) -> str:
    return (lang or "en").split("-")[0].split("_")[0].lower() or "en"


def _goes_on(piece: str) -> bool:
    """Whether a piece starts in lower case: the splitter cut after an abbreviation."""
    first = piece[:1]
    return first.isalpha() and first.islower()


def _choose(sents: Sequence[str], terms: Sequence[str], cap: int) -> str:
    """Up to three sentences holding matched terms, best first by terms then position, shown
    in their order; the lead sentence when none holds a term."""
    scored = [(len(_found(s, terms)), -i, i) for i, s in enumerate(sents)]
    hits = sorted((t for t in scored if t[0] > 0), reverse=True)
    if not hits:
        return _fit(sents[0], cap) if sents else ""
    picked: list[int] = []
    for _, _, i in hits:
        if len(picked) == MAX_SENTENCES:
            break
        if sum(len(sents[j]) + 1 for j in picked) + len(sents[i]) <= cap:
            picked.append(i)
    if not picked:  # the best sentence alone is over the cap: cut it
        return _fit(sents[hits[0][2]], cap)
    return " ".join(sents[i] for i in sorted(picked))


def _fit(sentence: str, cap: int) -> str:
    """A sentence cut to the cap at a clause or word boundary, never inside a word."""
    if len(sentence) <= cap:
        return sentence
    head = sentence[:cap - 1]
    for mark in _SOFT_CUTS:
        at = head.rfind(mark)
        if at >= cap // 2:
            return head[:at].rstrip(" ,;:—–，、；") + "…"
    if is_cjk(head[-1:] or "a"):
        return head + "…"
    at = head.rfind(" ")
    return (head[:at] if at > 0 else head).rstrip(" ,;:") + "…"


def _found(text: str, terms: Sequence[str]) -> list[str]:
    low = text.casefold()
    return [t for t in terms if t.casefold() in low]


def marks(text: str, terms: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Non-overlapping spans of the terms in text (case-insensitive), in order."""
    low = text.casefold()
    if len(low) != len(text):  # casefold changed lengths (ß → ss): fall back to lower()
        low = text.lower()
    taken: list[tuple[int, int]] = []
    for term in terms:
        needle = term.casefold() if len(term.casefold()) == len(term) else term.lower()
        start = low.find(needle)
        while needle and start >= 0:
            end = start + len(needle)
            if all(end <= s or start >= e for s, e in taken) and _whole(text, start, end):
                taken.append((start, end))
            start = low.find(needle, end)
    return tuple(sorted(taken))


def _whole(text: str, start: int, end: int) -> bool:
    """Whether [start, end) is not inside a longer word (CJK has no word boundaries)."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    inner = lambda ch: ch.isalnum() and not is_cjk(ch)  # noqa: E731
    return not (inner(before) and inner(text[start])) and not (inner(after) and inner(text[end - 1]))
