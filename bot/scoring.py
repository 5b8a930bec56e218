"""Operators' measures of a watchlist: precision and recall per topic over labelled items,
and why a topic did or did not match one item (which branch fired, what was missing).

Pure: takes topics, aliases and texts, returns values; `veille test` prints them.
A topic's branches are the alternatives of its query's top-level OR; each is compiled and
matched on its own, and so is each requirement of a branch that is an AND.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from .errors import QuerySyntaxError
from .model import FeedSpec, Topic
from .query import And, Node, Not, Or, compile_query, parse, to_text


@dataclass(frozen=True)
class TopicScore:
    """Counts for one topic; fp and fn hold the keys of the items concerned."""

    topic: str
    tp: int = 0
    fp: tuple[str, ...] = ()
    fn: tuple[str, ...] = ()

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + len(self.fp)) if self.tp + len(self.fp) else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + len(self.fn)) if self.tp + len(self.fn) else 1.0


def score(rows: Iterable[tuple[str, set[str], set[str]]], topics: Sequence[str]
          ) -> dict[str, TopicScore]:
    """Per topic, from (item key, expected topics, matched topics) rows."""
    tp = {t: 0 for t in topics}
    fp: dict[str, list[str]] = {t: [] for t in topics}
    fn: dict[str, list[str]] = {t: [] for t in topics}
    for key, expected, got in rows:
        for t in topics:
            if t in got and t in expected:
                tp[t] += 1
            elif t in got:
                fp[t].append(key)
            elif t in expected:
                fn[t].append(key)
    return {t: TopicScore(t, tp[t], tuple(fp[t]), tuple(fn[t])) for t in topics}


@dataclass(frozen=True)
class Branch:
    """One alternative of a topic's query, and how it fared on an item."""

    index: int  # 1-based
    text: str
    matched: bool
    missing: tuple[str, ...] = ()  # requirements of an AND branch that were not met
    excluded_by: tuple[str, ...] = ()  # its NOT parts that did occur
    found: tuple[str, ...] = ()  # matched texts of the requirements that were met

    @property
    def near_miss(self) -> bool:
        """Not matched, but some of its requirements were met."""
        return not self.matched and bool(self.found)


@dataclass
class _Part:
    text: str
    negated: bool
    matcher: object | None = field(default=None, repr=False)


class Explainer:
    """A topic's query cut into branches and their requirements, each with its own matcher."""

    def __init__(self, topic: Topic, aliases: Mapping[str, Sequence[str]]) -> None:
        self.topic = topic
        root = parse(topic.query)
        alternatives = root.children if isinstance(root, Or) else (root,)
        self._branches = []
        for node in alternatives:
            kids = node.children if isinstance(node, And) else (node,)
            parts = [self._part(k, aliases) for k in kids] if len(kids) > 1 else []
            self._branches.append((to_text(node), self._part(node, aliases), parts))

    def _part(self, node: Node, aliases) -> _Part:
        from .match import Matcher  # pyahocorasick, lazily like Watchlist.matcher

        negated = isinstance(node, Not)
        inner = node.child if negated else node
        try:
            compiled = compile_query(to_text(inner), aliases)
        except QuerySyntaxError:  # a part that cannot stand alone (only exclusions)
            return _Part(to_text(node), negated)
        topic = Topic(self.topic.id, self.topic.title, compiled.source, compiled)
        return _Part(to_text(node), negated, Matcher([topic]))

    def branches(self, title: str, body: str, lang: str | None = None) -> list[Branch]:
        """Every branch of the topic, matched on this text (topic scope not applied)."""
        out = []
        for i, (text, whole, parts) in enumerate(self._branches, 1):
            matched = bool(_hits(whole, title, body, lang)) if whole.matcher else False
            missing, excluded, found = [], [], []
            for part in parts:
                terms = _hits(part, title, body, lang)
                if part.negated and terms:
                    excluded.append(part.text)
                elif not part.negated and not terms:
                    missing.append(part.text)
                elif not part.negated:
                    found += terms
            if not parts and matched:
                found = list(_hits(whole, title, body, lang))
            out.append(Branch(i, text, matched, tuple(missing), tuple(excluded),
                              tuple(dict.fromkeys(found))))
        return out

    def fired(self, title: str, body: str, lang: str | None = None) -> list[int]:
        """The 1-based indices of the branches that matched."""
        return [b.index for b in self.branches(title, body, lang) if b.matched]


def _hits(part: _Part, title: str, body: str, lang: str | None) -> tuple[str, ...]:
    if part.matcher is None:
        return ()
    found = part.matcher.match(title, body, lang=lang)
    return found[0].terms if found else ()


def scope_reason(topic: Topic, lang: str | None, feed: FeedSpec | None) -> str | None:
    """Why an item is outside a topic's scope (language, feed, tags), or None."""
    if topic.applies_to(lang, feed):
        return None
    code = (lang or "").split("-")[0].lower()
    if topic.languages and code and code not in topic.languages:
        return f"language {code!r} is not in the topic's languages [{', '.join(topic.languages)}]"
    if feed is not None and topic.feeds and feed.url not in topic.feeds \
            and feed.name not in topic.feeds:
        return f"feed {feed.name!r} is not in the topic's feeds"
    return f"feed {feed.name if feed else '?'!r} has none of the topic's tags " \
           f"[{', '.join(topic.tags)}]"

