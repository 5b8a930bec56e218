"""Shared pieces for pipeline tests: feeds written by us, a watchlist, an app on a temp DB."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path

from bot.app import App
from bot.config import Settings
from bot.model import Alert, Topic

NOW = datetime.now(timezone.utc).replace(microsecond=0)

TOPICS_YAML = """\
aliases:
  pos2: ["Power of Siberia 2", "Сила Сибири 2", "Сил* Сибири-2", "Force de Sibérie 2",
         "西伯利亚力量2号", "Kraft Sibiriens 2"]
  leaders: ["Xi Jinping", "Putin", "Путин*", "Си Цзиньпин*", "普京", "习近平"]
topics:
  - id: power-of-siberia-2
    title: Power of Siberia 2 financing
    query: '@pos2 OR ("Power of Siberia" NEAR/6 (financ* OR Mongolia))'
    context: A proposed Russia–China gas pipeline through Mongolia.
    priority: high
  - id: joint-declaration
    title: Russia–China joint declaration
    query: '("joint declaration" OR "joint statement" OR "совместное заявление" OR 联合声明)
            AND (@leaders OR Russia* OR Росси* OR China OR 中俄)'
    context: Summits and joint statements of the two leaders.
"""


def rss(items: list[dict], title: str = "Test feed") -> bytes:
    """An RSS 2.0 document; each item dict has guid, title, link and optional desc, age."""
    out = [f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
           f"<title>{escape(title)}</title><link>https://news.example/</link>"]
    for it in items:
        when = NOW - timedelta(hours=it.get("age", 1))
        out.append(
            f"<item><guid isPermaLink=\"false\">{escape(it['guid'])}</guid>"
            f"<title>{escape(it['title'])}</title><link>{escape(it['link'])}</link>"
            f"<description>{escape(it.get('desc', ''))}</description>"
            f"<pubDate>{email.utils.format_datetime(when)}</pubDate></item>")
    out.append("</channel></rss>")
    return "".join(out).encode("utf-8")


# Headlines and leads written for these tests, in several languages.
EN_ITEMS = [
    {"guid": "en-1", "title": "Gazprom and CNPC edge closer on Power of Siberia 2 price formula",
     "link": "https://news.example/en/pos2-price", "desc": "Negotiators met in Beijing."},
    {"guid": "en-2", "title": "Markets rally as tech shares rebound",
     "link": "https://news.example/en/markets", "desc": "The index rose 2%."},
    {"guid": "en-3", "title": "Xi and Putin sign joint statement after Kremlin talks",
     "link": "https://news.example/en/summit", "desc": "The leaders pledged deeper ties."},
]
FR_ITEMS = [
    {"guid": "fr-1", "title": "Le financement de Force de Sibérie 2 reste en suspens",
     "link": "https://presse.example/fr/fds2", "desc": "Pékin hésite sur le prix du gaz."},
    {"guid": "fr-2", "title": "Grève des taxis à Lyon", "link": "https://presse.example/fr/taxis"},
]
RU_ITEMS = [
    {"guid": "ru-1", "title": "Путин и Си Цзиньпин приняли совместное заявление",
     "link": "https://vesti.example/ru/zayavlenie", "desc": "Документ подписан в Москве."},
    {"guid": "ru-old", "title": "«Сила Сибири-2»: старые переговоры", "age": 72,
     "link": "https://vesti.example/ru/old", "desc": "Материал трёхдневной давности."},
]

EXPECTED_FIRST = {
    ("power-of-siberia-2", "https://news.example/en/pos2-price"),
    ("joint-declaration", "https://news.example/en/summit"),
    ("power-of-siberia-2", "https://presse.example/fr/fds2"),
    ("joint-declaration", "https://vesti.example/ru/zayavlenie"),
}


def write_watchlist(directory: Path, feeds: list[tuple[str, str]], topics: str = TOPICS_YAML,
                    interval: int = 300) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["feeds:"]
    for name, url in feeds:
        lines += [f"  - url: {url}", f"    name: {name}", f"    interval: {interval}"]
    (directory / "feeds.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "topics.yaml").write_text(topics, encoding="utf-8")
    return directory


class RecordingSink:
    """A sink that keeps what it was given (the console's stand-in in tests)."""

    destination = "console"

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def send(self, alert: Alert, topic: Topic | None) -> str | None:
        self.sent.append(alert)
        return f"m{alert.id}"

    def pairs(self) -> set[tuple[str, str]]:
        return {(a.topic, a.item.link) for a in self.sent}


@dataclass
class Env:
    settings: Settings
    sink: RecordingSink

    def app(self, *, processes: bool = False) -> App:
        return App.create(self.settings, sink=self.sink, parse_in_processes=processes)


def make_env(tmp_path: Path, watchlists: Path, **overrides) -> Env:
    settings = Settings(_env_file=None, watchlists=watchlists, allow_private_urls=True,
                        database_url=f"sqlite:///{tmp_path}/state/veille.db",
                        read_timeout=1.0, connect_timeout=1.0, news_search=False,
                        **overrides)
    return Env(settings, RecordingSink())
