"""Subscriber and admin commands and the inline buttons: the bot people manage from their phone.

Handlers are flat async functions (as in PTB's examples/timerbot.py), each given a `Call`:
the update converted once (chat, sender, language, arguments) with the BotContext that
app.py builds. `register(application, ctx)` wires them in; `set_commands(bot)` publishes the
command menus in English and French.

- Replies use the chat's language: /lang if set, else the sender's Telegram language when it
  is English or French, else English; every string comes from the gettext catalogs
  (bot/i18n.py) and every value shown (topic titles, feed errors, what the user typed) is
  HTML-escaped. Dates and times are written in the chat's zone, the language's way.
- A bad argument is answered with what was wrong and the command's usage. Any exception
  is logged and answered with a short apology: a handler never stops the updater.
- One log line per command or button: chat, command, outcome (ok, usage, refused, error).
- In a group, anyone in it may change the group's subscriptions and settings (the simple
  default: whoever can post there can already read the alerts, and a group's admins can
  remove the bot); commands addressed to another bot (/cmd@otherbot) are ignored.
- Admin commands (/status, /feeds, /reload, /stats: admin.py) answer only the user ids in
  VEILLE_ADMINS; anyone else is refused politely and the attempt is logged with the user id.
"""

from __future__ import annotations

import logging
import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Sequence

from telegram import (BotCommand, BotCommandScopeChat, BotCommandScopeDefault,
                      InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update)
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters

from ..i18n import LANGUAGES, Translator, pick_language, translator
from ..model import Subscriber, Topic
from ..text import fold
from ..watchlist import Watchlist
from .render import MARKERS, Button, callback_data, escape, parse_callback, utf16_len

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("veille.telegram.commands")

KEY = "veille"  # where register() puts the BotContext in application.bot_data
MUTE_FOR = timedelta(hours=24)
MAX_PAUSE = timedelta(days=365)
LATEST = 5
TEXT_BUDGET = 3900  # a reply stays under Telegram's 4096 (UTF-16 units), with room to spare
MAX_BUTTONS = 100  # Telegram's limit per inline keyboard
ECHO = 80  # characters of what the user typed that a reply quotes back


def N_(msgid: str) -> str:
    """Marks a message id for extraction; it is translated where it is shown."""
    return msgid


# ---------------------------------------------------------------- what app.py provides


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What /status shows; app.py builds it."""

    feeds_healthy: int
    feeds_failing: int
    last_cycle_at: datetime | None  # when the last polling cycle finished (UTC)
    pending_deliveries: int
    subscribers: int  # active chats
    last_cycle_seconds: float | None = None
    inactive_subscribers: int = 0


@dataclass(frozen=True)
class BotContext:
    """Everything the handlers use, built once in app.py."""

    store: Store
    watchlist: Callable[[], Watchlist]  # the current (last good) watchlist
    clock: Callable[[], datetime]  # now, tz-aware UTC
    admins: tuple[int, ...] = ()  # Telegram user ids (VEILLE_ADMINS)
    reload: Callable[[], Awaitable[list[str]]] | None = None  # problems; [] when it took
    status: Callable[[], Awaitable[StatusReport]] | None = None

    def topics(self) -> tuple[Topic, ...]:
        return self.watchlist().topics


# ---------------------------------------------------------------- usages and menus

USAGE = {
    "start": N_("/start: what I watch, with buttons to follow topics"),
    "help": N_("/help: every command"),
    "topics": N_("/topics: follow or leave topics with buttons"),
    "subscribe": N_("/subscribe <topic>: follow a topic (its id, or the start of its id or "
                    "title), e.g. /subscribe {example}"),
    "unsubscribe": N_("/unsubscribe <topic|all>: stop following a topic, or every topic"),
    "mysubs": N_("/mysubs: your topics and settings"),
    "mode": N_("/mode instant | /mode digest hourly | /mode digest daily HH:MM"),
    "quiet": N_("/quiet HH:MM-HH:MM (e.g. /quiet 22:00-07:00), or /quiet off"),
    "tz": N_("/tz <IANA zone>, e.g. /tz Europe/Paris or /tz Asia/Shanghai"),
    "latest": N_("/latest [topic]: the last five alerts"),
    "pause": N_("/pause <duration>, e.g. /pause 30m, /pause 2h, /pause 1d, /pause 1w"),
    "resume": N_("/resume: alerts again after /pause"),
    "lang": N_("/lang en | /lang fr | /lang auto (follow Telegram's language)"),
    "stop": N_("/stop: forget me (every subscription and setting is deleted)"),
}
DESCRIPTIONS = {
    "start": N_("Welcome, and what I watch"),
    "topics": N_("Follow or leave topics"),
    "subscribe": N_("Follow a topic"),
    "unsubscribe": N_("Stop following a topic, or all"),
    "mysubs": N_("Your topics and settings"),
    "mode": N_("Instant alerts or a digest"),
    "quiet": N_("Quiet hours"),
    "tz": N_("Your time zone"),
    "latest": N_("The last five alerts"),
    "pause": N_("Pause alerts for a while"),
    "resume": N_("Resume alerts"),
    "lang": N_("Language: English or French"),
    "help": N_("Every command"),
    "stop": N_("Forget me"),
}


# ---------------------------------------------------------------- one call


@dataclass
class Call:
    """One command or button press, converted once from the PTB update."""

    update: Update
    bot: Any  # telegram.Bot
    ctx: BotContext
    command: str
    chat_id: int
    kind: str
    title: str | None
    user_id: int | None
    user_lang: str | None
    args: tuple[str, ...]
    sub: Subscriber | None
    t: Translator = field(init=False)

    def __post_init__(self) -> None:
        self.relang()

    def relang(self) -> None:
        """Pick the reply language again (after /lang or the row changed)."""
        explicit = self.sub.lang if self.sub else None
        seen = self.user_lang or (self.sub.user_lang if self.sub else None)
        self.t = translator(pick_language(explicit, seen))

    @property
    def tz(self) -> str:
        return self.sub.tz if self.sub else "UTC"

    def now(self) -> datetime:
        return self.ctx.clock()

    async def db(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run a Store method on the store's threads."""
        store = self.ctx.store
        return await store.run(getattr(store, method), *args, **kwargs)

    async def ensure(self) -> Subscriber:
        """The chat's row, created or refreshed (kind, title, the sender's language)."""
        self.sub = await self.db("upsert_subscriber", self.chat_id, kind=self.kind,
                                 title=self.title, user_lang=self.user_lang, now=self.now())
        return self.sub

    async def reply(self, html: str, rows: Sequence[Sequence[Button]] = ()) -> None:
        """Answer in the chat (and forum topic) the call came from, as HTML, no preview."""
        message = self.update.effective_message
        kwargs: dict[str, Any] = {}
        if message is not None and message.is_topic_message and message.message_thread_id:
            kwargs["message_thread_id"] = message.message_thread_id
        await self.bot.send_message(
            self.chat_id, _fit(html), parse_mode=ParseMode.HTML, reply_markup=keyboard(rows),
            link_preview_options=LinkPreviewOptions(is_disabled=True), **kwargs)

    async def usage(self, problem: str | None = None, *, example: str = "") -> str:
        """Say what was wrong, then how the command is used; the outcome 'usage'."""
        text = self.t(USAGE[self.command], example=example or self._example())
        lines = [escape(problem)] if problem else []
        lines.append(escape(self.t("Usage: {usage}", usage=text)))
        await self.reply("\n".join(lines))
        return "usage"

    def _example(self) -> str:
        topics = self.ctx.topics()
        return topics[0].id if topics else "topic-id"


def bold(text: str) -> str:
    return f"<b>{escape(text)}</b>"


def keyboard(rows: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup | None:
    """render.Button rows as PTB's inline keyboard (None: no keyboard)."""
    if not rows:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.text, callback_data=b.data) for b in row] for row in rows])


def _fit(html: str) -> str:
    """Cut a reply that would not fit at a line boundary (lists of many feeds or topics).

    Every tag a reply holds opens and closes on one line, so a cut between lines leaves
    valid HTML; the budget is counted on the HTML, which is never shorter than its text.
    """
    if utf16_len(html) <= TEXT_BUDGET:
        return html
    lines, size = [], 0
    for line in html.split("\n"):
        size += utf16_len(line) + 1
        if size > TEXT_BUDGET - 2:
            break
        lines.append(line)
    return "\n".join(lines).rstrip() + "\n…"


# ---------------------------------------------------------------- topics by name


def resolve_topic(text: str, topics: Sequence[Topic]) -> Topic | list[Topic]:
    """The topic meant by text: its id, or an unambiguous prefix of its id or title (case-,
    diacritic- and dash-insensitive). Otherwise the candidates: several when ambiguous, none
    when unknown."""
    wanted = " ".join(fold(text).split())
    if not wanted:
        return []
    for topic in topics:
        if topic.id == text.strip() or _key(topic.id) == wanted or _key(topic.title) == wanted:
            return topic
    found = [t for t in topics if _key(t.id).startswith(wanted) or _key(t.title).startswith(wanted)]
    return found[0] if len(found) == 1 else found


def _key(text: str) -> str:
    return " ".join(fold(text).split())


def _topic_line(topic: Topic) -> str:
    marker = MARKERS.get(topic.priority, MARKERS["normal"])
    return f"{marker} <b>{escape(topic.title)}</b> (<code>{escape(topic.id)}</code>)"


async def _pick_topic(call: Call, text: str) -> Topic | None:
    """The topic text names; when none or several, the reply lists them and None is returned."""
    topics = call.ctx.topics()
    found = resolve_topic(text, topics)
    if isinstance(found, Topic):
        return found
    t = call.t
    if found:
        head = t("“{text}” matches several topics; which one?", text=short(text, ECHO))
    else:
        head = t("I watch no topic called “{text}”. The topics are:", text=short(text, ECHO))
    lines = [escape(head)] + [_topic_line(x) for x in (found or topics)]
    await call.reply("\n".join(lines))
    return None


# ---------------------------------------------------------------- subscriber commands


async def start(call: Call) -> str:
    """Welcome, what the bot watches, and a button per topic to follow it."""
    sub = await call.ensure()
    call.relang()
    t, topics = call.t, call.ctx.topics()
    followed = {s.topic for s in await call.db("subscriptions", sub.chat_id)}
    lines = [bold(t("Welcome to veille.")),
             escape(t("I watch the news for these topics and send an alert as soon as an "
                      "article matches one you follow:")), ""]
    for topic in topics:
        lines.append(_topic_line(topic))
        if topic.context:
            lines.append(f"<i>{escape(short(topic.context, 200))}</i>")
    lines += ["", escape(t("Tap a topic below to follow it (tap again to leave it).")),
              escape(t("Your settings: /mysubs. Every command: /help."))]
    await call.reply("\n".join(lines), topic_buttons(topics, followed, t))
    return "ok"


async def help_(call: Call) -> str:
    t = call.t
    lines = [bold(t("Commands"))]
    lines += [escape(t(USAGE[name], example=call._example())) for name in USAGE]
    return await say(call, "\n".join(lines))


async def topics_(call: Call) -> str:
    """Every topic as a button that follows or leaves it, edited in place when pressed."""
    t = call.t
    followed = {s.topic for s in await call.db("subscriptions", call.chat_id)}
    text = escape(t("Tap a topic to follow it or to stop following it. ✅: you follow it."))
    await call.reply(text, topic_buttons(call.ctx.topics(), followed, t))
    return "ok"


def topic_buttons(topics: Sequence[Topic], followed: set[str], t: Translator
                  ) -> tuple[tuple[Button, ...], ...]:
    """One row per topic: ✅ when followed, ➕ when not; pressing toggles it."""
    return tuple((Button(f"{'✅' if x.id in followed else '➕'} {short(x.title, 40)}",
                         callback_data("tog", x.id)),) for x in topics[:MAX_BUTTONS])


async def subscribe(call: Call) -> str:
    if not call.args:
        return await call.usage()
    topic = await _pick_topic(call, " ".join(call.args))
    if topic is None:
        return "usage"
    await call.ensure()
    call.relang()
    new = await call.db("subscribe", call.chat_id, topic.id, now=call.now())
    msg = (N_("Subscribed to {title}. New alerts will come here.") if new
           else N_("You already follow {title}."))
    return await say(call, escape(call.t(msg, title=topic.title)))


async def unsubscribe(call: Call) -> str:
    if not call.args:
        return await call.usage()
    t, text = call.t, " ".join(call.args)
    if fold(text).strip() in ("all", "tout", "tous"):
        gone = await call.db("unsubscribe", call.chat_id, None)
        msg = t.n("Unsubscribed from {n} topic.", "Unsubscribed from {n} topics.", len(gone))
        return await say(call, escape(msg))
    topic = await _pick_topic(call, text)
    if topic is None:
        return "usage"
    gone = await call.db("unsubscribe", call.chat_id, topic.id)
    msg = (N_("Unsubscribed from {title}.") if gone else N_("You did not follow {title}."))
    return await say(call, escape(t(msg, title=topic.title)))


async def mysubs(call: Call) -> str:
    """The chat's topics (muted ones with until when) and its settings."""
    t, sub = call.t, call.sub
    subs = await call.db("subscriptions", call.chat_id) if sub else []
    titles = {x.id: x.title for x in call.ctx.topics()}
    lines = [bold(t("Your topics"))]
    now = call.now()
    for s in subs:
        line = f"• {escape(titles.get(s.topic, s.topic))} (<code>{escape(s.topic)}</code>)"
        if s.muted_until and s.muted_until > now:
            line += " — " + escape(t("muted until {when}",
                                     when=t.datetime(s.muted_until, call.tz)))
        lines.append(line)
    if not subs:
        lines.append(escape(t("None yet: /topics to choose.")))
    lines += ["", bold(t("Settings"))] + [escape(x) for x in _settings(call, now)]
    return await say(call, "\n".join(lines))


def _settings(call: Call, now: datetime) -> list[str]:
    t = call.t
    sub = call.sub or Subscriber(call.chat_id, call.kind)
    lines = [t("Delivery: {mode}", mode=describe_mode(sub, t))]
    if sub.quiet_start and sub.quiet_end:
        lines.append(t("Quiet hours: {start}–{end}", start=sub.quiet_start, end=sub.quiet_end))
    else:
        lines.append(t("Quiet hours: none"))
    lines.append(t("Time zone: {tz}", tz=sub.tz))
    if sub.paused_until and sub.paused_until > now:
        lines.append(t("Paused until {when}", when=t.datetime(sub.paused_until, sub.tz)))
    name = t("English") if call.t.lang == "en" else t("French")
    chosen = N_("Language: {name}") if sub.lang else N_("Language: {name} (from Telegram)")
    lines.append(t(chosen, name=name))
    return lines


def describe_mode(sub: Subscriber, t: Translator) -> str:
    if sub.mode != "digest":
        return t("instant")
    if sub.digest_every == "hourly":
        return t("one digest an hour")
    return t("one digest a day at {time}", time=sub.digest_at)


async def mode(call: Call) -> str:
    """/mode instant | digest [hourly | daily [HH:MM] | HH:MM]."""
    words = [w.lower() for w in call.args]
    if not words or words[0] not in ("instant", "digest"):
        return await call.usage()
    changes: dict[str, Any] = {"mode": words[0]}
    if words[0] == "instant" and len(words) > 1:
        return await call.usage()
    rest = words[1:]
    if rest and rest[0] == "hourly" and len(rest) == 1:
        changes["digest_every"] = "hourly"
    elif rest:
        if rest[0] == "daily":
            rest = rest[1:]
        at = parse_hhmm(rest[0]) if len(rest) == 1 else None
        if len(rest) > 1 or (rest and at is None):
            return await call.usage(call.t("“{text}” is not a time like 08:00.",
                                           text=short(" ".join(rest), ECHO)))
        changes["digest_every"] = "daily"
        if at:
            changes["digest_at"] = at
    sub = await _update(call, **changes)
    return await say(call, escape(call.t("Delivery: {mode}", mode=describe_mode(sub, call.t))))


async def quiet(call: Call) -> str:
    """/quiet HH:MM-HH:MM, or /quiet off."""
    text = " ".join(call.args).strip()
    t = call.t
    if text.lower() in ("off", "none", "non", "aucune"):
        await _update(call, quiet_start=None, quiet_end=None)
        return await say(call, escape(t("Quiet hours off: alerts come at any hour.")))
    parts = [p for p in re.split(r"\s*[-–—]\s*|\s+", text) if p]
    times = [parse_hhmm(p) for p in parts]
    if len(times) != 2 or None in times:
        return await call.usage(t("“{text}” is not two times like 22:00-07:00.",
                                  text=short(text, ECHO))
                                if text else None)
    if times[0] == times[1]:
        return await call.usage(t("Quiet hours must start and end at different times."))
    await _update(call, quiet_start=times[0], quiet_end=times[1])
    msg = t("Quiet hours: {start}–{end} ({tz}). High-priority alerts still arrive, silently; "
            "the others wait and come as one digest at the end.",
            start=times[0], end=times[1], tz=call.tz)
    return await say(call, escape(msg))


async def tz(call: Call) -> str:
    if len(call.args) != 1:
        return await call.usage()
    name = zone_name(call.args[0])
    if name is None:
        return await call.usage(call.t("“{text}” is not a time zone I know.",
                                       text=short(call.args[0], ECHO)))
    await _update(call, tz=name)
    t = call.t
    msg = t("Time zone: {tz}. It is {time} there now.", tz=name, time=t.time(call.now(), name))
    return await say(call, escape(msg))


async def latest(call: Call) -> str:
    """The last five alerts of a topic, of the chat's topics, or of every topic."""
    t = call.t
    if call.args:
        topic = await _pick_topic(call, " ".join(call.args))
        if topic is None:
            return "usage"
        wanted = [topic.id]
    else:
        mine = [s.topic for s in await call.db("subscriptions", call.chat_id)] if call.sub else []
        wanted = mine or [x.id for x in call.ctx.topics()]
    found = await call.db("latest_alerts", wanted, limit=LATEST)
    if not found:
        return await say(call, escape(t("No alerts yet for these topics.")))
    titles = {x.id: x.title for x in call.ctx.topics()}
    lines = [bold(t("Latest alerts"))]
    for a in found:
        when = t.datetime(a.published or a.created_at, call.tz)
        title = escape(short(a.title, 200))
        if a.link.startswith(("https://", "http://")):  # never a javascript: or data: link
            title = f"<a href=\"{escape(a.link, quote=True)}\">{title}</a>"
        meta = (a.source, when, titles.get(a.topic, a.topic))
        lines.append(f"• {title}\n  " + " · ".join(escape(x) for x in meta))
    return await say(call, "\n".join(lines))


async def pause(call: Call) -> str:
    span = parse_duration(" ".join(call.args)) if call.args else None
    if span is None:
        problem = call.t("“{text}” is not a duration like 2h.",
                         text=short(" ".join(call.args), ECHO))
        return await call.usage(problem if call.args else None)
    if span > MAX_PAUSE:
        return await call.usage(call.t("A pause lasts at most a year."))
    until = call.now() + span
    await _update(call, paused_until=until)
    msg = call.t("Paused until {when}. /resume to get alerts again sooner.",
                 when=call.t.datetime(until, call.tz))
    return await say(call, escape(msg))


async def resume(call: Call) -> str:
    was = call.sub is not None and call.sub.paused_until is not None \
        and call.sub.paused_until > call.now()
    await _update(call, paused_until=None)
    msg = N_("Alerts resumed.") if was else N_("You were not paused: alerts are on.")
    return await say(call, escape(call.t(msg)))


async def lang(call: Call) -> str:
    choice = call.args[0].lower() if len(call.args) == 1 else ""
    if choice not in LANGUAGES + ("auto",):
        return await call.usage()
    await _update(call, lang=None if choice == "auto" else choice)
    call.relang()
    return await say(call, escape(call.t("I will answer in English.")))


async def stop(call: Call) -> str:
    """Forget the chat: its row, subscriptions and deliveries (answered in its language)."""
    await call.db("delete_subscriber", call.chat_id)
    msg = call.t("Done: I forgot this chat, its topics and settings. /start to come back.")
    return await say(call, escape(msg))


async def _update(call: Call, **changes: Any) -> Subscriber:
    await call.ensure()
    call.sub = await call.db("update_subscriber", call.chat_id, now=call.now(), **changes)
    call.relang()
    return call.sub


async def say(call: Call, html: str, rows: Sequence[Sequence[Button]] = ()) -> str:
    await call.reply(html, rows)
    return "ok"


# ---------------------------------------------------------------- parsing arguments

_HHMM = re.compile(r"([01]?\d|2[0-3])[:hH.]([0-5]\d)")
_SPAN = re.compile(r"(\d{1,6})\s*(mn|min|m|h|d|j|w|s)")
_UNITS = {"m": 60, "mn": 60, "min": 60, "h": 3600, "d": 86400, "j": 86400, "w": 604800,
          "s": 604800}  # s: semaine (a week): seconds make no sense for a pause


def parse_hhmm(text: str) -> str | None:
    """'7:30', '07:30', '7h30' -> '07:30'; None if not a time of day."""
    m = _HHMM.fullmatch(text.strip())
    return f"{int(m.group(1)):02d}:{m.group(2)}" if m else None


def parse_duration(text: str) -> timedelta | None:
    """'30m', '2h', '1d', '1w', '1h30m' (and French 'j', 's') -> timedelta; None if not one
    or zero."""
    text = text.strip().lower().replace(" ", "")
    pieces = _SPAN.findall(text)
    if not pieces or "".join(n + u for n, u in pieces) != text:
        return None
    span = timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in pieces))
    return span if span > timedelta(0) else None


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def zone_name(text: str) -> str | None:
    """The IANA zone name text means ('europe/paris' -> 'Europe/Paris'); None if unknown."""
    return _zones().get(text.strip().lower())


def short(text: str, size: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1].rstrip() + "…"


# ---------------------------------------------------------------- buttons


async def button(call: Call) -> str:
    """A button press: tog (topics keyboard), mute / unsub / sub (under an alert)."""
    query = call.update.callback_query
    topics = call.ctx.topics()
    parsed = parse_callback(query.data or "", [x.id for x in topics])
    t = call.t
    if parsed is None:
        await query.answer(t("This button is out of date: that topic is no longer watched."))
        return "usage"
    action, topic_id = parsed
    topic = next(x for x in topics if x.id == topic_id)
    handler = _BUTTONS.get(action)
    if handler is None:
        await query.answer(t("This button is out of date."))
        return "usage"
    return await handler(call, topic)


async def _toggle(call: Call, topic: Topic) -> str:
    await call.ensure()
    call.relang()
    t, query = call.t, call.update.callback_query
    if await call.db("unsubscribe", call.chat_id, topic.id):
        note = t("You no longer follow {title}.", title=topic.title)
    else:
        await call.db("subscribe", call.chat_id, topic.id, now=call.now())
        note = t("Subscribed to {title}.", title=topic.title)
    followed = {s.topic for s in await call.db("subscriptions", call.chat_id)}
    await _edit_buttons(call, topic_buttons(call.ctx.topics(), followed, t))
    await query.answer(short(note, 190))  # after the edit: the press is done when answered
    return "ok"


async def _mute(call: Call, topic: Topic) -> str:
    t, query = call.t, call.update.callback_query
    until = call.now() + MUTE_FOR
    if await call.db("mute", call.chat_id, topic.id, until=until):
        note = t("{title} muted until {when}.", title=topic.title,
                 when=t.datetime(until, call.tz))
    else:
        note = t("You do not follow {title}.", title=topic.title)
    await query.answer(short(note, 190))
    return "ok"


async def _unsub(call: Call, topic: Topic) -> str:
    t, query = call.t, call.update.callback_query
    gone = await call.db("unsubscribe", call.chat_id, topic.id)
    note = (t("You no longer follow {title}.", title=topic.title) if gone
            else t("You did not follow {title}.", title=topic.title))
    # the alert keeps one button: follow the topic again
    await _edit_buttons(call, ((Button(t("Follow again"), callback_data("sub", topic.id)),),))
    await query.answer(short(note, 190))
    return "ok"


async def _resubscribe(call: Call, topic: Topic) -> str:
    await call.ensure()
    call.relang()
    t, query = call.t, call.update.callback_query
    await call.db("subscribe", call.chat_id, topic.id, now=call.now())
    await _edit_buttons(call, ((Button(t("Mute 24 h"), callback_data("mute", topic.id)),
                                Button(t("Unsubscribe"), callback_data("unsub", topic.id))),))
    await query.answer(short(t("Subscribed to {title}.", title=topic.title), 190))
    return "ok"


async def _edit_buttons(call: Call, rows: Sequence[Sequence[Button]]) -> None:
    """Replace the pressed message's keyboard ("not modified" is fine: nothing changed)."""
    try:
        await call.update.callback_query.edit_message_reply_markup(keyboard(rows))
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


_BUTTONS: dict[str, Callable[[Call, Topic], Awaitable[str]]] = {
    "tog": _toggle, "mute": _mute, "unsub": _unsub, "sub": _resubscribe}


# ---------------------------------------------------------------- wiring


SUBSCRIBER_COMMANDS: dict[str, Callable[[Call], Awaitable[str]]] = {
    "start": start, "help": help_, "topics": topics_, "subscribe": subscribe,
    "unsubscribe": unsubscribe, "mysubs": mysubs, "mode": mode, "quiet": quiet, "tz": tz,
    "latest": latest, "pause": pause, "resume": resume, "lang": lang, "stop": stop}


def register(application: Application, ctx: BotContext) -> None:
    """Add every command and button handler to application, with ctx for them to use."""
    from .admin import ADMIN_COMMANDS  # admin.py builds on this module

    application.bot_data[KEY] = ctx
    where = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST
    for name, fn in SUBSCRIBER_COMMANDS.items():
        application.add_handler(CommandHandler(name, _handler(name, fn, admin=False), where))
    for name, fn in ADMIN_COMMANDS.items():
        application.add_handler(CommandHandler(name, _handler(name, fn, admin=True), where))
    application.add_handler(CallbackQueryHandler(_handler("button", button, admin=False)))
    application.add_error_handler(_on_error)


async def set_commands(bot: Any, admins: Iterable[int] = ()) -> None:
    """Publish the command menus (setMyCommands), in English by default and for English
    users, in French for French users; admins also get the operators' commands in their
    private chat. A menu Telegram refuses (an admin who never wrote to the bot: "chat not
    found") is logged and skipped: menus are a convenience, never a reason not to start."""
    from .admin import ADMIN_DESCRIPTIONS

    menus = [(BotCommandScopeDefault(), DESCRIPTIONS)] + [
        (BotCommandScopeChat(admin), DESCRIPTIONS | ADMIN_DESCRIPTIONS) for admin in admins]
    for scope, described in menus:
        for code in (None,) + LANGUAGES:
            t = translator(code)
            listed = [BotCommand(name, t(text)) for name, text in described.items()]
            try:
                await bot.set_my_commands(listed, scope=scope, language_code=code)
            except TelegramError as exc:
                log.warning("command menu not set", extra={"fields": {
                    "chat": getattr(scope, "chat_id", None), "lang": code, "reason": str(exc)}})
                break  # the same refusal would come for every language


def _handler(name: str, fn: Callable[[Call], Awaitable[str]], *, admin: bool
             ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]:
    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        call = await _call(update, context, name)
        if call is None:
            return
        outcome = "error"
        try:
            if call.sub is not None and not call.sub.active:
                # the chat had blocked or removed the bot; writing to it again undoes that
                await call.ensure()
            if admin and call.user_id not in call.ctx.admins:
                outcome = await _refuse(call)
            else:
                outcome = await fn(call)
        except Exception as exc:  # noqa: BLE001 (a handler must never stop the updater)
            log.error("command failed", exc_info=exc, extra={"fields": {
                "chat": call.chat_id, "command": name, "user": call.user_id}})
            await _apologise(call)
        finally:
            log.info("command", extra={"fields": {
                "chat": call.chat_id, "command": name, "outcome": outcome}})

    handle.__name__ = f"on_{name}"
    return handle


async def _call(update: Update, context: ContextTypes.DEFAULT_TYPE, name: str) -> Call | None:
    """The Call for an update (None for updates without a chat)."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None:
        return None
    ctx: BotContext = context.application.bot_data[KEY]
    args = tuple(context.args or ()) if update.callback_query is None else ()
    title = chat.title or (user.first_name if user else None)
    try:
        sub = await ctx.store.run(ctx.store.subscriber, chat.id)
    except Exception as exc:  # noqa: BLE001 (answered with the apology, like any failure)
        log.error("command failed", exc_info=exc, extra={"fields": {"chat": chat.id,
                                                                     "command": name}})
        sub = None
    return Call(update, context.bot, ctx, name, chat.id, chat.type, title,
                user.id if user else None, user.language_code if user else None, args, sub)


async def _refuse(call: Call) -> str:
    log.warning("admin command refused", extra={"fields": {
        "chat": call.chat_id, "command": call.command, "user": call.user_id}})
    await call.reply(escape(call.t("Sorry, this command is for the operators of this bot.")))
    return "refused"


async def _apologise(call: Call) -> None:
    """Tell the user something went wrong; a failure here is only logged."""
    text = call.t("Sorry, something went wrong on my side. Please try again in a moment.")
    try:
        query = call.update.callback_query
        if query is not None:
            await query.answer(text)
        else:
            await call.reply(escape(text))
    except Exception as exc:  # noqa: BLE001
        log.warning("apology not sent", extra={"fields": {"chat": call.chat_id,
                                                         "reason": type(exc).__name__}})


async def _on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Last resort for errors outside our handlers (PTB passes them here)."""
    log.error("telegram update failed", exc_info=context.error, extra={"fields": {}})


__all__ = ["BotContext", "StatusReport", "register", "set_commands", "resolve_topic",
           "parse_duration", "parse_hhmm", "zone_name"]
