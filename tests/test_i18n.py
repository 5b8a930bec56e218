"""Languages: which one a reply uses, the gettext catalogs (complete, consistent, shipped), and
dates as each language writes them."""

from __future__ import annotations

import re
import string
import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from bot import i18n
from bot.i18n import LANGUAGES, catalog_path, format_datetime, pick_language, translator
from bot.model import Subscriber
from tests.conftest import REPO

UTC = timezone.utc
KEYWORDS = {"t": None, "n": (1, 2), "N_": None}  # as bot/i18n.py's docstring extracts them
SOURCES = ("bot/telegram/commands.py", "bot/telegram/admin.py", "bot/telegram/render.py",
           "bot/watch.py")


@pytest.mark.parametrize("explicit, telegram, expected", [
    (None, None, "en"), (None, "fr", "fr"), (None, "fr-CA", "fr"), (None, "FR", "fr"),
    (None, "de", "en"), (None, "en-GB", "en"), ("fr", "en", "fr"), ("en", "fr", "en"),
    ("de", "fr", "fr"),  # an unsupported stored choice falls back to Telegram's
    (None, "", "en"),
])
def test_pick_language(explicit: str | None, telegram: str | None, expected: str) -> None:
    assert pick_language(explicit, telegram) == expected
    assert Subscriber(1, lang=explicit if explicit in LANGUAGES else None,
                      user_lang=telegram).language == expected


def test_translator_fills_values_and_plurals() -> None:
    en, fr = translator("en"), translator("fr")
    assert en("Subscribed to {title}.", title="Ports & straits") == "Subscribed to Ports & straits."
    assert fr("Subscribed to {title}.", title="Ports & straits") == "Abonné à Ports & straits."
    one, many = "Unsubscribed from {n} topic.", "Unsubscribed from {n} topics."
    assert [en.n(one, many, k) for k in (0, 1, 2)] == [
        "Unsubscribed from 0 topics.", "Unsubscribed from 1 topic.", "Unsubscribed from 2 topics."]
    assert [fr.n(one, many, k) for k in (0, 1, 2)] == [  # French: 0 is singular
        "Désabonné de 0 sujet.", "Désabonné de 1 sujet.", "Désabonné de 2 sujets."]
    assert translator("pt") == translator("en") == translator(None)
    assert fr("A message id that no catalog has") == "A message id that no catalog has"


def _extracted() -> dict[str, tuple[str, ...]]:
    """Every message id the code passes to t(), t.n() or N_(): id -> (singular[, plural])."""
    found: dict[str, tuple[str, ...]] = {}
    for source in SOURCES:
        for _line, message, _comments, _context in extract_from_file(
                "python", REPO / source, keywords=KEYWORDS):
            ids = message if isinstance(message, tuple) else (message,)
            if ids[0]:
                found[ids[0]] = ids
    return found


def _catalog(lang: str):
    with catalog_path(lang).open("rb") as fh:
        return read_po(fh, locale=lang)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_message_of_the_code_is_in_both_catalogs_and_translated_in_french() -> None:
    extracted = _extracted()
    assert len(extracted) > 80  # the extraction itself works (keywords, files)
    for lang in LANGUAGES:
        catalog = _catalog(lang)
        missing = [m for m in extracted if m not in catalog]
        assert missing == [], f"{lang}: run the update in bot/i18n.py's docstring: {missing}"
    french = _catalog("fr")
    for message in french:
        if not message.id:
            continue
        assert not message.fuzzy, f"fuzzy French entry: {message.id!r}"
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"untranslated French entry: {ids[0]!r}"
        for text in strings:  # a placeholder lost or misspelt would raise KeyError at runtime
            assert _fields(text) == _fields(ids[0]), f"placeholders differ: {ids[0]!r}"


def test_no_catalog_entry_is_left_over() -> None:
    """Entries the code no longer uses are removed (pybabel update marks them obsolete)."""
    extracted = set(_extracted()) | {"Previously:"}  # render.py writes it in an f-string
    for lang in LANGUAGES:
        catalog = _catalog(lang)
        assert not catalog.obsolete
        assert {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id} <= extracted


def test_message_ids_are_plain_text() -> None:
    """Replies are HTML: ids hold no markup, so escaping the whole reply is always right."""
    for message in _catalog("fr"):
        for text in (message.id, message.string):
            for part in (text if isinstance(text, tuple) else (text,)):
                markup = r"</?(b|i|u|s|a|code|pre|blockquote)\b|&[a-z]+;"
                assert not re.search(markup, part or ""), part


def test_catalogs_are_shipped_as_package_data() -> None:
    """`pip install .` copies only what package-data names: the .po files must match it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["bot"]
    package = REPO / "bot"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    for lang in LANGUAGES:
        assert catalog_path(lang) in shipped
        assert catalog_path(lang).is_relative_to(i18n.LOCALES)


@pytest.mark.parametrize("lang, tz, expected", [
    ("en", "UTC", "Jun 3, 2025, 21:05"),
    ("fr", "UTC", "3 juin 2025, 21:05"),
    ("en", "Europe/Paris", "Jun 3, 2025, 23:05"),
    ("fr", "Asia/Shanghai", "4 juin 2025, 05:05"),
    ("fr", "America/Sao_Paulo", "3 juin 2025, 18:05"),
    ("de", "Not/AZone", "Jun 3, 2025, 21:05"),  # English, UTC: a reply never fails on these
])
def test_format_datetime(lang: str, tz: str, expected: str) -> None:
    moment = datetime(2025, 6, 3, 21, 5, tzinfo=UTC)
    assert format_datetime(moment, tz, lang) == expected
    assert format_datetime(moment.replace(tzinfo=None), tz, lang) == expected  # naive is UTC


def test_zone_names_days_and_durations() -> None:
    moment = datetime(2025, 1, 15, 8, 0, tzinfo=UTC)
    en, fr = translator("en"), translator("fr")
    assert en.datetime(moment, "Europe/Paris", zone_name=True) == "Jan 15, 2025, 09:00 CET"
    assert fr.datetime(moment, "Asia/Kolkata", zone_name=True) == "15 janv. 2025, 13:30 IST"
    assert en.datetime(moment, "Asia/Tehran", zone_name=True) == "Jan 15, 2025, 11:30 GMT+03:30"
    assert (en.time(moment, "America/New_York"), fr.time(moment, "Asia/Tokyo")) == ("03:00",
                                                                                     "17:00")
    assert (en.day(date(2025, 6, 4)), fr.day(date(2025, 6, 4))) == ("Jun 4", "4 juin")
    assert (en.duration(timedelta(hours=24)), fr.duration(timedelta(hours=2))) == ("1 day",
                                                                                  "2\xa0heures")


def test_catalogs_compile_once_per_language() -> None:
    i18n._translations.cache_clear()
    for _ in range(3):
        translator("fr")("Settings")
    assert i18n._translations.cache_info().misses == 1
