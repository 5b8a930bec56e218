"""Watchlist loading: broken files are reported at file:line:col with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import WatchlistError
from bot.watchlist import load_watchlist, parse_interval, search_feeds

FEEDS = """\
feeds:
  - url: https://news.example.org/world.rss
    name: Example World
    lang: en
    interval: 10m
    tags: [world]
  - url: https://presse.example.fr/international.xml
    name: Exemple International
    lang: fr
    tags: [europe]
"""

TOPICS = """\
aliases:
  pos2: ["Power of Siberia 2", "Сил* Сибири 2", "西伯利亚力量2号", "Сила Сибири-2"]
topics:
  - id: power-of-siberia-2
    title: Power of Siberia 2
    query: '@pos2 OR ("Power of Siberia" NEAR/8 financ*)'
    context: A pipeline.
    priority: high
    search: [en, ru]
"""


def write(tmp_path: Path, topics: str, feeds: str = FEEDS) -> Path:
    (tmp_path / "feeds.yaml").write_text(feeds, encoding="utf-8")
    (tmp_path / "topics.yaml").write_text(topics, encoding="utf-8")
    return tmp_path


def problems(tmp_path: Path, topics: str, feeds: str = FEEDS) -> list[str]:
    d = write(tmp_path, topics, feeds)
    with pytest.raises(WatchlistError) as info:
        load_watchlist(d)
    return [str(p).replace(str(d) + "/", "") for p in info.value.problems]


def test_a_good_watchlist_loads(tmp_path: Path) -> None:
    wl = load_watchlist(write(tmp_path, TOPICS))
    assert [f.interval for f in wl.feeds] == [600, 600]
    assert wl.feeds[0].where.endswith("feeds.yaml:2")
    [topic] = wl.topics
    assert (topic.id, topic.priority, topic.search) == ("power-of-siberia-2", "high",
                                                         (("en", ""), ("ru", "")))
    assert topic.where.endswith("topics.yaml:4")
    assert [m.topic for m in wl.matcher.match("Сила Сибири 2: сроки сдвинулись")] == [
        "power-of-siberia-2"]


# (name, topics.yaml text, feeds.yaml text or None for the good one, expected problems)
BROKEN = [
    ("unknown key with did-you-mean", TOPICS.replace("    priority: high", "    priorty: high"),
     None, ["topics.yaml:8:5: unknown key 'priorty' (did you mean 'priority'?)"]),
    ("unknown top-level key", "topic:\n  - id: x\n", None,
     ["topics.yaml:1:1: unknown key 'topic' (did you mean 'topics'?)"]),
    ("missing query", "topics:\n  - id: x\n    title: X\n", None,
     ["topics.yaml:2:5: missing required key 'query'"]),
    ("duplicate topic id", TOPICS + TOPICS.split("topics:\n")[1], None,
     ["topics.yaml:10:9: duplicate topic id 'power-of-siberia-2' (first at topics.yaml:4)"]),
    ("unknown alias", TOPICS.replace("@pos2 OR", "@pos3 OR"), None,
     ["topics.yaml:6:13: topic 'power-of-siberia-2': query: unknown alias @pos3 "
      "(did you mean @pos2?)\n"
      "    @pos3 OR (\"Power of Siberia\" NEAR/8 financ*)\n    ^"]),
    ("query syntax error points at the character", TOPICS.replace("financ*)'", "financ*'"), None,
     ["topics.yaml:6:22: topic 'power-of-siberia-2': query: '(' is never closed "
      "(add the ')' that ends this group)\n    @pos2 OR (\"Power of Siberia\" NEAR/8 financ*\n"
      "    " + " " * 9 + "^"]),
    ("error inside a folded block query",
     "topics:\n  - id: x\n    title: X\n    query: >\n      sanctions AND\n      (Iran OR OR b)\n",
     None, ["topics.yaml:6:16: topic 'x': query: unexpected OR\n"
            "    sanctions AND (Iran OR OR b)\n                           ^"]),
    ("bad topic id", TOPICS.replace("id: power-of-siberia-2", "id: Power Of Siberia"), None,
     ["topics.yaml:4:9: id: 'Power Of Siberia': use lower-case letters, digits and '-' only "
      "(no spaces, capitals or '_'), starting with a letter or digit (e.g. 'power-of-siberia')"]),
    ("topic id too long", TOPICS.replace("id: power-of-siberia-2", "id: " + "x" * 70), None,
     ["topics.yaml:4:9: id: 'xxxxxxxxxxxxxxxxxxxx…' is 70 characters long; at most 63 "
      "(e.g. '" + "x" * 63 + "')"]),
    ("topic id a list", TOPICS.replace("id: power-of-siberia-2", "id: [a, b]"), None,
     ["topics.yaml:4:9: id: must be text like 'power-of-siberia-2'"]),
    ("bad priority", TOPICS.replace("priority: high", "priority: urgent"), None,
     ["topics.yaml:8:15: priority: Input should be 'high', 'normal' or 'low'"]),
    ("bad search language", TOPICS.replace("search: [en, ru]", "search: [en, russian]"), None,
     ["topics.yaml:9:13: search: 'russian' is not a language code like 'en', 'fr', 'zh' "
      "(did you mean 'ru'?)"]),
    ("search language that does not exist", TOPICS.replace("search: [en, ru]", "search: [en, xx]"),
     None, ["topics.yaml:9:13: search: unknown language code 'xx'"]),
    ("country code for a language", TOPICS.replace("search: [en, ru]", "search: [en, cn]"),
     None, ["topics.yaml:9:13: search: unknown language code 'cn'; did you mean 'zh' (Chinese)? "
            "'cn' is a country"]),
    ("topic languages that do not exist", TOPICS + "    languages: [en, qq]\n", None,
     ["topics.yaml:10:16: languages: unknown language code 'qq'"]),
    ("feed language that does not exist", TOPICS, FEEDS.replace("lang: fr", "lang: fe"),
     ["feeds.yaml:9:11: lang: unknown language code 'fe'"]),
    ("two feeds of one name", TOPICS, FEEDS.replace("name: Exemple International",
                                                    "name: Example World"),
     ["feeds.yaml:8:11: duplicate feed name 'Example World' (first at line 2); topics refer "
      "to feeds by name"]),
    ("only negative terms", TOPICS.replace(
        "'@pos2 OR (\"Power of Siberia\" NEAR/8 financ*)'", "NOT Iran"), None,
     ["topics.yaml:6:12: topic 'power-of-siberia-2': query: query can match without any "
      "positive term (it only excludes); add a term to find\n    NOT Iran\n    ^"]),
    ("alias refers to unknown alias", TOPICS.replace('"西伯利亚力量2号"', '"@nope"'), None,
     ["topics.yaml:2:49: alias @pos2: unknown alias @nope (known: @pos2)"]),
    ("search language without a usable phrase", TOPICS.replace("[en, ru]", "[en, ru, zh, de]")
     .replace('"西伯利亚力量2号", ', ""), None,
     ["topics.yaml:9:13: search: no phrase of topic 'power-of-siberia-2' suits language 'zh' "
      "(terms with * cannot be searched); give it: search: {zh: '\"...\"'}"]),
    ("alias defined twice across files", TOPICS, None, None),  # filled in by its own test below
    ("YAML syntax error", TOPICS.replace("    title: Power of Siberia 2", "    title: [oops"), None,
     ["topics.yaml:6:10: YAML syntax: expected ',' or ']', but got ':'"]),
    ("duplicate YAML key", TOPICS.replace("    context: A pipeline.",
                                          "    context: A pipeline.\n    context: Again."), None,
     ["topics.yaml:8:5: duplicate key 'context' (first at line 7)"]),
    ("bad feed URL", TOPICS, FEEDS.replace("https://news.example.org/world.rss", "news.example.org"),
     ["feeds.yaml:2:10: url: 'news.example.org' is not an http(s) URL"]),
    ("bad interval", TOPICS, FEEDS.replace("interval: 10m", "interval: 10 parsecs"),
     ["feeds.yaml:5:15: interval: interval '10 parsecs' is not seconds or a duration like "
      "'10m', '1h'"]),
    ("interval too short", TOPICS, FEEDS.replace("interval: 10m", "interval: 5"),
     ["feeds.yaml:5:15: interval: interval 5s is outside 60s..86400s"]),
    ("duplicate feed URL", TOPICS, FEEDS + FEEDS.split("feeds:\n")[1].split("  - url: https://presse")[0],
     ["feeds.yaml:11:10: duplicate feed URL (first at line 2)"]),
    ("unknown key in a feed", TOPICS, FEEDS.replace("    lang: fr", "    language: fr"),
     ["feeds.yaml:9:5: unknown key 'language' (did you mean 'lang'?)"]),
    ("topic limited to an unknown feed", TOPICS + "    feeds: [Exemple Internationale]\n", None,
     ["topics.yaml:10:13: unknown feed 'Exemple Internationale' "
      "(did you mean 'Exemple International'?)"]),
    ("topic limited to an unknown tag", TOPICS + "    tags: [wolrd]\n", None,
     ["topics.yaml:10:12: unknown feed tag 'wolrd' (did you mean 'world'?)"]),
    ("wildcard in the middle", TOPICS.replace("financ*)", "fin*ance)"), None,
     ["topics.yaml:6:52: topic 'power-of-siberia-2': query: a wildcard * may only end a word\n"
      "    @pos2 OR (\"Power of Siberia\" NEAR/8 fin*ance)\n" + " " * (4 + 39) + "^"]),
]


@pytest.mark.parametrize(("name", "topics", "feeds", "expected"),
                         [b for b in BROKEN if b[3] is not None], ids=lambda v: v if isinstance(v, str) and len(v) < 60 and "\n" not in v else None)
def test_broken_watchlists(tmp_path: Path, name: str, topics: str, feeds: str | None,
                           expected: list[str]) -> None:
    assert problems(tmp_path, topics, feeds or FEEDS) == expected


def test_at_least_fifteen_broken_files() -> None:
    assert len([b for b in BROKEN if b[3] is not None]) >= 15


def test_alias_defined_twice_across_files(tmp_path: Path) -> None:
    write(tmp_path, TOPICS)
    (tmp_path / "more.yaml").write_text('aliases:\n  pos2: ["Сила Сибири 2"]\n', encoding="utf-8")
    with pytest.raises(WatchlistError) as info:
        load_watchlist(tmp_path)
    [p] = info.value.problems
    # more.yaml sorts first, so the definition in topics.yaml is the second one
    assert (Path(p.file).name, p.line, p.col) == ("topics.yaml", 2, 3)
    assert p.message.startswith("alias @pos2 is defined twice (also at ")
    assert p.message.endswith("more.yaml:2)")


def test_every_problem_of_every_file_is_listed(tmp_path: Path) -> None:
    found = problems(tmp_path, TOPICS.replace("priority: high", "priority: urgent")
                     .replace("@pos2 OR", "@pos3 OR"),
                     FEEDS.replace("interval: 10m", "interval: 5"))
    assert [p.split(":")[0] for p in found] == ["feeds.yaml", "topics.yaml", "topics.yaml"]


def test_missing_directory_and_missing_feeds_file(tmp_path: Path) -> None:
    with pytest.raises(WatchlistError, match="no such watchlists directory"):
        load_watchlist(tmp_path / "nope")
    (tmp_path / "topics.yaml").write_text(TOPICS, encoding="utf-8")
    with pytest.raises(WatchlistError, match="missing: the feed list lives in feeds.yaml"):
        load_watchlist(tmp_path)


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, TOPICS)
    (tmp_path / "latin.yaml").write_bytes("topics: []\n# Sibérie\n".encode("latin-1"))
    with pytest.raises(WatchlistError, match=r"latin.yaml:1:1: not UTF-8 text"):
        load_watchlist(tmp_path)


@pytest.mark.parametrize(("value", "seconds"), [
    (300, 300), ("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("120", 120)])
def test_intervals(value, seconds: int) -> None:
    assert parse_interval(value) == seconds


def test_news_search_feeds_use_the_topics_phrases_per_script(tmp_path: Path) -> None:
    wl = load_watchlist(write(tmp_path, TOPICS))
    feeds = search_feeds(wl.topics[0])
    assert [f.name for f in feeds] == [
        "Google News (en): power-of-siberia-2", "Bing News (en): power-of-siberia-2",
        "Google News (ru): power-of-siberia-2", "Bing News (ru): power-of-siberia-2"]
    assert "q=%22Power+of+Siberia+2%22+OR+%22Power+of+Siberia%22&hl=en-US" in feeds[0].url
    assert "q=%22%D0%A1%D0%B8%D0%BB%D0%B0+%D0%A1%D0%B8%D0%B1%D0%B8%D1%80%D0%B8-2%22&" in feeds[2].url
    assert "%2A" not in feeds[2].url  # "Сил* Сибири 2" has a wildcard: not searchable
    assert all(f.topic == "power-of-siberia-2" and f.interval == 900 for f in feeds)


def test_explicit_search_queries_win(tmp_path: Path) -> None:
    wl = load_watchlist(write(tmp_path, TOPICS.replace(
        "search: [en, ru]", "search: {ru: '\"Сила Сибири 2\"'}")))
    [google, bing] = search_feeds(wl.topics[0])
    assert "q=%22%D0%A1%D0%B8%D0%BB%D0%B0+%D0%A1%D0%B8%D0%B1%D0%B8%D1%80%D0%B8+2%22" in google.url
    assert bing.url.startswith("https://www.bing.com/news/search?q=")


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.1:8080/feed.xml", "loopback"),
    ("http://localhost/feed.xml", "loopback"),
    ("https://10.1.2.3/rss", "private"),
    ("http://[::1]/rss", "loopback"),
    ("http://169.254.169.254/latest", "cloud metadata"),
])
def test_private_feed_urls_are_refused_unless_allowed(tmp_path: Path, url: str, why: str) -> None:
    feeds = FEEDS.replace("https://news.example.org/world.rss", url)
    d = write(tmp_path, TOPICS, feeds)
    with pytest.raises(WatchlistError) as info:
        load_watchlist(d, allow_private_urls=False)
    assert [str(p).replace(str(d) + "/", "") for p in info.value.problems] == [
        f"feeds.yaml:2:10: feed URL on a {why} address: veille refuses to fetch it unless "
        "VEILLE_ALLOW_PRIVATE_URLS=1"]
    assert load_watchlist(d, allow_private_urls=True).feeds[0].url == url


def test_public_and_named_hosts_pass_the_address_check(tmp_path: Path) -> None:
    feeds = FEEDS.replace("https://news.example.org/world.rss", "http://93.184.216.34/rss")
    wl = load_watchlist(write(tmp_path, TOPICS, feeds), allow_private_urls=False)
    assert [f.url for f in wl.feeds] == ["http://93.184.216.34/rss",
                                         "https://presse.example.fr/international.xml"]


def test_a_numeric_topic_id_reads_as_text(tmp_path: Path) -> None:
    wl = load_watchlist(write(tmp_path, TOPICS.replace("id: power-of-siberia-2", "id: 2024")))
    assert [t.id for t in wl.topics] == ["2024"]
