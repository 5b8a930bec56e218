"""Match items against every topic: one Aho–Corasick pass, then only the hit topics' queries.

Every query term gets one automaton key: its longest run of words that must appear
verbatim in the folded text, padded with spaces so that a hit sits on word boundaries. One
pass over an item finds every key; a topic is evaluated only when the key of one of its
anchors occurred (terms one of which every match must contain, chosen to be rare: see
query.anchor_terms), and term occurrences are then verified only where their keys were found.

A term made only of `~word` parts has no verbatim run: it gets one key per inflected form
of its first word (" встречи ", " встречу ", ...), or, for `~*word`, each form without the
leading space so that it is also found at the end of a compound ("sanktionen "). The
prefilter stays exact: a form in the text always triggers the topic.

Sentence and paragraph bounds (for SENT and PARA) are computed only when a hit topic asks
for them, once per item and field.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import ahocorasick

from .model import FeedSpec, Hit, Item, Match, Topic
from .query import COMPOUND, FIELDS, LEMMA, CTerm, anchor_terms, branches, evaluate
from .text import Units, spans, units, words

_FIELD_SEP = "|"  # a pseudo-word between title and body: "|" never survives folding


MIN_COMPOUND_HEAD = 3  # letters before the form in a ~*word compound


def term_key(term: CTerm) -> tuple[str, int]:
    """The most selective verbatim run of a term's words, and the index of its first word.

    ("", 0) when every part is a ~word (see term_keys).
    """
    best, offset = "", 0
    parts = term.parts
    for i in range(len(parts)):
        run: list[str] = []
        for word, prefix in parts[i:]:
            if prefix in (LEMMA, COMPOUND):
                break
            run.append(word)
            key = " " + " ".join(run) + ("" if prefix else " ")
            if len(key) > len(best):
                best, offset = key, i
            if prefix:
                break
    return best, offset


def term_keys(term: CTerm) -> list[tuple[str, int]]:
    """The automaton keys of a term: its verbatim run, else the forms of its first ~word."""
    key, offset = term_key(term)
    if key:
        return [(key, offset)]
    forms, kind = term.forms[0] or frozenset(), term.parts[0][1]
    lead = "" if kind == COMPOUND else " "
    return [(f"{lead}{form} ", 0) for form in sorted(forms)]


def _part_ok(tok: str, word: str, kind, forms) -> bool:
    """Whether a token is a match for one part of a term."""
    if kind is False:
        return tok == word
    if kind is True:
        return tok.startswith(word)
    if tok in forms:
        return True
    return kind == COMPOUND and any(
        tok.endswith(f) and len(tok) - len(f) >= MIN_COMPOUND_HEAD for f in forms)


class _Hits:
    """Term occurrences of one item, verified at the places the automaton pointed to."""

    __slots__ = ("toks", "n_title", "starts", "texts", "lang", "_units")

    def __init__(self, toks: list[str], n_title: int, starts: dict[int, set[int]],
                 texts: tuple[str, str] = ("", ""), lang: str | None = None) -> None:
        self.toks, self.n_title, self.starts = toks, n_title, starts
        self.texts, self.lang = texts, lang
        self._units: dict[int, tuple[list[int], Units]] = {}

    def occurrences(self, term: CTerm, term_id: int) -> list[tuple[int, int, int]]:
        out = []
        toks, n = self.toks, len(term.parts)
        forms = term.forms or (None,) * n
        for s in sorted(self.starts.get(term_id, ())):
            if s < 0 or s + n > len(toks) or not all(
                toks[s + k] == w or (p and _part_ok(toks[s + k], w, p, forms[k]))
                for k, (w, p) in enumerate(term.parts)
            ):
                continue
            field, local = (0, s) if s < self.n_title else (1, s - self.n_title - 1)
            if term.scope is None or FIELDS[field] == term.scope:
                out.append((field, local, local + n))
        return out

    def unit(self, field: int, token: int, kind: str) -> int:
        """The sentence ("sent") or paragraph ("para") of a field's token, computed once."""
        if field not in self._units:
            text = self.texts[field]
            self._units[field] = ([s for s, _ in spans(text)], units(text, self.lang))
        starts, found = self._units[field]
        offset = starts[token] if token < len(starts) else len(self.texts[field])
        return found.sentence_of(offset) if kind == "sent" else found.paragraph_of(offset)


class _TopicDoc:
    """What query.evaluate asks of a document, answered from the verified hits."""

    __slots__ = ("hits", "ids")

    def __init__(self, hits: _Hits, ids: dict[CTerm, int]) -> None:
        self.hits, self.ids = hits, ids

    def find(self, term: CTerm) -> list[tuple[int, int, int]]:
        return self.hits.occurrences(term, self.ids[term])

    def unit(self, field: int, token: int, kind: str) -> int:
        return self.hits.unit(field, token, kind)


class Matcher:
    """Topics compiled into one automaton; `match` is pure and thread-safe."""

    def __init__(self, topics: Sequence[Topic]) -> None:
        self.topics = tuple(topics)
        self._term_ids: dict[CTerm, int] = {}
        # per topic: global term id -> that topic's term indices (to tell evaluate which
        # of its terms may occur in an item)
        self._local: list[dict[int, list[int]]] = [{} for _ in self.topics]
        # per topic: its top-level alternatives with their anchors; only the alternatives
        # whose anchors occurred are evaluated (a wide topic costs what its live branches cost)
        self._branches = [branches(t.compiled) for t in self.topics]
        entries: dict[str, tuple[list[tuple[int, int]], set[int]]] = {}
        for t_index, topic in enumerate(self.topics):
            q = topic.compiled
            anchors = anchor_terms(q.tree, q.terms)
            for i, term in enumerate(q.terms):
                term_id = self._term_ids.setdefault(term, len(self._term_ids))
                self._local[t_index].setdefault(term_id, []).append(i)
                for key, offset in term_keys(term):
                    places, triggers = entries.setdefault(key, ([], set()))
                    if (term_id, offset) not in places:
                        places.append((term_id, offset))
                    if i in anchors:
                        triggers.add(t_index)
        self._automaton = ahocorasick.Automaton()
        for key, (places, triggers) in entries.items():
            self._automaton.add_word(key, (len(key), tuple(places), frozenset(triggers)))
        if entries:
            self._automaton.make_automaton()
        self._empty = not entries

    def match(self, title: str, body: str = "", *, lang: str | None = None,
              feed: FeedSpec | None = None) -> list[Match]:
        """The topics this text matches, with the terms and spans that made each match."""
        if self._empty:
            return []
        tw, bw = words(title), words(body)
        toks = tw + [_FIELD_SEP] + bw
        hay = " " + " ".join(toks) + " "  # one space before every token
        found_keys = list(self._automaton.iter(hay))
        triggered = set().union(*(v[2] for _, v in found_keys)) if found_keys else set()
        topics = [i for i in sorted(triggered) if self.topics[i].applies_to(lang, feed)]
        if not topics:
            return []
        starts: dict[int, set[int]] = defaultdict(set)
        for end, (length, places, _) in found_keys:
            # token index of the key's first word (a compound key starts inside that word)
            first = hay.count(" ", 0, end - length + 2) - 1
            for term_id, offset in places:
                starts[term_id].add(first - offset)
        doc = _TopicDoc(_Hits(toks, len(tw), starts, (title, body), lang), self._term_ids)
        found = []
        for i in topics:
            local = self._local[i]
            present = {k for term_id in starts for k in local.get(term_id, ())}
            live = tuple(b for b, anchors in self._branches[i] if not anchors.isdisjoint(present))
            if not live:
                continue
            tree = live[0] if len(live) == 1 else ("or", live)
            ok, occ = evaluate(self.topics[i].compiled, doc, present, tree)
            if ok:
                found.append((self.topics[i], occ))
        return _with_spans(found, title, body)

    def match_item(self, item: Item, feed: FeedSpec | None = None) -> list[Match]:
        title, body = item.text_fields()
        return self.match(title, body, lang=item.lang, feed=feed)


def _with_spans(found: list[tuple[Topic, list]], title: str, body: str) -> list[Match]:
    """Matches with hits located in the original text (tokenised only where needed)."""
    if not found:
        return []
    texts = (title, body)
    fields = {f for _, occ in found for f, *_ in occ}
    located = tuple(spans(texts[f]) if f in fields else [] for f in (0, 1))
    return [Match(topic.id, _hits(topic, occ, located, texts)) for topic, occ in found]


def _hits(topic: Topic, occ: Iterable[tuple[int, int, int, int]],
          located: tuple[list[tuple[int, int]], ...], texts: tuple[str, str]) -> tuple[Hit, ...]:
    out: dict[Hit, None] = {}
    for f, s, e, term_index in occ:
        start, end = located[f][s][0], located[f][e - 1][1]
        label = topic.compiled.terms[term_index].label
        out.setdefault(Hit(label, FIELDS[f], start, end, texts[f][start:end]), None)
    return tuple(sorted(out, key=lambda h: (h.field != "title", h.start, h.end)))
