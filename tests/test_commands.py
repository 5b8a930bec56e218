"""Subscriber and admin commands and buttons, through the real PTB Application and the fake Bot
API on 127.0.0.1, with a real SQLite store: a simulated user sends commands and presses
buttons; the tests assert the replies (in English and French) and what the store holds."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import pytest
import sqlalchemy as sa

from bot.errors import StoreError
from bot.model import FeedSpec, Hit, Item, Match, Topic
from bot.store import FetchRecord, Store
from bot.store.schema import deliveries
from bot.telegram.client import build_application
from bot.telegram.commands import (BotContext, StatusReport, parse_duration, parse_hhmm,
                                   register, resolve_topic, set_commands, zone_name)
from bot.watchlist import Watchlist
from tests.fakebot import FakeBotAPI, Message, fake_bot  # noqa: F401 (fake_bot: a fixture)

UTC = timezone.utc
NOW = datetime(2025, 6, 3, 9, 30, tzinfo=UTC)
ANA, BEN, GROUP, ADMIN = 501, 502, -1001234, 900
FEED = "https://presse.example.org/monde.xml"
TOPICS = (
    Topic("power-of-siberia-2", "Power of Siberia 2 pipeline", "q", None,
          context="Proposed gas pipeline from Siberia to China via Mongolia.", priority="high"),
    Topic("pipeline-politics", "Pipeline politics in Central Asia", "q", None),
    Topic("secondary-sanctions", "Sanctions on third-country suppliers", "q", None,
          priority="high"),
    Topic("arctic-lng", "Énergie arctique et GNL", "q", None, priority="low"),
)
LANGS = ("en", "fr")


def expect(lang: str, en: str, fr: str) -> str:
    return en if lang == "en" else fr


@dataclass
class Bot:
    """The running bot, its fake Telegram, its store, and the knobs a test turns."""

    fake: FakeBotAPI
    store: Store
    now: list[datetime]
    watchlist: list[Watchlist]
    problems: list[str] = field(default_factory=list)
    reloads: int = 0

    async def send(self, chat: int, text: str, **kwargs: object) -> Message:
        """The user sends text; the bot's reply (the next message it writes in chat)."""
        before = len(self.fake.messages(chat))
        self.fake.user_sends(chat, text, **kwargs)
        await self.fake.until(lambda: len(self.fake.messages(chat)) > before)
        return self.fake.messages(chat)[before]

    async def press(self, chat: int, message_id: int, data: str, **kwargs: object) -> str:
        """The user presses a button; the text of the bot's answer to the press."""
        query = self.fake.user_presses(chat, message_id, data, **kwargs)
        found = await self.fake.until(lambda: [a for a in self.fake.callback_answers
                                               if a["callback_query_id"] == query])
        return found[0]["text"]

    def topics_of(self, chat: int) -> list[str]:
        return [s.topic for s in self.store.subscriptions(chat)]


@pytest.fixture
async def bot(fake_bot: FakeBotAPI, tmp_path: Path) -> AsyncIterator[Bot]:  # noqa: F811
    fake_bot.add_chat(ANA, "private", first_name="Ana", language_code="en")
    fake_bot.add_chat(BEN, "private", first_name="Benoît", language_code="fr")
    fake_bot.add_chat(GROUP, "supergroup", title="Veille énergie")
    fake_bot.add_chat(ADMIN, "private", first_name="Ops", language_code="fr-FR")
    store = Store.open(f"sqlite:///{tmp_path}/veille.db")
    store.sync_feeds([FeedSpec(FEED, "Presse Monde")])
    harness = Bot(fake_bot, store, [NOW], [Watchlist(tmp_path, (FeedSpec(FEED, "Presse Monde"),),
                                                      TOPICS)])

    async def reload() -> list[str]:
        harness.reloads += 1
        return list(harness.problems)

    async def status() -> StatusReport:
        return StatusReport(feeds_healthy=41, feeds_failing=2, last_cycle_at=NOW,
                            pending_deliveries=7, subscribers=12, last_cycle_seconds=6.25,
                            inactive_subscribers=3)

    ctx = BotContext(store, lambda: harness.watchlist[0], lambda: harness.now[0],
                     admins=(ADMIN,), reload=reload, status=status)
    app = build_application(fake_bot.token, fake_bot.base_url)
    register(app, ctx)
    await app.initialize()
    await app.start()
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        yield harness
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        store.close()


def chat_of(lang: str) -> int:
    """Ana's Telegram speaks English, Benoît's French."""
    return ANA if lang == "en" else BEN


# ---------------------------------------------------------------- /start and /topics


@pytest.mark.parametrize("lang", LANGS)
async def test_start_welcomes_lists_topics_and_buttons_follow_them(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, "/start")
    assert reply.text.startswith(expect(lang, "Welcome to veille.", "Bienvenue sur veille."))
    assert "Power of Siberia 2 pipeline (power-of-siberia-2)" in reply.text
    assert "Proposed gas pipeline from Siberia to China via Mongolia." in reply.text
    labels = [b["text"] for b in reply.buttons()]
    assert labels == ["➕ Power of Siberia 2 pipeline", "➕ Pipeline politics in Central Asia",
                      "➕ Sanctions on third-country suppliers", "➕ Énergie arctique et GNL"]
    sub = bot.store.subscriber(chat)
    assert sub is not None and sub.user_lang == lang and sub.kind == "private"
    answer = await bot.press(chat, reply.message_id, "tog:secondary-sanctions")
    assert answer == expect(lang, "Subscribed to Sanctions on third-country suppliers.",
                            "Abonné à Sanctions on third-country suppliers.")
    assert bot.topics_of(chat) == ["secondary-sanctions"]
    edited = bot.fake.messages(chat)[-1]
    assert edited.message_id == reply.message_id and edited.edited == 1  # in place
    assert edited.buttons()[2]["text"] == "✅ Sanctions on third-country suppliers"
    answer = await bot.press(chat, reply.message_id, "tog:secondary-sanctions")
    assert answer == expect(lang, "You no longer follow Sanctions on third-country suppliers.",
                            "Vous ne suivez plus Sanctions on third-country suppliers.")
    assert bot.topics_of(chat) == []
    assert bot.fake.messages(chat)[-1].buttons()[2]["text"].startswith("➕")


@pytest.mark.parametrize("lang", LANGS)
async def test_topics_keyboard_shows_what_is_followed(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    bot.store.upsert_subscriber(chat, kind="private", now=NOW)
    bot.store.subscribe(chat, "arctic-lng", now=NOW)
    reply = await bot.send(chat, "/topics")
    assert reply.text.startswith(expect(lang, "Tap a topic to follow it",
                                        "Touchez un sujet pour le suivre"))
    assert [b["text"][0] for b in reply.buttons()] == ["➕", "➕", "➕", "✅"]
    assert [b["callback_data"] for b in reply.buttons()][0] == "tog:power-of-siberia-2"
    await bot.press(chat, reply.message_id, "tog:power-of-siberia-2")
    assert bot.topics_of(chat) == ["arctic-lng", "power-of-siberia-2"]


@pytest.mark.parametrize("lang", LANGS)
async def test_help_lists_every_command_with_its_usage(bot: Bot, lang: str) -> None:
    reply = await bot.send(chat_of(lang), "/help")
    lines = reply.text.splitlines()
    assert lines[0] == expect(lang, "Commands", "Commandes")
    assert [line.split()[0].rstrip(":") for line in lines[1:]] == [
        "/start", "/help", "/topics", "/subscribe", "/unsubscribe", "/mysubs", "/mode", "/quiet",
        "/tz", "/latest", "/pause", "/resume", "/lang", "/stop"]
    assert lines[4] == expect(
        lang, "/subscribe <topic>: follow a topic (its id, or the start of its id or title), "
              "e.g. /subscribe power-of-siberia-2",
        "/subscribe <sujet> : suivre un sujet (son identifiant, ou le début de son identifiant "
        "ou de son titre), par ex. /subscribe power-of-siberia-2")


# ---------------------------------------------------------------- subscribe / unsubscribe


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("typed, topic", [
    ("power-of-siberia-2", "power-of-siberia-2"),  # the id
    ("power", "power-of-siberia-2"),  # a prefix of the id
    ("SANCTIONS on", "secondary-sanctions"),  # a prefix of the title, any case
    ("energie ARCTIQUE", "arctic-lng"),  # without the accent
    ("pi", "pipeline-politics"),
])
async def test_subscribe_by_id_or_prefix(bot: Bot, lang: str, typed: str, topic: str) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, f"/subscribe {typed}")
    title = next(t.title for t in TOPICS if t.id == topic)
    assert reply.text == expect(lang, f"Subscribed to {title}. New alerts will come here.",
                                f"Abonné à {title}. Les nouvelles alertes arriveront ici.")
    assert bot.topics_of(chat) == [topic]
    assert bot.store.subscriptions(chat)[0].created_at == NOW
    again = await bot.send(chat, f"/subscribe {typed}")
    assert again.text == expect(lang, f"You already follow {title}.", f"Vous suivez déjà {title}.")


@pytest.mark.parametrize("lang", LANGS)
async def test_subscribe_unknown_ambiguous_or_missing_topic(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, "/subscribe <b>ports</b>")
    assert reply.text.splitlines()[0] == expect(
        lang, "I watch no topic called “<b>ports</b>”. The topics are:",
        "Je ne surveille aucun sujet nommé « <b>ports</b> ». Les sujets sont :")
    assert len(reply.text.splitlines()) == 1 + len(TOPICS)  # every topic listed
    reply = await bot.send(chat, "/subscribe p")
    lines = reply.text.splitlines()
    assert lines[0] == expect(lang, "“p” matches several topics; which one?",
                              "« p » correspond à plusieurs sujets ; lequel ?")
    assert [line.split("(")[-1] for line in lines[1:]] == ["power-of-siberia-2)",
                                                          "pipeline-politics)"]
    reply = await bot.send(chat, "/subscribe")
    assert reply.text == expect(
        lang, "Usage: /subscribe <topic>: follow a topic (its id, or the start of its id or "
              "title), e.g. /subscribe power-of-siberia-2",
        "Utilisation : /subscribe <sujet> : suivre un sujet (son identifiant, ou le début de son "
        "identifiant ou de son titre), par ex. /subscribe power-of-siberia-2")
    assert bot.topics_of(chat) == []


@pytest.mark.parametrize("lang", LANGS)
async def test_unsubscribe_one_all_and_bad(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    bot.store.upsert_subscriber(chat, kind="private", now=NOW)
    for topic in ("power-of-siberia-2", "arctic-lng", "secondary-sanctions"):
        bot.store.subscribe(chat, topic, now=NOW)
    reply = await bot.send(chat, "/unsubscribe arctic")
    assert reply.text == expect(lang, "Unsubscribed from Énergie arctique et GNL.",
                                "Désabonné de Énergie arctique et GNL.")
    assert bot.topics_of(chat) == ["power-of-siberia-2", "secondary-sanctions"]
    reply = await bot.send(chat, "/unsubscribe arctic")
    assert reply.text == expect(lang, "You did not follow Énergie arctique et GNL.",
                                "Vous ne suiviez pas Énergie arctique et GNL.")
    reply = await bot.send(chat, "/unsubscribe")
    assert reply.text.startswith(expect(lang, "Usage: /unsubscribe <topic|all>",
                                        "Utilisation : /unsubscribe <sujet|all>"))
    reply = await bot.send(chat, "/unsubscribe nowhere")
    assert "nowhere" in reply.text and bot.topics_of(chat) != []
    reply = await bot.send(chat, "/unsubscribe all")
    assert reply.text == expect(lang, "Unsubscribed from 2 topics.", "Désabonné de 2 sujets.")
    assert bot.topics_of(chat) == []


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("lang", LANGS)
async def test_mysubs_shows_topics_mutes_and_settings(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, "/mysubs")
    assert expect(lang, "None yet: /topics to choose.",
                  "Aucun pour l’instant : /topics pour choisir.") in reply.text
    assert bot.store.subscriber(chat) is None  # reading creates nothing
    bot.store.upsert_subscriber(chat, kind="private", user_lang=lang, now=NOW)
    bot.store.subscribe(chat, "power-of-siberia-2", now=NOW)
    bot.store.subscribe(chat, "arctic-lng", now=NOW)
    bot.store.mute(chat, "arctic-lng", until=NOW + timedelta(hours=24))
    bot.store.update_subscriber(chat, now=NOW, tz="Europe/Paris", mode="digest",
                                digest_every="daily", digest_at="07:30", quiet_start="22:00",
                                quiet_end="07:00", paused_until=NOW + timedelta(hours=2))
    reply = await bot.send(chat, "/mysubs")
    assert reply.text.splitlines() == expect(lang, [
        "Your topics",
        "• Énergie arctique et GNL (arctic-lng) — muted until Jun 4, 2025, 11:30",
        "• Power of Siberia 2 pipeline (power-of-siberia-2)",
        "",
        "Settings",
        "Delivery: one digest a day at 07:30",
        "Quiet hours: 22:00–07:00",
        "Time zone: Europe/Paris",
        "Paused until Jun 3, 2025, 13:30",
        "Language: English (from Telegram)"], [
        "Vos sujets",
        "• Énergie arctique et GNL (arctic-lng) — en silence jusqu’au 4 juin 2025, 11:30",
        "• Power of Siberia 2 pipeline (power-of-siberia-2)",
        "",
        "Réglages",
        "Envoi : un résumé par jour à 07:30",
        "Heures calmes : 22:00–07:00",
        "Fuseau horaire : Europe/Paris",
        "En pause jusqu’au 3 juin 2025, 13:30",
        "Langue : français (celle de Telegram)"])


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("typed, every, at, en, fr", [
    ("instant", "daily", "08:00", "Delivery: instant", "Envoi : immédiat"),
    ("digest", "daily", "08:00", "Delivery: one digest a day at 08:00",
     "Envoi : un résumé par jour à 08:00"),
    ("digest hourly", "hourly", "08:00", "Delivery: one digest an hour",
     "Envoi : un résumé par heure"),
    ("DIGEST daily 7:05", "daily", "07:05", "Delivery: one digest a day at 07:05",
     "Envoi : un résumé par jour à 07:05"),
    ("digest 18h30", "daily", "18:30", "Delivery: one digest a day at 18:30",
     "Envoi : un résumé par jour à 18:30"),
])
async def test_mode(bot: Bot, lang: str, typed: str, every: str, at: str, en: str, fr: str
                    ) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, f"/mode {typed}")
    assert reply.text == expect(lang, en, fr)
    sub = bot.store.subscriber(chat)
    assert (sub.mode, sub.digest_every, sub.digest_at) == (typed.split()[0].lower(), every, at)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("typed, problem_en, problem_fr", [
    ("", None, None),
    ("weekly", None, None),
    ("instant now", None, None),
    ("digest daily 25:00", "“25:00” is not a time like 08:00.",
     "« 25:00 » n’est pas une heure comme 08:00."),
    ("digest daily 07:00 09:00", "“07:00 09:00” is not a time like 08:00.",
     "« 07:00 09:00 » n’est pas une heure comme 08:00."),
])
async def test_mode_bad_arguments_get_the_usage(bot: Bot, lang: str, typed: str,
                                                problem_en: str | None,
                                                problem_fr: str | None) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, f"/mode {typed}".strip())
    usage = expect(lang, "Usage: /mode instant | /mode digest hourly | /mode digest daily HH:MM",
                   "Utilisation : /mode instant | /mode digest hourly | /mode digest daily HH:MM "
                   "(instantané, ou un résumé par heure ou par jour)")
    problem = expect(lang, problem_en, problem_fr)
    assert reply.text.splitlines() == ([problem] if problem else []) + [usage]
    assert bot.store.subscriber(chat) is None


@pytest.mark.parametrize("lang", LANGS)
async def test_quiet_hours(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, "/quiet 22:00-7:00")
    assert reply.text.startswith(expect(lang, "Quiet hours: 22:00–07:00 (UTC). High-priority",
                                        "Heures calmes : 22:00–07:00 (UTC). Les alertes"))
    sub = bot.store.subscriber(chat)
    assert (sub.quiet_start, sub.quiet_end) == ("22:00", "07:00")
    reply = await bot.send(chat, "/quiet 23h – 6h15")
    assert "23h" in reply.text.splitlines()[0]  # "23h" alone is not a time: refused
    assert bot.store.subscriber(chat).quiet_start == "22:00"
    reply = await bot.send(chat, "/quiet 08:00-08:00")
    assert reply.text.splitlines()[0] == expect(
        lang, "Quiet hours must start and end at different times.",
        "Les heures calmes doivent commencer et finir à des heures différentes.")
    reply = await bot.send(chat, "/quiet")
    assert reply.text.startswith(expect(lang, "Usage: /quiet HH:MM-HH:MM", "Utilisation : /quiet"))
    reply = await bot.send(chat, "/quiet off")
    assert reply.text == expect(lang, "Quiet hours off: alerts come at any hour.",
                                "Heures calmes désactivées : les alertes arrivent à toute heure.")
    sub = bot.store.subscriber(chat)
    assert (sub.quiet_start, sub.quiet_end) == (None, None)


@pytest.mark.parametrize("lang", LANGS)
async def test_time_zone(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, "/tz asia/shanghai")
    assert reply.text == expect(lang, "Time zone: Asia/Shanghai. It is 17:30 there now.",
                                "Fuseau horaire : Asia/Shanghai. Il y est 17:30 en ce moment.")
    assert bot.store.subscriber(chat).tz == "Asia/Shanghai"
    reply = await bot.send(chat, "/tz Mars/Olympus_Mons")
    assert reply.text.splitlines() == [
        expect(lang, "“Mars/Olympus_Mons” is not a time zone I know.",
               "« Mars/Olympus_Mons » n’est pas un fuseau horaire que je connais."),
        expect(lang, "Usage: /tz <IANA zone>, e.g. /tz Europe/Paris or /tz Asia/Shanghai",
               "Utilisation : /tz <fuseau IANA>, par ex. /tz Europe/Paris ou /tz Asia/Shanghai")]
    reply = await bot.send(chat, "/tz")
    assert reply.text.startswith(expect(lang, "Usage: /tz", "Utilisation : /tz"))
    reply = await bot.send(chat, "/tz " + "Europe/" * 500)  # quoted back, shortened
    assert len(reply.text.splitlines()[0]) < 150 and "…" in reply.text
    assert bot.store.subscriber(chat).tz == "Asia/Shanghai"


@pytest.mark.parametrize("lang", LANGS)
async def test_pause_and_resume(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    bot.store.upsert_subscriber(chat, kind="private", now=NOW)
    bot.store.update_subscriber(chat, now=NOW, tz="Europe/Paris")
    reply = await bot.send(chat, "/pause 1h30m")
    assert reply.text == expect(
        lang, "Paused until Jun 3, 2025, 13:00. /resume to get alerts again sooner.",
        "En pause jusqu’au 3 juin 2025, 13:00. /resume pour reprendre plus tôt.")
    assert bot.store.subscriber(chat).paused_until == NOW + timedelta(minutes=90)
    for bad in ("/pause", "/pause soon", "/pause 0m", "/pause 400d"):
        reply = await bot.send(chat, bad)
        usage = expect(lang, "Usage: /pause <duration>", "Utilisation : /pause <durée>")
        assert usage in reply.text
    assert bot.store.subscriber(chat).paused_until == NOW + timedelta(minutes=90)
    reply = await bot.send(chat, "/resume")
    assert reply.text == expect(lang, "Alerts resumed.", "Les alertes reprennent.")
    assert bot.store.subscriber(chat).paused_until is None
    reply = await bot.send(chat, "/resume")
    assert reply.text == expect(lang, "You were not paused: alerts are on.",
                                "Vous n’étiez pas en pause : les alertes sont actives.")


async def test_lang_overrides_telegram_and_auto_follows_it_again(bot: Bot) -> None:
    reply = await bot.send(ANA, "/lang fr")  # Ana's Telegram is in English
    assert reply.text == "Je répondrai en français."
    assert bot.store.subscriber(ANA).lang == "fr"
    reply = await bot.send(ANA, "/mode instant")
    assert reply.text == "Envoi : immédiat"
    reply = await bot.send(ANA, "/lang de")
    assert reply.text.startswith("Utilisation : /lang en | /lang fr | /lang auto")
    reply = await bot.send(ANA, "/lang auto")
    assert reply.text == "I will answer in English."
    assert bot.store.subscriber(ANA).lang is None
    reply = await bot.send(BEN, "/lang EN")
    assert reply.text == "I will answer in English."


@pytest.mark.parametrize("lang", LANGS)
async def test_stop_forgets_everything(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    await bot.send(chat, "/subscribe power")
    await bot.send(chat, "/tz Europe/Paris")
    alert_id = _alerts(bot.store, 1)[0]
    with bot.store._engine.begin() as conn:
        conn.execute(sa.insert(deliveries).values(
            alert_id=alert_id, chat=str(chat), kind="subscriber", status="pending",
            created_at=NOW, next_attempt_at=NOW))
    reply = await bot.send(chat, "/stop")
    assert reply.text == expect(
        lang, "Done: I forgot this chat, its topics and settings. /start to come back.",
        "C’est fait : j’ai oublié cette conversation, ses sujets et ses réglages. /start pour "
        "revenir.")
    assert bot.store.subscriber(chat) is None and bot.topics_of(chat) == []
    with bot.store._engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()
    assert left == 0


async def test_a_chat_marked_gone_is_active_again_when_it_writes(bot: Bot) -> None:
    bot.store.upsert_subscriber(ANA, kind="private", now=NOW)
    bot.store.subscribe(ANA, "arctic-lng", now=NOW)
    with bot.store._engine.begin() as conn:  # the delivery worker was told "bot was blocked"
        conn.execute(sa.text("UPDATE subscribers SET active = false, inactive_reason = "
                             "'Forbidden: bot was blocked by the user' WHERE chat_id = :c"),
                     {"c": ANA})
    reply = await bot.send(ANA, "/mysubs")
    assert "Énergie arctique et GNL (arctic-lng)" in reply.text
    sub = bot.store.subscriber(ANA)
    assert (sub.active, sub.inactive_reason) == (True, None)
    assert bot.topics_of(ANA) == ["arctic-lng"]


# ---------------------------------------------------------------- /latest


def _alerts(store: Store, n: int, topic: str = "power-of-siberia-2") -> list[int]:
    """n alerted items of topic, one minute apart, the newest last; their alert ids."""
    ids = []
    for k in range(1, n + 1):
        item = Item(feed=FEED, guid=f"{topic}-{k}", url=f"https://presse.example.org/{topic}/{k}",
                    link=f"https://presse.example.org/{topic}/{k}",
                    title=f"Gazprom & CNPC: tarifs, épisode {k} <suite>"
                    + ("" if topic == "power-of-siberia-2" else f" ({topic})"), summary="…",
                    published=NOW - timedelta(hours=3) + timedelta(minutes=k),
                    source="Presse Monde")
        hit = Hit("gazprom", "title", 0, 7, "Gazprom")
        result = store.claim(FEED, [item], {item.guid: [Match(topic, (hit,))]}, now=NOW,
                             alert_cutoff=None, destinations=("telegram",))
        ids += [a.id for a in result.alerts]
    return ids


@pytest.mark.parametrize("lang", LANGS)
async def test_latest(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    reply = await bot.send(chat, "/latest")
    assert reply.text == expect(lang, "No alerts yet for these topics.",
                                "Pas encore d’alerte sur ces sujets.")
    _alerts(bot.store, 7)
    _alerts(bot.store, 1, topic="arctic-lng")
    reply = await bot.send(chat, "/latest power")
    lines = reply.text.splitlines()
    assert lines[0] == expect(lang, "Latest alerts", "Dernières alertes")
    assert lines[1::2] == [f"• Gazprom & CNPC: tarifs, épisode {k} <suite>"
                           for k in (7, 6, 5, 4, 3)]
    assert lines[2] == expect(lang,
                              "  Presse Monde · Jun 3, 2025, 06:37 · Power of Siberia 2 pipeline",
                              "  Presse Monde · 3 juin 2025, 06:37 · Power of Siberia 2 pipeline")
    links = [e["url"] for e in reply.entities if e["type"] == "text_link"]
    assert links[0] == "https://presse.example.org/power-of-siberia-2/7"
    # no topic: the chat's topics, or every topic when it follows none
    reply = await bot.send(chat, "/latest")
    assert "Énergie arctique et GNL" in reply.text
    await bot.send(chat, "/subscribe arctic")
    reply = await bot.send(chat, "/latest")
    assert len(reply.text.splitlines()) == 3 and "Énergie arctique et GNL" in reply.text
    reply = await bot.send(chat, "/latest ports")
    assert expect(lang, "I watch no topic called “ports”", "nommé « ports »") in reply.text


# ---------------------------------------------------------------- buttons under alerts


async def _alert_message(bot: Bot, chat: int, app_bot_token: str | None = None) -> Message:
    """An alert with its two buttons, as the delivery worker sends it."""
    from telegram import Bot as PTBBot

    from bot.telegram.commands import keyboard
    from bot.telegram.render import Button

    rows = ((Button("Mute 24 h", "mute:power-of-siberia-2"),
             Button("Unsubscribe", "unsub:power-of-siberia-2")),)
    async with PTBBot(bot.fake.token, base_url=bot.fake.base_url) as sender:
        sent = await sender.send_message(chat, "🔴 <b>Power of Siberia 2 pipeline</b>",
                                         parse_mode="HTML", reply_markup=keyboard(rows))
    return bot.fake.messages(chat)[-1] if sent else None


@pytest.mark.parametrize("lang", LANGS)
async def test_alert_buttons_mute_unsubscribe_and_follow_again(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    bot.store.upsert_subscriber(chat, kind="private", now=NOW)
    bot.store.subscribe(chat, "power-of-siberia-2", now=NOW)
    alert = await _alert_message(bot, chat)
    answer = await bot.press(chat, alert.message_id, "mute:power-of-siberia-2")
    assert answer == expect(lang, "Power of Siberia 2 pipeline muted until Jun 4, 2025, 09:30.",
                            "Power of Siberia 2 pipeline en silence jusqu’au 4 juin 2025, 09:30.")
    assert bot.store.subscriptions(chat)[0].muted_until == NOW + timedelta(hours=24)
    assert bot.fake.messages(chat)[-1].edited == 0  # the alert keeps its buttons
    answer = await bot.press(chat, alert.message_id, "unsub:power-of-siberia-2")
    assert answer == expect(lang, "You no longer follow Power of Siberia 2 pipeline.",
                            "Vous ne suivez plus Power of Siberia 2 pipeline.")
    assert bot.topics_of(chat) == []
    buttons = bot.fake.messages(chat)[-1].buttons()
    assert [(b["text"], b["callback_data"]) for b in buttons] == [
        (expect(lang, "Follow again", "Suivre à nouveau"), "sub:power-of-siberia-2")]
    answer = await bot.press(chat, alert.message_id, "sub:power-of-siberia-2")
    assert answer == expect(lang, "Subscribed to Power of Siberia 2 pipeline.",
                            "Abonné à Power of Siberia 2 pipeline.")
    assert bot.topics_of(chat) == ["power-of-siberia-2"]
    assert [b["callback_data"] for b in bot.fake.messages(chat)[-1].buttons()] == [
        "mute:power-of-siberia-2", "unsub:power-of-siberia-2"]
    assert bot.store.subscriptions(chat)[0].muted_until is None  # a fresh subscription


@pytest.mark.parametrize("lang", LANGS)
async def test_buttons_for_topics_not_followed_or_gone(bot: Bot, lang: str) -> None:
    chat = chat_of(lang)
    alert = await _alert_message(bot, chat)
    answer = await bot.press(chat, alert.message_id, "mute:power-of-siberia-2")
    assert answer == expect(lang, "You do not follow Power of Siberia 2 pipeline.",
                            "Vous ne suivez pas Power of Siberia 2 pipeline.")
    bot.watchlist[0] = Watchlist(Path("."), (), TOPICS[1:])  # the topic was removed
    answer = await bot.press(chat, alert.message_id, "unsub:power-of-siberia-2")
    assert answer == expect(lang, "This button is out of date: that topic is no longer watched.",
                            "Ce bouton n’est plus valable : ce sujet n’est plus surveillé.")


# ---------------------------------------------------------------- groups


async def test_in_a_group_anyone_may_subscribe_and_other_bots_commands_are_ignored(
        bot: Bot) -> None:
    reply = await bot.send(GROUP, "/subscribe@veille_test_bot power", user_id=77,
                           language_code="fr")
    assert reply.text.startswith("Abonné à Power of Siberia 2 pipeline.")
    sub = bot.store.subscriber(GROUP)
    assert (sub.kind, sub.title, sub.user_lang) == ("supergroup", "Veille énergie", "fr")
    bot.fake.user_sends(GROUP, "/unsubscribe@some_other_bot all", user_id=78)
    reply = await bot.send(GROUP, "/mysubs", user_id=78, language_code="en")
    assert reply.text.startswith("Your topics\n• Power of Siberia 2 pipeline")
    assert len(bot.fake.messages(GROUP)) == 2  # nothing answered the other bot's command
    assert bot.topics_of(GROUP) == ["power-of-siberia-2"]


async def test_a_channel_subscribes_and_a_forum_topic_gets_its_answer_in_its_thread(
        bot: Bot) -> None:
    bot.fake.add_chat(-1005550001, "channel", title="Veille canal")
    reply = await bot.send(-1005550001, "/subscribe sanctions")
    assert reply.text.startswith("Subscribed to Sanctions on third-country suppliers.")
    assert bot.store.subscriber(-1005550001).kind == "channel"
    reply = await bot.send(-1005550001, "/status")  # a channel post has no user: no admin
    assert reply.text == "Sorry, this command is for the operators of this bot."
    bot.fake.add_chat(-1005550002, "supergroup", title="Forum", is_forum=True, topics=(5, 9))
    reply = await bot.send(-1005550002, "/tz Europe/Berlin", message_thread_id=9)
    assert reply.message_thread_id == 9
    assert bot.store.subscriber(-1005550002).tz == "Europe/Berlin"


# ---------------------------------------------------------------- admin commands


@pytest.mark.parametrize("command", ["/status", "/feeds", "/reload", "/stats"])
async def test_admin_commands_refuse_others_politely_and_log_it(
        bot: Bot, command: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="veille")
    reply = await bot.send(BEN, command)
    assert reply.text == "Désolé, cette commande est réservée aux responsables de ce bot."
    refused = [r for r in caplog.records if r.getMessage() == "admin command refused"]
    assert [r.fields["user"] for r in refused] == [BEN]
    assert bot.reloads == 0


async def test_status(bot: Bot) -> None:
    reply = await bot.send(ADMIN, "/status")  # the admin's Telegram is in French
    assert reply.text.splitlines() == [
        "État de veille",
        "Sources : 41 en bon état, 2 en échec (/feeds)",
        "Dernier cycle : 3 juin 2025, 09:30 UTC (6.2 s)",
        "Envois en attente : 7",
        "Abonnés : 12 actifs, 3 inactifs"]
    await bot.send(ADMIN, "/lang en")
    reply = await bot.send(ADMIN, "/status")
    assert reply.text.splitlines()[1:3] == ["Feeds: 41 healthy, 2 failing (/feeds)",
                                            "Last cycle: Jun 3, 2025, 09:30 UTC (6.2 s)"]


async def test_feeds_lists_failing_feeds_with_their_error(bot: Bot) -> None:
    await bot.send(ADMIN, "/lang en")
    reply = await bot.send(ADMIN, "/feeds")
    assert reply.text == "Every feed is healthy."
    error = "HTTP 503 <Service Unavailable> & retry later"
    for _ in range(3):
        bot.store.record(FEED, FetchRecord(503, NOW, error=error), now=NOW)
    reply = await bot.send(ADMIN, "/feeds")
    assert reply.text.splitlines() == [
        "1 failing feed",
        "• Presse Monde — 3 errors in a row; last success: never",
        f"  {error}"]


async def test_reload_reports_problems_or_success(bot: Bot) -> None:
    bot.problems = ["watchlists/russia-china.yaml:12:5: unknown alias @pos3",
                    "watchlists/feeds.yaml:3:3: feed URL must be http(s)"]
    reply = await bot.send(ADMIN, "/reload")
    assert reply.text.splitlines() == [
        "Refusé : 2 problèmes dans les listes de veille ; la dernière version valide reste en "
        "place.", *bot.problems]
    bot.problems = [f"watchlists/big.yaml:{k}:1: unknown key 'qery' <{'x' * 60}>"
                    for k in range(1, 201)]
    reply = await bot.send(ADMIN, "/reload")  # too long for one message: cut between lines
    lines = reply.text.splitlines()
    assert lines[-1] == "…" and lines[1:-1] == bot.problems[: len(lines) - 2]
    assert 3000 < len(reply.text) <= 4096
    bot.problems = []
    reply = await bot.send(ADMIN, "/reload")
    assert reply.text == "Listes de veille rechargées : 4 sujets, 1 sources."
    assert bot.reloads == 3


async def test_stats_sends_a_chart_or_says_there_is_no_data(bot: Bot) -> None:
    reply = await bot.send(ADMIN, "/stats")
    assert reply.text == "Aucune alerte ces 14 derniers jours." and not reply.photo
    _alerts(bot.store, 3)
    _alerts(bot.store, 2, topic="arctic-lng")
    reply = await bot.send(ADMIN, "/stats")
    assert reply.photo
    assert reply.text == ("Alertes par sujet et par jour, 14 derniers jours (UTC) : 5 en tout.")
    upload = bot.fake.calls_to("sendPhoto", ADMIN)[-1].params["photo"]
    assert upload.data.startswith(b"\x89PNG") and len(upload.data) > 10_000


# ---------------------------------------------------------------- failures and menus


async def test_a_failing_handler_apologises_and_the_bot_goes_on(
        bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="veille")

    def broken(*args: object, **kwargs: object) -> None:
        raise StoreError("subscribing failed on sqlite:///x.db: disk I/O error")

    monkeypatch.setattr(bot.store, "subscribe", broken)
    reply = await bot.send(BEN, "/subscribe power")
    assert reply.text == "Désolé, un problème est survenu de mon côté. Réessayez dans un instant."
    reply = await bot.send(ANA, "/subscribe power")
    assert reply.text == "Sorry, something went wrong on my side. Please try again in a moment."
    monkeypatch.undo()
    reply = await bot.send(ANA, "/subscribe power")
    assert reply.text.startswith("Subscribed to")
    await bot.send(ANA, "/mysubs")  # updates are handled in turn: the line above is logged
    lines = [(r.getMessage(), r.fields.get("chat"), r.fields.get("command"),
              r.fields.get("outcome")) for r in caplog.records if hasattr(r, "fields")]
    assert ("command failed", BEN, "subscribe", None) in lines
    assert [x for x in lines if x[0] == "command" and x[2] == "subscribe"] == [
        ("command", BEN, "subscribe", "error"), ("command", ANA, "subscribe", "error"),
        ("command", ANA, "subscribe", "ok")]


async def test_set_commands_publishes_english_and_french_menus(bot: Bot) -> None:
    from telegram import Bot as PTBBot

    async with PTBBot(bot.fake.token, base_url=bot.fake.base_url) as sender:
        await set_commands(sender, admins=(ADMIN,))
    menus = bot.fake.commands
    assert set(menus) == {("default", ""), ("default", "en"), ("default", "fr"),
                          (f"chat:{ADMIN}", ""), (f"chat:{ADMIN}", "en"), (f"chat:{ADMIN}", "fr")}
    english = {c["command"]: c["description"] for c in menus[("default", "en")]}
    french = {c["command"]: c["description"] for c in menus[("default", "fr")]}
    assert set(english) == set(french) == {
        "start", "topics", "subscribe", "unsubscribe", "mysubs", "mode", "quiet", "tz", "latest",
        "pause", "resume", "lang", "help", "stop"}
    assert (english["mysubs"], french["mysubs"]) == ("Your topics and settings",
                                                     "Vos sujets et réglages")
    assert menus[("default", "")] == menus[("default", "en")]
    admin = {c["command"]: c["description"] for c in menus[(f"chat:{ADMIN}", "fr")]}
    assert set(admin) == set(french) | {"status", "feeds", "reload", "stats"}
    assert admin["reload"] == "Exploitation : relire les listes de veille"


async def test_menus_refused_by_telegram_do_not_stop_the_start(
        bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    from telegram import Bot as PTBBot

    bot.fake.fail("setMyCommands", error="server_error", times=1)
    async with PTBBot(bot.fake.token, base_url=bot.fake.base_url) as sender:
        await set_commands(sender)
    assert set(bot.fake.commands) == set()  # the default menu failed: no language tried after
    assert [r.getMessage() for r in caplog.records
            if r.name.startswith("veille")] == ["command menu not set"]


# ---------------------------------------------------------------- argument parsing (pure)


@pytest.mark.parametrize("text, expected", [
    ("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)),
    ("1j", timedelta(days=1)), ("1w", timedelta(weeks=1)), ("1h30m", timedelta(minutes=90)),
    ("2 h", timedelta(hours=2)), ("45min", timedelta(minutes=45)),
    ("", None), ("0m", None), ("soon", None), ("2", None), ("h2", None), ("2h soon", None),
])
def test_parse_duration(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("7:30", "07:30"), ("07:30", "07:30"), ("7h30", "07:30"), ("23:59", "23:59"),
    ("00:00", "00:00"), ("24:00", None), ("7:60", None), ("730", None), ("7", None), ("", None),
])
def test_parse_hhmm(text: str, expected: str | None) -> None:
    assert parse_hhmm(text) == expected


def test_zone_names_and_topic_resolution() -> None:
    assert zone_name("EUROPE/paris") == "Europe/Paris"
    assert zone_name("UTC") == "UTC"
    assert zone_name("Paris") is None
    assert resolve_topic("power-of-siberia-2", TOPICS).id == "power-of-siberia-2"
    assert resolve_topic("Pipeline politics in central asia", TOPICS).id == "pipeline-politics"
    assert [t.id for t in resolve_topic("p", TOPICS)] == ["power-of-siberia-2",
                                                          "pipeline-politics"]
    assert resolve_topic("zzz", TOPICS) == []
    assert resolve_topic("  ", TOPICS) == []


async def test_latest_links_only_web_addresses(bot: Bot) -> None:
    item = Item(feed=FEED, guid="js", url="https://presse.example.org/js",
                link="javascript:alert(1)",
                title="Lien piégé <script>", source="Presse Monde", published=NOW)
    bot.store.claim(FEED, [item], {"js": [Match("arctic-lng", (Hit("x", "title", 0, 1, "L"),))]},
                    now=NOW, alert_cutoff=None, destinations=("telegram",))
    reply = await bot.send(ANA, "/latest arctic")
    assert reply.text.splitlines()[1] == "• Lien piégé <script>"
    assert "javascript" not in reply.html  # Telegram would drop such a link; we never send it
