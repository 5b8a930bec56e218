"""Alerts as text: the console line and the `veille once --json` object (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Iterable

from rich.text import Text

from .model import Alert, Topic
from .summarize import summarize

SUMMARY_CHARS = 400


def short(text: str, limit: int = SUMMARY_CHARS) -> str:
    """text cut at a word boundary within limit characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.—-") + "…"


def _when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "undated"


def alert_json(alert: Alert, topic: Topic | None = None, *, also: Iterable[Any] = (),
               previously: tuple[datetime, str] | None = None,
               kept: str | None = None) -> dict:
    """The object `veille once --json` prints for one alert: its summary (summarize.py, or
    `kept`: the one made from the article or by the LLM), and in `also` the items of other
    outlets that joined its story ({source, title, url})."""
    item = alert.item
    summary = summarize(item, alert.match, topic, previously)
    if kept:
        summary = replace(summary, text=kept)
    return {
        "topic": alert.topic,
        "title": item.title,
        "url": item.link,
        "source": item.source or item.feed,
        "published": item.published.isoformat() if item.published else None,
        "terms": list(alert.match.terms),
        "summary": summary.text,
        "context": summary.context or None,
        "previously": ({"date": previously[0].date().isoformat(), "title": previously[1]}
                       if previously else None),
        "story": alert.story,
        "also": [{"source": m.source, "title": m.title, "url": m.url}
                 for m in (also or alert.extra.get("also", ()))],
    }


def alert_text(alert: Alert, topic: Topic | None) -> Text:
    """The console rendering: topic, title, source and time, matched terms, link."""
    item = alert.item
    title = topic.title if topic else alert.topic
    out = Text()
    out.append(f"▶ {title}", style="bold magenta")
    out.append(f"  [{alert.topic}]\n", style="dim")
    out.append(f"  {item.title}\n", style="bold")
    out.append(f"  {item.source or item.feed} · {_when(item.published)}\n", style="dim")
    if alert.match.terms:
        out.append("  matched: " + ", ".join(alert.match.terms) + "\n", style="yellow")
    summary = short(item.summary or item.content, 280)
    if summary:
        out.append(f"  {summary}\n")
    out.append(f"  {item.link}", style="blue underline")
    return out
