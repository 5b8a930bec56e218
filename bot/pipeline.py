"""The orchestrator: poll one feed end to end (fetch → parse + match → claim and record).

The only place where the stages meet, but for one step: parse and match, both pure and
CPU-bound, run together as one ParseJob (workers.py) in the parse executor, so that an
item crosses the process boundary once. The claim stores the items, matches, outbox rows
and the fetch's outcome in one transaction. I/O objects (fetcher, store, parse executor)
and the clock come in as arguments; the watchlist comes from a callable, so a reload swaps
it between polls without touching in-flight work.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping, Sequence

import httpx

from .errors import ParseError, StoreError
from .fetch import Fetcher, Validators, next_delay
from .model import Alert, FeedSpec, FetchResult, Item, Match
from .store import FeedState, FetchRecord, Store
from .article import fetch_article
from .llm import LLM, llm_summary
from .stories import StoryIndex, SurgeRule, detect_surge
from .summarize import feed_text, is_thin, summarize
from .watchlist import Watchlist
from .workers import MatcherFiles, Parsed, ParseJob

log = logging.getLogger("veille.poll")
SURGE_TOP = 5  # stories a surge alert lists


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class PollOutcome:
    """What one poll of one feed did (one log line, one row of `veille once` output)."""

    feed: FeedSpec
    status: str  # "new" (parsed), "not-modified" (304), "unchanged" (same body), "error"
    http_status: int = 0
    items: int = 0
    new_items: int = 0
    skipped: int = 0
    alerts: tuple[Alert, ...] = ()
    silent: int = 0  # new matched items recorded without alerts (a first poll's backlog)
    undated: int = 0  # of those, the ones without a date (the others are older than the cutoff)
    error: str | None = None
    next_poll_at: datetime | None = None
    elapsed: float = 0.0
    matches: int = 0
    fetch_seconds: float = 0.0  # the HTTP fetch (metrics.py)
    parse_seconds: float = 0.0  # parse + match in the worker
    topic_matches: tuple[tuple[str, int], ...] = ()  # (topic, new items matched) pairs

    def log_fields(self, *, url: bool = False) -> dict[str, object]:
        """The poll's log line: the feed by name; its URL too when url (debug level)."""
        return {"feed": self.feed.name, "url": self.feed.url if url else None,
                "status": self.status, "http": self.http_status,
                "items": self.items, "new": self.new_items, "matched": self.matches,
                "alerts": len(self.alerts), "silent": self.silent, "undated": self.undated or None,
                "skipped": self.skipped, "error": self.error, "ms": round(self.elapsed * 1000)}


@dataclass
class PollSettings:
    """The knobs of polling, taken from Settings."""

    first_poll_max_age: timedelta = timedelta(hours=24)
    max_backoff: float = 6 * 3600
    jitter: float = 0.1
    destinations: Sequence[str] = ("console",)
    rng: random.Random = field(default_factory=random.Random)
    surge: SurgeRule = field(default_factory=SurgeRule)  # coverage surges (VEILLE_SURGE_*)
    fetch_articles: bool = False  # fetch the article when the feed's text is too thin
    llm: LLM | None = None  # summaries by an OpenAI-compatible endpoint (llm.py)
    # polls between their fetch and the end of their claim: a cycle starts every feed at
    # once, and the bodies that the fetcher (50 at a time) is faster to get than the parse
    # workers to parse would otherwise all wait in memory (~60 KB each, then their items)
    in_flight: int = 64


class Pipeline:
    """Polls feeds: every new matching item becomes exactly one pending alert per destination."""

    def __init__(self, *, fetcher: Fetcher, store: Store, watchlist: Callable[[], Watchlist],
                 executor: Executor | None = None, settings: PollSettings | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 observe: Callable[[PollOutcome], None] | None = None) -> None:
        self.fetcher = fetcher
        self.observe = observe  # told of every poll's outcome (App: metrics.observe_poll)
        self.store = store
        self.watchlist = watchlist
        self.executor = executor
        self.settings = settings or PollSettings()
        self.clock = clock
        self.matchers = MatcherFiles()  # the current matcher, handed to the parse workers
        self._watched_from: datetime | None = None  # first successful poll (surges need history)
        # open stories of the last 72 h: rebuilt from the store by the first claim, then kept
        # up to date by each claim (stories.py, store/stories.py)
        self.stories = StoryIndex()
        self._in_flight: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def close(self) -> None:
        """Remove the files handed to the workers."""
        self.matchers.close()

    def _slots(self) -> asyncio.Semaphore:
        """The in_flight semaphore of the running loop (tests run a pipeline in several)."""
        loop = asyncio.get_running_loop()
        if self._in_flight is None or self._in_flight[0] is not loop:
            self._in_flight = (loop, asyncio.Semaphore(self.settings.in_flight))
        return self._in_flight[1]

    async def poll(self, feed: FeedSpec, state: FeedState | None = None) -> PollOutcome:
        """Poll one feed; never raises for a feed's own failures (they are recorded).

        state: the feed's stored state when the caller already read it (a cycle reads all
        feeds' states in one query); read here otherwise.
        """
        started = time.monotonic()
        outcome = await self._poll(feed, state)
        outcome = _with(outcome, elapsed=time.monotonic() - started)
        level = logging.WARNING if outcome.status == "error" else logging.INFO
        fields = outcome.log_fields(url=log.isEnabledFor(logging.DEBUG))
        log.log(level, "poll", extra={"fields": fields})
        if self.observe is not None:
            self.observe(outcome)
        return outcome

    async def _poll(self, feed: FeedSpec, state: FeedState | None) -> PollOutcome:
        async with self._slots():  # at most in_flight bodies fetched and not yet claimed
            done = await self._fetch_and_claim(feed, state)
        if isinstance(done, PollOutcome):
            return done
        outcome, alerts, now = done
        await self._enrich(alerts)
        await self._surges({a.topic for a in alerts}, now)
        return outcome

    async def _fetch_and_claim(
        self, feed: FeedSpec, state: FeedState | None
    ) -> PollOutcome | tuple[PollOutcome, Sequence[Alert], datetime]:
        """Fetch, parse and claim; the outcome, with the alerts to enrich when there are new
        items (a PollOutcome alone when nothing more is to be done)."""
        if state is None:
            state = await self.store.run(self.store.feed_state, feed.url)
        if state is None:
            await self.store.run(self.store.sync_feeds, [feed])
            state = await self.store.run(self.store.feed_state, feed.url)
        validators = Validators(state.etag, state.last_modified, state.body_hash)
        result = await self.fetcher.fetch(state.url or feed.url, validators)
        if result.error is not None:
            return await self._failed(feed, state.error_streak + 1, result, result.error)
        if validators.unchanged(result):
            status = "not-modified" if result.not_modified else "unchanged"
            return await self._succeeded(feed, result, status)
        # an item whose guid this feed already gave can never be new: do not match it again
        known = frozenset() if state.first_poll else frozenset(
            await self.store.run(self.store.seen_guids, feed.url))
        parse_started = time.monotonic()
        try:
            parsed = await self._parse(feed, result, known)
        except ParseError as exc:
            return await self._failed(feed, state.error_streak + 1, result, f"parse: {exc}")
        parse_seconds = time.monotonic() - parse_started
        now = self.clock()
        next_at = self._next_poll(now, feed, 0, None)
        cutoff = now - self.settings.first_poll_max_age if state.first_poll else None
        items = parsed.feed.items
        # the workers' story signatures wait in the index, so the claim's transaction decides
        by_guid = {i.guid: i for i in items}
        tickets = self.stories.offer((by_guid[g], topic, sig)
                                     for (g, topic), sig in parsed.signatures.items())
        try:
            claim = await self.store.run(
                self.store.claim, feed.url, items, parsed.matches, now=now, alert_cutoff=cutoff,
                destinations=tuple(self.settings.destinations), fetch=_record(result, next_at),
                known=known, stories=self.stories)
        except StoreError as exc:  # rolled back whole (validators too): the next poll retries
            return await self._failed(feed, state.error_streak + 1, result, f"store: {exc}")
        finally:
            self.stories.withdraw(tickets)
        outcome = PollOutcome(feed, "new", http_status=result.status, next_poll_at=next_at,
                              items=len(items), new_items=claim.new, alerts=claim.alerts,
                              silent=claim.silent, skipped=parsed.feed.skipped,
                              undated=_undated(claim.items, parsed.matches) if cutoff else 0,
                              matches=len(parsed.matches), fetch_seconds=result.elapsed,
                              parse_seconds=parse_seconds,
                              topic_matches=_per_topic(parsed.matches, claim.items))
        return outcome, claim.alerts, now

    async def _parse(self, feed: FeedSpec, result: FetchResult, known: frozenset[str]) -> Parsed:
        """Parse and match in the executor (another process by default): both are CPU-bound.

        A failure of the worker itself (killed, out of memory) is a ParseError for this poll:
        the feed is retried at its next poll and the others go on.
        """
        url = result.final_url or result.url
        matcher = self.watchlist().matcher
        if self.executor is None:
            return ParseJob(result.body or b"", url, dict(result.headers), feed, matcher, known)()
        ref = self.matchers.ref(matcher)  # pickled to a file once per watchlist version
        job = ParseJob(result.body or b"", url, dict(result.headers), feed, ref, known)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, job)
        except ParseError:
            raise
        except Exception as exc:  # noqa: BLE001 (a broken worker must not stop the cycle)
            log.error("parse-worker", extra={"fields": {"feed": feed.url, "error": repr(exc)}})
            raise ParseError(f"parse worker failed: {type(exc).__name__}: {exc}") from exc

    async def _enrich(self, alerts: Sequence[Alert]) -> None:
        """For each story just opened: the article's text when the feed's is too thin
        (fetch_articles) and the LLM's summary (llm), kept with the story before delivery.
        Off by default; any failure keeps the feed's text (logged in article.py, llm.py)."""
        settings = self.settings
        if not settings.fetch_articles and settings.llm is None:
            return
        firsts = {a.story: a for a in alerts if a.story}.values()  # one per story
        async with httpx.AsyncClient(trust_env=False) as client:
            for alert in firsts:
                item, text, origin = alert.item, None, "article"
                if settings.fetch_articles and is_thin(item):
                    text = (await fetch_article(self.fetcher, item.link)).text
                summary = summarize(item, alert.match, self.watchlist().topic(alert.topic),
                                    text=text)
                if settings.llm is not None:
                    summary = await llm_summary(client, settings.llm, item, alert.match,
                                                text or feed_text(item), summary)
                if summary.origin in ("article", "llm"):
                    try:
                        await self.store.run(self.store.set_story_summary, alert.story,
                                             summary.text, summary.origin)
                    except StoreError as exc:
                        log.error("summary", extra={"fields": {"story": alert.story,
                                                               "error": str(exc)}})

    async def _watching_since(self, now: datetime) -> datetime:
        """When veille first polled a feed successfully (read once; it never moves later)."""
        if self._watched_from is None:
            firsts = [f.first_success_at for f in await self.store.run(self.store.feeds_overview)
                      if f.first_success_at is not None]
            if not firsts:
                return now
            self._watched_from = min(firsts)
        return self._watched_from

    async def _surges(self, topics: set[str], now: datetime) -> None:
        """For each topic that just opened a story: queue one surge alert when its new
        stories surge (stories.detect_surge), unless one is cooling down. A failure is logged:
        the items are stored already, and the next new story checks again."""
        rule = self.settings.surge
        for topic_id in sorted(topics):
            topic = self.watchlist().topic(topic_id)
            try:
                opened = await self.store.run(self.store.story_times, topic_id,
                                              since=now - rule.recent - rule.baseline)
                cooling = await self.store.run(self.store.last_surge_until, topic_id)
                surge = detect_surge(opened, now=now, rule=rule, cooling_until=cooling,
                                     factor=topic.surge if topic else None,
                                     watching_since=await self._watching_since(now))
                if surge is None:
                    continue
                recent = await self.store.run(self.store.recent_stories, topic=topic_id,
                                              since=now - rule.recent)
                top = sorted(recent, key=lambda s: (-len(s.outlets), s.created_at))[:SURGE_TOP]
                await self.store.run(self.store.record_surge, topic_id, recent=surge.recent,
                                     baseline=surge.usual, top=top, now=now,
                                     until=now + rule.cooldown,
                                     destinations=tuple(self.settings.destinations))
                log.info("surge", extra={"fields": {"topic": topic_id, "recent": surge.recent,
                                                    "usual": surge.usual}})
            except StoreError as exc:
                log.error("surge", extra={"fields": {"topic": topic_id, "error": str(exc)}})

    def _next_poll(self, now: datetime, feed: FeedSpec, streak: int,
                   retry_after: float | None) -> datetime:
        """When to poll again: the interval with jitter, or a backoff after failures."""
        delay = next_delay(feed.interval, streak, retry_after=retry_after,
                           max_backoff=self.settings.max_backoff, jitter=self.settings.jitter,
                           rng=self.settings.rng)
        return now + timedelta(seconds=delay)

    async def _succeeded(self, feed: FeedSpec, result: FetchResult, status: str) -> PollOutcome:
        now = self.clock()
        next_at = self._next_poll(now, feed, 0, None)
        await self.store.run(self.store.record, feed.url, _record(result, next_at), now=now)
        return PollOutcome(feed, status, http_status=result.status, next_poll_at=next_at,
                           fetch_seconds=result.elapsed)

    async def _failed(self, feed: FeedSpec, streak: int, result: FetchResult,
                      error: str) -> PollOutcome:
        now = self.clock()
        next_at = self._next_poll(now, feed, streak, result.retry_after)
        record = FetchRecord(result.status or None, next_at, error)
        try:
            await self.store.run(self.store.record, feed.url, record, now=now)
        except StoreError as exc:  # recording the failure must not hide it
            log.error("store", extra={"fields": {"feed": feed.url, "error": str(exc)}})
        return PollOutcome(feed, "error", http_status=result.status, error=error,
                           next_poll_at=next_at, fetch_seconds=result.elapsed)


def _undated(fresh: Sequence[Item], matches: dict) -> int:
    """New matched items without a date: on a first poll, the claim keeps them silent."""
    return sum(1 for i in fresh if i.published is None and matches.get(i.guid))


def _record(result: FetchResult, next_at: datetime) -> FetchRecord:
    """A successful fetch as the feeds row keeps it."""
    return FetchRecord(result.status, next_at, None, result.etag, result.last_modified,
                       result.body_hash, result.permanent_url)


def _per_topic(matches: Mapping[str, Sequence[Match]],
               new: Sequence[Item]) -> tuple[tuple[str, int], ...]:
    """How many of the items stored as new matched each topic."""
    counts = Counter(t for i in new for t in {m.topic for m in matches.get(i.guid, ())})
    return tuple(sorted(counts.items()))


def _with(outcome: PollOutcome, **changes: object) -> PollOutcome:
    return replace(outcome, **changes)
