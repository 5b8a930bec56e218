"""The status page: what operators see at `/`, built from values and rendered with Jinja2.

Pure: `build_page` takes what web.py read from the store (and `now`) and returns a
StatusPage; `render_page` turns it into one self-contained HTML document (inline CSS, inline
SVG charts, no script, no external asset). Jinja2 (the standard Python template engine)
escapes every value, so a feed's title or error can never inject markup.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from .metrics import feed_health
from .model import Topic
from .store import AlertRow, FeedState

DAYS = 14  # alert volume shown per topic
LATEST = 30  # latest alerts shown
TEMPLATES = Path(__file__).resolve().with_name("templates")
_BAR, _GAP, _HEIGHT = 9, 2, 36  # chart geometry, pixels


@dataclass(frozen=True)
class FeedRow:
    """One feed as the page shows it."""

    name: str
    url: str
    health: str  # ok | failing | never
    last_poll: str
    status: str
    items: int
    errors: int
    last_error: str


@dataclass(frozen=True)
class TopicRow:
    """One topic: its subscribers and its alert volume over the last DAYS days."""

    id: str
    title: str
    priority: str
    subscribers: int
    days: tuple[int, ...]
    chart: Markup

    @property
    def total(self) -> int:
        return sum(self.days)


@dataclass(frozen=True)
class AlertLine:
    """One alerted item (once, whatever the number of destinations)."""

    when: str
    topic: str
    title: str
    link: str
    source: str
    status: str
    story: str | None


@dataclass(frozen=True)
class StoryLine:
    """A story: alerts that the clustering step grouped (empty until stories land)."""

    story: str
    topic: str
    title: str
    link: str
    alerts: int
    latest: str


@dataclass(frozen=True)
class InstanceLine:
    """One instance sharing the database (several instances on PostgreSQL)."""

    name: str
    alive: bool
    jobs: int
    heartbeat: str
    updates: bool  # it consumes Telegram updates


def instance_lines(view: Any, *, now: datetime) -> tuple[InstanceLine, ...]:
    """The instances of a store.queue_overview() (bot/store/instances.py)."""
    if view is None:
        return ()
    consumer = view.updates_consumer or ""
    return tuple(InstanceLine(i.name, i.alive, len(i.jobs), _ago(i.heartbeat_at, now),
                              consumer.startswith(f"veille {i.name} "))
                 for i in view.instances)


@dataclass(frozen=True)
class StatusPage:
    """Everything on the page; nothing secret ever goes in."""

    now: str
    version: str
    ready: str  # "ready" or the reason it is not
    feeds: tuple[FeedRow, ...]
    topics: tuple[TopicRow, ...]
    alerts: tuple[AlertLine, ...]
    stories: tuple[StoryLine, ...]
    pending: Mapping[str, int]
    subscribers: Mapping[str, int] = field(default_factory=dict)
    instances: tuple[InstanceLine, ...] = ()

    @property
    def failing(self) -> int:
        return sum(f.health == "failing" for f in self.feeds)


def build_page(*, now: datetime, version: str, ready: str, topics: Sequence[Topic],
               feeds: Sequence[FeedState], volume: Mapping[str, Mapping[date, int]],
               alerts: Sequence[AlertRow], subscribers: Mapping[str, int],
               pending: Mapping[str, int], queue: Any = None) -> StatusPage:
    """The page's content from the store's views, as of `now`."""
    days = daily_counts(volume, now=now)
    first = now.date() - timedelta(days=DAYS - 1)
    topic_rows = tuple(
        TopicRow(t.id, t.title, t.priority, subscribers.get(t.id, 0), days[t.id],
                 bar_chart(days[t.id], first_day=first, label=t.id))
        for t in topics)
    lines = latest_alerts(alerts, now=now)
    return StatusPage(
        now=f"{now:%Y-%m-%d %H:%M} UTC", version=version, ready=ready,
        feeds=tuple(_feed_row(f, now) for f in feeds if f.active), topics=topic_rows,
        alerts=lines[:LATEST], stories=stories(alerts, now=now), pending=dict(pending),
        subscribers=dict(subscribers), instances=instance_lines(queue, now=now))


def daily_counts(volume: Mapping[str, Mapping[date, int]], *, now: datetime,
                 days: int = DAYS) -> dict[str, tuple[int, ...]]:
    """Alerts per topic per UTC day, oldest first, the last of them today (0 for days and
    topics without any)."""
    first = now.date() - timedelta(days=days - 1)
    span = [first + timedelta(days=i) for i in range(days)]
    counts = {topic: tuple(per_day.get(d, 0) for d in span) for topic, per_day in volume.items()}
    return defaultdict(lambda: (0,) * days, counts)


def bar_chart(counts: Sequence[int], *, first_day: date, label: str) -> Markup:
    """A small inline SVG bar chart, one bar per day, each with its date and count as a tooltip."""
    top = max(counts, default=0) or 1
    width = len(counts) * (_BAR + _GAP)
    bars = []
    for i, n in enumerate(counts):
        h = max(1, round(n / top * (_HEIGHT - 2))) if n else 1
        day = first_day + timedelta(days=i)
        cls = "bar" if n else "bar zero"
        bars.append(f'<rect class="{cls}" x="{i * (_BAR + _GAP)}" y="{_HEIGHT - h}" '
                    f'width="{_BAR}" height="{h}"><title>{day:%d %b}: {n}</title></rect>')
    total = sum(counts)
    name = escape(f"{label}: {total} alert{'' if total == 1 else 's'} in {len(counts)} days")
    return Markup(f'<svg class="chart" role="img" aria-label="{name}" width="{width}" '
                  f'height="{_HEIGHT}" viewBox="0 0 {width} {_HEIGHT}" '
                  f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>')


def latest_alerts(rows: Sequence[AlertRow], *, now: datetime) -> tuple[AlertLine, ...]:
    """One line per (topic, item), newest first; 'sent' once any destination has it."""
    seen: dict[tuple[str, str], AlertLine] = {}
    for r in rows:  # newest first
        line = seen.get((r.topic, r.link))
        if line is None:
            seen[(r.topic, r.link)] = AlertLine(_ago(r.created_at, now), r.topic, r.title,
                                                _web_link(r.link), r.source, r.status, r.story)
        elif r.status == "sent":
            seen[(r.topic, r.link)] = replace(line, status="sent")
    return tuple(seen.values())


def stories(rows: Sequence[AlertRow], *, now: datetime) -> tuple[StoryLine, ...]:
    """Alerts grouped by story id, largest first; empty while nothing assigns stories.

    The hook for story clustering: once alerts carry a story id, its stories show here.
    """
    grouped: dict[tuple[str, str], list[AlertRow]] = defaultdict(list)
    for r in rows:
        if r.story:
            grouped[(r.story, r.topic)].append(r)
    found = [StoryLine(story, topic, rs[-1].title, _web_link(rs[-1].link),
                       len({r.link for r in rs}), _ago(rs[0].created_at, now))
             for (story, topic), rs in grouped.items()]
    return tuple(sorted(found, key=lambda s: -s.alerts)[:LATEST])


def render_page(page: StatusPage) -> str:
    """The page as one HTML document."""
    return _environment().get_template("status.html").render(page=page)


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def _feed_row(f: FeedState, now: datetime) -> FeedRow:
    status = "" if f.last_status is None else str(f.last_status)
    return FeedRow(f.name, public_url(f.declared_url), feed_health(f), _ago(f.last_poll_at, now),
                   status, f.items_total, f.error_streak, (f.last_error or "")[:300])


def public_url(url: str) -> str:
    """The URL without any user:password part (a feed behind basic auth keeps it private)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _web_link(link: str) -> str:
    """Only http(s) links become hrefs (a feed could carry a javascript: link)."""
    return link if link.startswith(("http://", "https://")) else ""


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    secs = (now - when).total_seconds()
    span = abs(secs)
    text = (f"{span:.0f}s" if span < 120 else f"{span / 60:.0f}m" if span < 7200
            else f"{span / 3600:.0f}h" if span < 172800 else f"{span / 86400:.0f}d")
    return f"{text} ago" if secs >= 0 else f"in {text}"
