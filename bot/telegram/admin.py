"""Operators' commands: /status, /feeds, /reload, /stats (a chart drawn with matplotlib).

Only the Telegram user ids in VEILLE_ADMINS reach these handlers: commands.py's wiring
refuses everyone else politely and logs the attempt. The handlers take the same `Call` as
the subscriber commands and reply in the operator's language.
"""

from __future__ import annotations

import asyncio
import io
from datetime import date, timedelta
from typing import Awaitable, Callable

from telegram.constants import ParseMode

from ..i18n import Translator
from .commands import Call, N_, StatusReport, bold, say, short
from .render import escape

STATS_DAYS = 14

ADMIN_DESCRIPTIONS = {
    "status": N_("Operators: feeds, last cycle, deliveries"),
    "feeds": N_("Operators: failing feeds"),
    "reload": N_("Operators: re-read the watchlists"),
    "stats": N_("Operators: alerts per topic per day (chart)"),
}



async def status(call: Call) -> str:
    t = call.t
    if call.ctx.status is None:
        return await say(call, escape(t("Status is not available in this process.")))
    report: StatusReport = await call.ctx.status()
    last = (t.datetime(report.last_cycle_at, call.tz, zone_name=True)
            if report.last_cycle_at else t("never"))
    if report.last_cycle_seconds is not None:
        last += " " + t("({seconds} s)", seconds=f"{report.last_cycle_seconds:.1f}")
    lines = [t("Feeds: {ok} healthy, {bad} failing (/feeds)", ok=report.feeds_healthy,
               bad=report.feeds_failing),
             t("Last cycle: {when}", when=last),
             t("Pending deliveries: {n}", n=report.pending_deliveries),
             t("Subscribers: {n} active, {off} inactive", n=report.subscribers,
               off=report.inactive_subscribers)]
    return await say(call, "\n".join([bold(t("veille status"))] + [escape(x) for x in lines]))


async def feeds(call: Call) -> str:
    t = call.t
    failing = [f for f in await call.db("feeds_overview") if f.active and f.error_streak > 0]
    if not failing:
        return await say(call, escape(t("Every feed is healthy.")))
    failing.sort(key=lambda f: (-f.error_streak, f.name))
    head = t.n("{n} failing feed", "{n} failing feeds", len(failing))
    lines = [f"<b>{escape(head)}</b>"]
    for f in failing:
        since = (t.datetime(f.last_success_at, call.tz) if f.last_success_at
                 else t("never"))
        detail = t("{errors} errors in a row; last success: {since}", errors=f.error_streak,
                   since=since)
        lines.append(f"• <b>{escape(f.name)}</b> — {escape(detail)}\n  "
                     f"<code>{escape(short(f.last_error or '?', 300))}</code>")
    return await say(call, "\n".join(lines))


async def reload(call: Call) -> str:
    t = call.t
    if call.ctx.reload is None:
        return await say(call, escape(t("Reloading is not available in this process.")))
    problems = await call.ctx.reload()
    if problems:
        head = t.n("Refused: {n} problem in the watchlists; the last good set stays.",
                   "Refused: {n} problems in the watchlists; the last good set stays.",
                   len(problems))
        body = "\n".join(f"<code>{escape(short(p, 300))}</code>" for p in problems)
        return await say(call, f"{bold(head)}\n{body}")
    wl = call.ctx.watchlist()
    msg = t("Watchlists reloaded: {topics} topics, {feeds} feeds.", topics=len(wl.topics),
            feeds=len(wl.feeds))
    return await say(call, escape(msg))


async def stats(call: Call) -> str:
    t = call.t
    now = call.now()
    counts = await call.db("alerts_per_topic_per_day", now=now, days=STATS_DAYS)
    if not counts:
        return await say(call, escape(t("No alerts in the last {days} days.", days=STATS_DAYS)))
    titles = {x.id: x.title for x in call.ctx.topics()}
    days = [now.date() - timedelta(days=STATS_DAYS - 1 - k) for k in range(STATS_DAYS)]
    png = await asyncio.to_thread(stats_chart, counts, days, titles, t)
    total = sum(sum(c.values()) for c in counts.values())
    caption = t("Alerts per topic per day, last {days} days (UTC): {total} in all.",
                days=STATS_DAYS, total=total)
    await call.bot.send_photo(call.chat_id, photo=png, caption=escape(caption),
                              parse_mode=ParseMode.HTML)
    return "ok"


def stats_chart(counts: dict[str, dict[date, int]], days: list[date], titles: dict[str, str],
                t: Translator) -> bytes:
    """A PNG line chart: one line per topic, one point per day (matplotlib, Agg backend:
    the well-kept plotting library, used without pyplot's global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(days))
    for topic in sorted(counts, key=lambda k: -sum(counts[k].values())):
        ys = [counts[topic].get(d, 0) for d in days]
        ax.plot(xs, ys, marker="o", linewidth=1.5, label=short(titles.get(topic, topic), 45))
    ax.set_xticks(list(xs), [t.day(d) for d in days], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(t("alerts"))
    ax.set_ylim(bottom=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(t("Alerts per topic per day"))
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


ADMIN_COMMANDS: dict[str, Callable[[Call], Awaitable[str]]] = {
    "status": status, "feeds": feeds, "reload": reload, "stats": stats}
