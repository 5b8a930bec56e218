"""What runs in the parse processes: parse a feed body, match its new items, and sketch the
story signature of each new match (stories.signature: tokens, shingles, weighted words).

Kept light: a worker imports the parsers at start and the matcher on its first job. The
current Matcher reaches the workers as a pickle file written once per watchlist version
(MatcherFiles), named by a hash of its content; a job names that file, and each worker loads it once and keeps it.
Matching and signatures beside parsing keep the per-item CPU work off the main process,
whose one core also runs the event loop, the HTTP client and the database, and out of the
claim's transaction. The workers never import numpy (stories.py loads it only for its index).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .model import FeedSpec, Match
from .parse import ParsedFeed, parse_feed
from .stories import Signature, signature

if TYPE_CHECKING:
    from .match import Matcher


@dataclass(frozen=True, slots=True)
class MatcherRef:
    """Where a worker finds a Matcher: the pickle file of one watchlist version."""

    key: str
    path: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed feed, the matches of its items that were not known by guid, and the story
    signature of each (guid, topic) matched (key and time left to the claim)."""

    feed: ParsedFeed
    matches: dict[str, list[Match]]
    signatures: dict[tuple[str, str], Signature] = field(default_factory=dict)


@dataclass(frozen=True)
class ParseJob:
    """A picklable call: parse a body, then match its items that are not in `known`.

    matcher is a Matcher (in-process calls) or a MatcherRef (process pools); None matches
    nothing.
    """

    body: bytes
    url: str
    headers: dict
    spec: FeedSpec
    matcher: "Matcher | MatcherRef | None" = None
    known: frozenset[str] = frozenset()

    def __call__(self) -> Parsed:
        parsed = parse_feed(self.body, url=self.url, headers=self.headers, source=self.spec.name,
                            lang=self.spec.lang)
        matcher = _load(self.matcher) if isinstance(self.matcher, MatcherRef) else self.matcher
        found = match_items(matcher, parsed, self.spec, self.known)
        return Parsed(parsed, found, signatures(parsed, found))


def match_items(matcher: "Matcher | None", parsed: ParsedFeed, spec: FeedSpec,
                known: frozenset[str] = frozenset()) -> dict[str, list[Match]]:
    """The matches of each item that has some and whose guid is not known, by guid."""
    if matcher is None:
        return {}
    return {item.guid: found for item in parsed.items
            if item.guid not in known and (found := matcher.match_item(item, spec))}


def signatures(parsed: ParsedFeed,
               matches: dict[str, list[Match]]) -> dict[tuple[str, str], Signature]:
    """The story signature of each matched item per topic (its first match of the topic,
    as the claim keeps), without key or time: the claim gives them."""
    out: dict[tuple[str, str], Signature] = {}
    for item in parsed.items:
        for match in matches.get(item.guid, ()):
            if (item.guid, match.topic) not in out:
                out[(item.guid, match.topic)] = signature(item, match, key="", when=None)
    return out


_LOADED: dict[str, "Matcher"] = {}  # in a worker: key -> Matcher, the latest few


def _load(ref: MatcherRef) -> "Matcher":
    matcher = _LOADED.get(ref.key)
    if matcher is None:
        with open(ref.path, "rb") as handle:
            matcher = pickle.load(handle)
        while len(_LOADED) >= 2:  # a reload leaves at most one older version in flight
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[ref.key] = matcher
    return matcher


class MatcherFiles:
    """The main process's side: one pickle file per Matcher handed to the workers.

    Files live in a private temporary directory removed by close(); the previous version's
    file is kept so that jobs already queued with it still find it.
    """

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._refs: list[tuple["Matcher", MatcherRef]] = []
        self._lock = threading.Lock()

    def ref(self, matcher: "Matcher") -> MatcherRef:
        with self._lock:
            for known, ref in self._refs:
                if known is matcher:
                    return ref
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="veille-matchers-"))
            data = pickle.dumps(matcher, pickle.HIGHEST_PROTOCOL)
            # the content names the file: a worker shared by several pipelines (or processes)
            # caches by key, so equal keys must mean equal matchers
            key = hashlib.blake2b(data, digest_size=16).hexdigest()
            path = self._dir / f"{key}.pickle"
            if not path.exists():
                temporary = path.with_suffix(".tmp")
                temporary.write_bytes(data)
                temporary.replace(path)  # a worker never reads half a file
            ref = MatcherRef(key, str(path))
            self._refs.append((matcher, ref))
            while len(self._refs) > 2:
                _old, stale = self._refs.pop(0)
                if all(kept.path != stale.path for _m, kept in self._refs):
                    Path(stale.path).unlink(missing_ok=True)
            return ref

    def close(self) -> None:
        with self._lock:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir, self._refs = None, []


def exit_with(pid: int) -> None:
    """Pool initializer: exit when the main process is gone (even after a SIGKILL)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
