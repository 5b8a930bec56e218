"""Match items against every topic: one Aho–Corasick pass, then only the hit topics' queries.

The automaton holds one key per positive query term (its most selective literal run, padded
with spaces so that a hit sits on word boundaries of the folded text). A topic whose keys do
not occur cannot match, because every accepted query needs a positive term
(query.compile_query rejects the others); so only hit topics are evaluated exactly.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import ahocorasick

from .model import FeedSpec, Hit, Item, Match, Topic
from .query import FIELDS, CTerm, Doc, evaluate, positive_terms
from .text import Token, tokens, words

_FIELD_SEP = " | "  # "|" never survives folding, so no key spans two fields


def term_key(term: CTerm) -> str:
    """The longest run of the term's parts that must appear verbatim in the folded text."""
    best = ""
    parts = term.parts
    for i in range(len(parts)):
        run: list[str] = []
        for word, prefix in parts[i:]:
            run.append(word)
            if prefix:
                best = max(best, " " + " ".join(run), key=len)
                break
            best = max(best, " " + " ".join(run) + " ", key=len)
    return best


class Matcher:
    """Topics compiled into one automaton; `match` is pure and thread-safe."""

    def __init__(self, topics: Sequence[Topic]) -> None:
        self.topics = tuple(topics)
        self._automaton = ahocorasick.Automaton()
        keys: dict[str, set[int]] = {}
        for t_index, topic in enumerate(self.topics):
            q = topic.compiled
            for term_index in positive_terms(q.tree):
                keys.setdefault(term_key(q.terms[term_index]), set()).add(t_index)
        for key, owners in keys.items():
            self._automaton.add_word(key, tuple(sorted(owners)))
        if keys:
            self._automaton.make_automaton()
        self._empty = not keys

    def candidates(self, title_words: list[str], body_words: list[str]) -> set[int]:
        """Indices of topics one of whose keys occurs in the text."""
        if self._empty:
            return set()
        hay = " " + " ".join(title_words) + _FIELD_SEP + " ".join(body_words) + " "
        hit: set[tuple[int, ...]] = {owners for _, owners in self._automaton.iter(hay)}
        return {t for owners in hit for t in owners}

    def match(self, title: str, body: str = "", *, lang: str | None = None,
              feed: FeedSpec | None = None) -> list[Match]:
        """The topics this text matches, with the terms and spans that made each match."""
        doc = Doc(words(title), words(body))
        found = []
        for t_index in sorted(self.candidates(*doc.fields)):
            topic = self.topics[t_index]
            if not topic.applies_to(lang, feed):
                continue
            ok, occ = evaluate(topic.compiled, doc)
            if ok:
                found.append((topic, occ))
        if not found:
            return []
        spans = (tokens(title), tokens(body))
        texts = (title, body)
        return [Match(topic.id, _hits(topic, occ, spans, texts)) for topic, occ in found]

    def match_item(self, item: Item, feed: FeedSpec | None = None) -> list[Match]:
        title, body = item.text_fields()
        return self.match(title, body, lang=item.lang, feed=feed)


def _hits(topic: Topic, occ: Iterable[tuple[int, int, int, int]],
          spans: tuple[list[Token], list[Token]], texts: tuple[str, str]) -> tuple[Hit, ...]:
    out: dict[Hit, None] = {}
    for f, s, e, term_index in occ:
        start, end = spans[f][s].start, spans[f][e - 1].end
        label = topic.compiled.terms[term_index].label
        out.setdefault(Hit(label, FIELDS[f], start, end, texts[f][start:end]), None)
    return tuple(sorted(out, key=lambda h: (h.field != "title", h.start, h.end)))
