"""Languages: the gettext catalogs every reply goes through, and dates in the reader's language.

Babel is the well-kept library for both: it reads the .po catalogs in bot/locales/ and knows
how each locale writes dates, times and durations (CLDR). The catalogs are compiled in memory
at first use (about 10 ms for both, once per process): no .mo file in git that can drift
from its .po, and nothing to build after `pip install .` (pyproject ships the .po files as
package data).

A message id is the English text with `{name}` placeholders; `t(msgid, **values)` translates,
then fills them in. Plurals go through `t.n(singular, plural, n, **values)` (`{n}` is filled).
Message ids are plain text (the caller escapes the reply for HTML); an id kept in a table is
marked with `N_(...)` where it is written, so that extraction finds it.

After changing messages, update the catalogs (tests/test_i18n.py fails until then):

    pybabel extract --no-default-keywords -k t -k n:1,2 -k N_ --no-location --sort-output \
        -o /tmp/veille.pot bot/telegram/commands.py bot/telegram/admin.py bot/telegram/render.py \
        bot/watch.py
    pybabel update -D veille -i /tmp/veille.pot -d bot/locales -w 100 --no-fuzzy-matching \
        --ignore-obsolete
    # then translate the new entries of bot/locales/fr/LC_MESSAGES/veille.po
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel import dates as babel_dates
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES = ("en", "fr")
DEFAULT = "en"
DOMAIN = "veille"
LOCALES = Path(__file__).resolve().with_name("locales")


def pick_language(explicit: str | None, telegram: str | None) -> str:
    """The reply language: the one chosen with /lang, else Telegram's when we have it, else en."""
    if explicit in LANGUAGES:
        return explicit
    code = (telegram or "").replace("_", "-").split("-")[0].lower()
    return code if code in LANGUAGES else DEFAULT


def catalog_path(lang: str) -> Path:
    return LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=None)
def _translations(lang: str) -> gettext.NullTranslations:
    """The catalog of lang, compiled in memory from its .po (English: the ids themselves)."""
    path = catalog_path(lang)
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)  # a fuzzy entry is not a translation yet
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


@dataclass(frozen=True, slots=True)
class Translator:
    """Translates message ids into one language, and formats dates and durations in it."""

    lang: str

    def __call__(self, msgid: str, /, **values: object) -> str:
        text = _translations(self.lang).gettext(msgid)
        return text.format(**values) if values else text

    def n(self, singular: str, plural: str, n: int, /, **values: object) -> str:
        """The form of a message for the count n ({n} is filled in)."""
        text = _translations(self.lang).ngettext(singular, plural, n)
        return text.format(n=n, **values)

    def datetime(self, value: datetime, tz: str | tzinfo = "UTC", *, date: str = "yMMMd",
                 zone_name: bool = False) -> str:
        """A moment in zone tz as this language writes it ("4 juin 2025, 11:30")."""
        return format_datetime(value, tz, self.lang, date=date, zone_name=zone_name)

    def time(self, value: datetime, tz: str | tzinfo = "UTC") -> str:
        """The 24-hour wall-clock time of a moment in zone tz ("11:30")."""
        return babel_dates.format_time(value, "HH:mm", tzinfo=zone(tz), locale=self.lang)

    def day(self, value: date, *, skeleton: str = "MMMd") -> str:
        """A calendar day, short ("Jun 4", "4 juin")."""
        return babel_dates.format_skeleton(skeleton, value, locale=self.lang)

    def duration(self, value: timedelta) -> str:
        """A span such as "2 hours" / "2 heures" (rounded to its largest unit)."""
        return babel_dates.format_timedelta(value, threshold=1, locale=self.lang)


@lru_cache(maxsize=None)
def translator(lang: str | None) -> Translator:
    """The Translator for lang (anything unsupported gets English)."""
    return Translator(lang if lang in LANGUAGES else DEFAULT)


def zone(tz: str | tzinfo) -> tzinfo:
    """A tzinfo from an IANA name (an unknown one is UTC rather than a failed reply)."""
    if not isinstance(tz, str):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_datetime(value: datetime, tz: str | tzinfo = "UTC", lang: str = DEFAULT, *,
                    date: str = "yMMMd", zone_name: bool = False) -> str:
    """value (tz-aware, or naive UTC) in zone tz, as lang writes it: the date from a CLDR
    skeleton ("Jun 4, 2025" / "4 juin 2025"), then a 24-hour time, joined the locale's way;
    zone_name adds the zone's abbreviation ("CEST") or offset ("GMT+05:30")."""
    where = zone(tz)
    local = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(where)
    locale = lang if lang in LANGUAGES else DEFAULT
    day = babel_dates.format_skeleton(date, local, tzinfo=where, locale=locale)
    clock = babel_dates.format_time(local, "HH:mm", tzinfo=where, locale=locale)
    pattern = str(Locale.parse(locale).datetime_formats["medium"]).replace("'", "")
    text = pattern.replace("{1}", day).replace("{0}", clock)
    if not zone_name:
        return text
    abbr = local.tzname() or ""
    if not abbr.isalpha():  # zones without a letters abbreviation ('+0530')
        abbr = babel_dates.format_datetime(local, "ZZZZ", tzinfo=where, locale=locale)
    return f"{text} {abbr}"
