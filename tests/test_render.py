"""Alert rendering for the console and for `veille once --json`: exact strings."""

from __future__ import annotations

from datetime import datetime, timezone

from rich.console import Console

from bot.model import Alert, Hit, Item, Match, Topic
from bot.render import alert_json, alert_text, short

ITEM = Item(feed="https://presse.example/rss", guid="g1", url="https://presse.example/a",
            link="https://presse.example/a?utm_source=rss",
            title="Force de Sibérie 2 : Pékin temporise", source="Presse Exemple",
            summary="Les négociations sur le prix du gaz se poursuivent sans calendrier.",
            published=datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc), lang="fr")
MATCH = Match("power-of-siberia-2", (Hit('"Force de Sibérie 2"', "title", 0, 18,
                                         "Force de Sibérie 2"),))
ALERT = Alert(topic="power-of-siberia-2", item=ITEM, match=MATCH, id=7)
TOPIC = Topic("power-of-siberia-2", "Power of Siberia 2 pipeline", "x", compiled=None)


def render(text) -> str:
    console = Console(width=100, color_system=None, record=True, file=open("/dev/null", "w"))
    console.print(text)
    return console.export_text()


def test_console_alert_is_exact() -> None:
    assert render(alert_text(ALERT, TOPIC)) == (
        "▶ Power of Siberia 2 pipeline  [power-of-siberia-2]\n"
        "  Force de Sibérie 2 : Pékin temporise\n"
        "  Presse Exemple · 2026-11-28 09:30 UTC\n"
        "  matched: Force de Sibérie 2\n"
        "  Les négociations sur le prix du gaz se poursuivent sans calendrier.\n"
        "  https://presse.example/a?utm_source=rss\n")


def test_json_alert_is_exact() -> None:
    assert alert_json(ALERT) == {
        "topic": "power-of-siberia-2", "title": "Force de Sibérie 2 : Pékin temporise",
        "url": "https://presse.example/a?utm_source=rss", "source": "Presse Exemple",
        "published": "2026-11-28T09:30:00+00:00", "terms": ["Force de Sibérie 2"],
        "summary": "Les négociations sur le prix du gaz se poursuivent sans calendrier.",
        "context": None, "previously": None, "story": None, "also": []}


def test_json_alert_carries_the_outlets_that_joined_its_story_and_the_previous_one() -> None:
    from bot.store.stories import StoryMember

    joined = StoryMember("Agence", "Pékin temporise sur Force de Sibérie 2",
                         "https://agence.example/b", "report", ITEM.published)
    got = alert_json(ALERT, TOPIC, also=[joined],
                     previously=(datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc), "Avant"))
    assert got["also"] == [{"source": "Agence", "title": "Pékin temporise sur Force de Sibérie 2",
                            "url": "https://agence.example/b"}]
    assert got["previously"] == {"date": "2026-11-20", "title": "Avant"}


def test_short_cuts_at_a_word_boundary() -> None:
    assert short("one two three four", 12) == "one two…"
    assert short("  spaced\n\nout  ", 50) == "spaced out"
