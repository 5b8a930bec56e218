"""Telegram rendering of alerts and digests: exact strings, escaping, limits, properties.

Every headline and lead here is written for these tests. `check_html` is a strict reading
of Telegram's HTML rules (../shared/telegram-bot-api.md), written apart from the renderer's
own parser so that one cannot hide the other's mistakes; every message also goes through
the fake Bot API's port of TDLib's HTML parser (tests/fakebot.py) in its strict mode.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.model import Alert, Hit, Item, Match, Topic
from tests.fakebot import parse_html, trim
from bot.telegram.render import (
    LIMIT, Button, DigestEntry, Rendered, callback_data, entity_length, escape, local_time,
    parse_callback, render_alert, render_digest, utf16_len)

UTC = timezone.utc
NOV30 = datetime(2026, 11, 30, 13, 5, tzinfo=UTC)

FR = {"Mute 24 h": "Silence 24 h", "Unsubscribe": "Se désabonner", "Also:": "Aussi :",
      "Previously:": "Précédemment :", "Digest": "Résumé",
      "(no title)": "(sans titre)"}


def fr(text: str) -> str:
    return FR.get(text, text)


# ---------------------------------------------------------------- a strict validator

ALLOWED = {"b": (), "strong": (), "i": (), "em": (), "u": (), "ins": (), "s": (),
           "strike": (), "del": (), "a": ("href",), "code": ("class",), "pre": (),
           "span": ("class",), "tg-spoiler": (), "tg-emoji": ("emoji-id",),
           "blockquote": ("expandable",)}
TAG = re.compile(r'<(/?)([a-z][a-z-]*)((?:\s+[a-z-]+(?:="[^"<>]*")?)*)\s*>')
ATTR = re.compile(r'\s+([a-z-]+)(?:="([^"<>]*)")?')
ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")


def _decode(text: str, where: int) -> str:
    out, pos = [], 0
    for m in re.finditer(r"&", text):
        e = ENTITY.match(text, m.start())
        assert e, f"bare & at byte {where + m.start()}: {text[m.start():m.start() + 12]!r}"
        out.append(text[pos:m.start()])
        ref = e.group(1)
        out.append({"lt": "<", "gt": ">", "amp": "&", "quot": '"'}.get(ref) or chr(
            int(ref[2:], 16) if ref[1] == "x" else int(ref[1:])))
        pos = e.end()
    assert ">" not in text, f"bare > near {where}"
    return "".join(out) + text[pos:]


def check_html(html: str) -> str:
    """The text Telegram would show for html; AssertionError where Telegram would refuse."""
    html.encode("utf-8")  # lone surrogates cannot be sent
    stack: list[str] = []
    shown, pos = [], 0
    while pos < len(html):
        lt = html.find("<", pos)
        end = len(html) if lt < 0 else lt
        shown.append(_decode(html[pos:end], pos))
        if lt < 0:
            break
        m = TAG.match(html, lt)
        assert m, f"unparsable tag at {lt}: {html[lt:lt + 30]!r}"
        closing, name, attrs = m.groups()
        assert name in ALLOWED, f"unsupported tag {name!r} at {lt}"
        if closing:
            assert not attrs and stack and stack[-1] == name, f"misnested </{name}> at {lt}"
            stack.pop()
        else:
            found = dict(ATTR.findall(attrs))
            assert set(found) <= set(ALLOWED[name]), f"attributes {found} on <{name}>"
            if name == "a":
                assert "a" not in stack, "link inside a link"
                href = _decode(found.get("href", ""), lt)
                assert re.match(r"https?://[^/\s]", href, re.I), f"href {href!r}"
                assert not re.search(r"[\x00-\x20]", href), f"whitespace in href {href!r}"
            stack.append(name)
        pos = m.end()
    assert not stack, f"unclosed {stack}"
    text = "".join(shown)
    assert text.strip(), "message text is empty"
    return text


def check_message(r: Rendered) -> str:
    """The shown text, after checking the HTML, both limits and the buttons."""
    shown = check_html(r.text)
    assert utf16_len(shown) <= LIMIT, f"{utf16_len(shown)} units"
    parsed, _ = trim(*parse_html(r.text, strict=True))  # raises as Telegram would
    assert parsed == shown
    assert entity_length(r.text) == utf16_len(shown)
    assert 0 < utf16_len(r.plain()) <= LIMIT
    r.plain().encode("utf-8")
    for row in r.buttons:
        for b in row:
            assert 1 <= len(b.data.encode()) <= 64
    return shown


# ---------------------------------------------------------------- values


def item(**kw) -> Item:
    base = dict(feed="https://feeds.example/rss", guid="g1", url="https://news.example/a",
                link="https://news.example/a", title="Headline", source="Wire",
                published=NOV30)
    return Item(**{**base, **kw})


def alert(it: Item, topic: str = "pos2", hits: tuple[Hit, ...] = (), **kw) -> Alert:
    return Alert(topic, it, Match(topic, hits), **kw)


POS2 = Topic("pos2", "Power of Siberia 2 pipeline", '"Power of Siberia 2"', compiled=None,
             priority="high",
             context="Financing and route of the second Russia–China gas pipeline via Mongolia.")
SANCTIONS = Topic("sanctions", "Sanctions on Chinese suppliers", "sanctions", compiled=None)
JOINT = Topic("joint", "Russia–China joint statement", "joint", compiled=None, priority="low")

EN_ITEM = item(
    title="Gazprom and CNPC settle price formula for Power of Siberia 2",
    link="https://energy.example/pos2?id=7&src=rss", source="Energy Wire",
    summary="Moscow and Beijing agreed on a pricing formula for the Power of Siberia 2 "
            "pipeline, people familiar with the talks said. Financing remains open.")
EN_ALERT = alert(EN_ITEM, hits=(Hit('"Power of Siberia 2"', "title", 42, 60,
                                    "Power of Siberia 2"),))
ALSO = [{"source": "TASS", "title": "x", "url": "https://tass.example/1"},
        {"source": "Caixin", "title": "y", "url": "ftp://caixin.example/2"},
        {"source": "Energy Wire", "title": "same outlet", "url": "https://energy.example/b"},
        {"source": "Le Monde", "title": "z", "url": ""},
        {"source": "Kommersant", "title": "", "url": ""},
        {"source": "", "title": "", "url": "https://www.nikkei.example/c"},
        {"source": "tass", "title": "again", "url": ""}]
PREVIOUSLY = (datetime(2026, 11, 28, 22, 30, tzinfo=UTC), "Beijing holds out on gas price")

FR_ITEM = item(
    title="Force de Sibérie 2 : Pékin et Moscou s'accordent sur le prix",
    link="https://presse.example/eco/force-siberie-2", source="Presse Exemple",
    summary="Le gazoduc Force de Sibérie 2 franchit une étape : les deux capitales ont "
            "arrêté une formule de prix, selon des sources proches du dossier.")
FR_ALERT = alert(FR_ITEM, hits=(Hit('"Force de Sibérie 2"', "body", 10, 28,
                                    "Force de Sibérie 2"),))


# ---------------------------------------------------------------- exact alerts


def test_alert_in_english_paris_is_exact() -> None:
    r = render_alert(EN_ALERT, POS2, tz="Europe/Paris", also=ALSO, previously=PREVIOUSLY)
    assert r.text == (
        "🔴 <b>Power of Siberia 2 pipeline</b>\n"
        '<a href="https://energy.example/pos2?id=7&amp;src=rss">Gazprom and CNPC settle '
        "price formula for Power of Siberia 2</a>\n"
        "Energy Wire · 30 Nov 2026, 14:05 CET\n"
        "\n"
        "Moscow and Beijing agreed on a pricing formula for the <b>Power of Siberia 2</b> "
        "pipeline, people familiar with the talks said. Financing remains open.\n"
        "\n"
        'Also: <a href="https://tass.example/1">TASS</a>, Caixin, Le Monde (+2)\n'
        "Previously: 28 Nov 2026 — Beijing holds out on gas price\n"
        "\n"
        "<i>Financing and route of the second Russia–China gas pipeline via Mongolia.</i>")
    assert r.buttons == ((Button("Mute 24 h", "mute:pos2"), Button("Unsubscribe", "unsub:pos2")),)
    assert (r.preview, r.silent) == (False, False)
    check_message(r)


def test_alert_in_french_shanghai_is_exact() -> None:
    r = render_alert(FR_ALERT, POS2, tz="Asia/Shanghai", lang="fr", t=fr, also=ALSO[:2],
                     previously=PREVIOUSLY, silent=True)
    assert r.text == (
        "🔴 <b>Power of Siberia 2 pipeline</b>\n"
        '<a href="https://presse.example/eco/force-siberie-2">Force de Sibérie 2 : Pékin et '
        "Moscou s'accordent sur le prix</a>\n"
        "Presse Exemple · 30 nov. 2026, 21:05 CST\n"
        "\n"
        "Le gazoduc <b>Force de Sibérie 2</b> franchit une étape : les deux capitales ont "
        "arrêté une formule de prix, selon des sources proches du dossier.\n"
        "\n"
        'Aussi : <a href="https://tass.example/1">TASS</a>, Caixin\n'
        "Précédemment : 29 nov. 2026 — Beijing holds out on gas price\n"
        "\n"
        "<i>Financing and route of the second Russia–China gas pipeline via Mongolia.</i>")
    assert r.buttons == ((Button("Silence 24 h", "mute:pos2"),
                          Button("Se désabonner", "unsub:pos2")),)
    assert r.silent
    check_message(r)


@pytest.mark.parametrize("tz, lang, expected", [
    ("Europe/Paris", "en", "30 Nov 2026, 14:05 CET"),
    ("Europe/Paris", "fr", "30 nov. 2026, 14:05 CET"),
    ("Asia/Shanghai", "en", "30 Nov 2026, 21:05 CST"),
    ("Asia/Shanghai", "fr", "30 nov. 2026, 21:05 CST"),
    ("Europe/Moscow", "fr", "30 nov. 2026, 16:05 MSK"),
    ("America/New_York", "en", "30 Nov 2026, 08:05 EST"),
    ("Asia/Tehran", "en", "30 Nov 2026, 16:35 GMT+03:30"),  # no abbreviation in tzdata
    ("Asia/Tehran", "fr", "30 nov. 2026, 16:35 UTC+03:30"),
    ("UTC", "en", "30 Nov 2026, 13:05 UTC"),
    ("Mars/Olympus_Mons", "en", "30 Nov 2026, 13:05 UTC"),  # invalid zone: UTC
    ("../../etc/passwd", "fr", "30 nov. 2026, 13:05 UTC"),
    ("", "en", "30 Nov 2026, 13:05 UTC"),
    ("Europe/Paris", "xx-YY", "30 Nov 2026, 14:05 CET"),  # unknown language: English
])
def test_local_time(tz: str, lang: str, expected: str) -> None:
    assert local_time(NOV30, tz=tz, lang=lang) == expected


def test_summer_time_and_naive_datetimes() -> None:
    july = datetime(2026, 7, 1, 6, 0)  # naive: taken as UTC
    assert local_time(july, tz="Europe/Paris", lang="fr") == "1 juil. 2026, 08:00 CEST"
    assert local_time(july, tz="Europe/Paris", lang="en", date="MMMd", zone_name=False) \
        == "1 Jul, 08:00"


RU_ITEM = item(title="«Сила Сибири — 2»: Москва и Пекин согласовали цену газа",
               summary="Стороны договорились о формуле цены для газопровода «Сила Сибири — 2».",
               source="Вестник", link="https://vestnik.example/ekonomika/sila-sibiri-2")
ZH_ITEM = item(title="中俄联合声明：双方承诺深化能源合作",
               summary="两国元首签署联合声明，表示将推进西伯利亚力量2号天然气管道项目。",
               source="新华财经", link="https://cn.example/2026/11/30/a.html")
AR_ITEM = item(title="عقوبات أمريكية جديدة على موردين صينيين",
               summary="فرضت واشنطن عقوبات على شركات صينية تزود روسيا بمكونات عسكرية.",
               source="الخبر", link="https://ar.example/x", published=None)
HE_ITEM = item(title="סנקציות חדשות על ספקים סיניים", summary="", content="",
               source="", link="https://www.he.example/news/1")


@pytest.mark.parametrize("al, topic, tz, expected", [
    (alert(RU_ITEM, hits=(Hit('"Сила Сибири"', "title", 1, 12, "Сила Сибири"),)), POS2,
     "Europe/Moscow",
     "🔴 <b>Power of Siberia 2 pipeline</b>\n"
     '<a href="https://vestnik.example/ekonomika/sila-sibiri-2">«Сила Сибири — 2»: Москва и '
     "Пекин согласовали цену газа</a>\n"
     "Вестник · 30 Nov 2026, 16:05 MSK\n"
     "\n"
     "Стороны договорились о формуле цены для газопровода «<b>Сила Сибири</b> — 2».\n"
     "\n"
     "<i>Financing and route of the second Russia–China gas pipeline via Mongolia.</i>"),
    # Chinese: no spaces, so terms are found inside the text; low priority
    (alert(ZH_ITEM, "joint", hits=(Hit("联合声明", "body", 4, 8, "联合声明"),)), JOINT,
     "Asia/Shanghai",
     "⚪ <b>Russia–China joint statement</b>\n"
     '<a href="https://cn.example/2026/11/30/a.html">中俄联合声明：双方承诺深化能源合作</a>\n'
     "新华财经 · 30 Nov 2026, 21:05 CST\n"
     "\n"
     "两国元首签署<b>联合声明</b>，表示将推进西伯利亚力量2号天然气管道项目。"),
    # Arabic, undated, unknown topic (its id shown, normal priority)
    (alert(AR_ITEM, "sanctions", hits=(Hit("عقوبات", "title", 0, 6, "عقوبات"),)), None,
     "Europe/Paris",
     "🔹 <b>sanctions</b>\n"
     '<a href="https://ar.example/x">عقوبات أمريكية جديدة على موردين صينيين</a>\n'
     "الخبر\n"
     "\n"
     "فرضت واشنطن <b>عقوبات</b> على شركات صينية تزود روسيا بمكونات عسكرية."),
    # Hebrew, no summary, no source: the link's host stands for the outlet
    (alert(HE_ITEM, "sanctions"), SANCTIONS, "Asia/Jerusalem",
     "🔹 <b>Sanctions on Chinese suppliers</b>\n"
     '<a href="https://www.he.example/news/1">סנקציות חדשות על ספקים סיניים</a>\n'
     "he.example · 30 Nov 2026, 15:05 IST"),
], ids=["ru", "zh", "ar", "he"])
def test_alerts_in_other_scripts(al: Alert, topic: Topic | None, tz: str, expected: str) -> None:
    r = render_alert(al, topic, tz=tz)
    assert r.text == expected
    check_message(r)


# ---------------------------------------------------------------- escaping and links


def test_every_feed_string_is_escaped() -> None:
    it = item(title='<script>alert("x")</script> AT&T & <b>Huawei</b>',
              source="<i>Wire</i> & Co", summary="Tariffs <rise> & AT&T answers; 5 > 3.",
              link='https://news.example/a?x=1&y="2"&z=<3>')
    topic = replace(SANCTIONS, title="Sanctions <&> suppliers",
                    context="Context with <u>tags</u> & &amp; written literally")
    al = alert(it, "sanctions", hits=(Hit("AT&T", "title", 29, 33, "AT&T"),))
    r = render_alert(al, topic, also=[{"source": "<b>Bold</b> News",
                                       "url": "https://x.example/?a=1&b=2"}],
                     previously=(NOV30, "</i><b>old</b>"))
    assert r.text == (
        "🔹 <b>Sanctions &lt;&amp;&gt; suppliers</b>\n"
        '<a href="https://news.example/a?x=1&amp;y=&quot;2&quot;&amp;z=&lt;3&gt;">'
        "&lt;script&gt;alert(\"x\")&lt;/script&gt; AT&amp;T &amp; &lt;b&gt;Huawei&lt;/b&gt;"
        "</a>\n"
        "&lt;i&gt;Wire&lt;/i&gt; &amp; Co · 30 Nov 2026, 13:05 UTC\n"
        "\n"
        "Tariffs &lt;rise&gt; &amp; <b>AT&amp;T</b> answers; 5 &gt; 3.\n"
        "\n"
        'Also: <a href="https://x.example/?a=1&amp;b=2">&lt;b&gt;Bold&lt;/b&gt; News</a>\n'
        "Previously: 30 Nov 2026 — &lt;/i&gt;&lt;b&gt;old&lt;/b&gt;\n"
        "\n"
        "<i>Context with &lt;u&gt;tags&lt;/u&gt; &amp; &amp;amp; written literally</i>")
    shown = check_message(r)
    assert '<script>alert("x")</script> AT&T' in shown
    assert "Context with <u>tags</u> & &amp; written literally" in shown


def test_bidi_overrides_from_feeds_are_dropped_and_rtl_text_kept() -> None:
    it = item(title="\u202eSanctions\u202c עדכון", source="Wire\u2067", published=NOV30)
    r = render_alert(alert(it), None, buttons=False)
    assert r.text.split("\n")[1:] == ['<a href="https://news.example/a">Sanctions עדכון</a>',
                                      "Wire · 30 Nov 2026, 13:05 UTC"]


@pytest.mark.parametrize("text, quote, expected", [
    ("a < b & c > d", False, "a &lt; b &amp; c &gt; d"),
    ('say "hi" & go', False, 'say "hi" &amp; go'),
    ('say "hi" & go', True, "say &quot;hi&quot; &amp; go"),
    ("&amp;", False, "&amp;amp;"),
    ("", False, ""),
])
def test_escape(text: str, quote: bool, expected: str) -> None:
    assert escape(text, quote) == expected


@pytest.mark.parametrize("link, title_line", [
    ("https://n.example/a?q=\"x\"&b=1", '<a href="https://n.example/a?q=&quot;x&quot;&amp;b=1">'
                                        "Title</a>"),
    ("HTTP://N.EXAMPLE/A", '<a href="HTTP://N.EXAMPLE/A">Title</a>'),
    ("https://n.example/a b\tc", '<a href="https://n.example/a%20b%09c">Title</a>'),
    ("https://n.example/путь", '<a href="https://n.example/путь">Title</a>'),
    ("javascript:alert(1)", "Title\n<code>javascript:alert(1)</code>"),
    ("ftp://files.example/a&b", "Title\n<code>ftp://files.example/a&amp;b</code>"),
    ("/relative/path", "Title\n<code>/relative/path</code>"),
    ("https://", "Title\n<code>https://</code>"),
    ("http://[::1", "Title\n<code>http://[::1</code>"),
    ("", "Title"),
    ("https://n.example/" + "a" * 2100, "Title"),  # too long to link, or to show
    ("tg://" + "b" * 300, "Title"),
])
def test_links(link: str, title_line: str) -> None:
    r = render_alert(alert(item(title="Title", link=link, source="S", published=None)), None,
                     buttons=False)
    assert r.text == f"🔹 <b>pos2</b>\n{title_line}\nS"
    check_message(r)


def test_preview_only_when_the_topic_enables_it_and_there_is_a_link() -> None:
    @dataclass(frozen=True, slots=True)
    class PreviewTopic(Topic):
        preview: bool = True

    on = PreviewTopic("pos2", "Power of Siberia 2 pipeline", "q", compiled=None)
    assert render_alert(EN_ALERT, on).preview
    assert not render_alert(EN_ALERT, POS2).preview
    assert not render_alert(EN_ALERT, None).preview
    assert not render_alert(alert(item(link="ftp://x.example/a")), on).preview


# ---------------------------------------------------------------- matched terms


BODY = "Washington added twelve Chinese suppliers to its sanctions list; the SANCTIONS " \
       "target drone parts. Sanctionsless firms were spared."


@pytest.mark.parametrize("hits, summary, marks, excerpt", [
    # body hits by offset; the term also found elsewhere, whole words only, any case
    ((Hit("sanction*", "body", 49, 58, "sanctions"),), None, None,
     "Washington added twelve Chinese suppliers to its <b>sanctions</b> list; the "
     "<b>SANCTIONS</b> target drone parts. Sanctionsless firms were spared."),
    # a title hit's text is looked for in the body too; a stale body hit is ignored
    ((Hit("suppliers", "title", 0, 9, "Suppliers"), Hit("x", "body", 0, 4, "nope")), None,
     None,
     "Washington added twelve Chinese <b>suppliers</b> to its sanctions list; the "
     "SANCTIONS target drone parts. Sanctionsless firms were spared."),
    # overlapping hits merge into one bold run
    ((Hit("a", "body", 24, 41, "Chinese suppliers"), Hit("b", "body", 32, 41, "suppliers")),
     None, None,
     "Washington added twelve <b>Chinese suppliers</b> to its sanctions list; the "
     "SANCTIONS target drone parts. Sanctionsless firms were spared."),
    # a given summary: marks are offsets into it, out-of-range ones are ignored
    ((Hit("sanction*", "body", 49, 58, "sanctions"),), "New US sanctions hit  drone\nparts.",
     [(7, 16), (22, 27), (40, 99), (5, 3), (-4, 0)],
     "New US <b>sanctions</b> hit <b>drone</b> parts."),
    # a given summary without marks: the matched texts are looked for in it
    ((Hit("sanction*", "body", 49, 58, "sanctions"),), "Sanctions widen to drone makers.",
     None, "<b>Sanctions</b> widen to drone makers."),
    # a phrase broken across lines in the text is still found
    ((Hit("p", "title", 0, 5, "Power of Siberia 2"),), "Talks on the power of\nSiberia 2 "
     "resumed.", None, "Talks on the <b>power of Siberia 2</b> resumed."),
    # terms with markup characters are escaped inside the bold
    ((Hit("x", "title", 0, 4, "<b>"),), "Tag <b> in text", None,
     "Tag <b>&lt;b&gt;</b> in text"),
])
def test_matched_terms_in_bold(hits, summary, marks, excerpt) -> None:
    al = alert(item(title="Suppliers", summary=BODY, published=None, source="S"),
               "sanctions", hits=hits)
    r = render_alert(al, None, summary=summary, marks=marks, buttons=False)
    assert r.text == f'🔹 <b>sanctions</b>\n<a href="https://news.example/a">Suppliers</a>\nS' \
                     f"\n\n{excerpt}"
    check_message(r)


def test_a_match_deep_in_the_body_is_shown_with_the_text_around_it() -> None:
    filler = "Officials reviewed customs data for several months before acting. " * 20
    body = filler + "Then the Treasury named eleven Chinese drone part suppliers."
    start = body.index("Treasury")
    al = alert(item(content=body, summary=""), "sanctions",
               hits=(Hit("treasury", "body", start, start + 8, "Treasury"),))
    r = render_alert(al, None, buttons=False)
    excerpt = r.text.split("\n\n", 1)[1]
    assert excerpt.startswith("… ")
    assert "<b>Treasury</b> named eleven Chinese drone part suppliers." in excerpt
    assert utf16_len(check_html(excerpt)) <= 600


def test_long_excerpt_from_the_item_is_cut_at_a_word_with_an_ellipsis() -> None:
    body = "Pipeline talks resumed in Beijing. " * 40
    r = render_alert(alert(item(summary=body)), None)
    excerpt = check_html(r.text.split("\n\n", 1)[1])
    assert excerpt == ("Pipeline talks resumed in Beijing. " * 17).rstrip(" .") + "…"  # 594


# ---------------------------------------------------------------- buttons and callbacks


LONG_ID = "us-secondary-sanctions-on-chinese-suppliers-of-russian-defence-industry-2026"


@pytest.mark.parametrize("action, topic, expected", [
    ("mute", "pos2", "mute:pos2"),
    ("unsub", "sanctions", "unsub:sanctions"),
    ("tog", "a" * 60, "tog:" + "a" * 60),  # exactly 64 bytes still fits
    ("tog", "a" * 61, "tog#NdX8F8-7rdAPXnEK"),
    ("mute", LONG_ID, "mute#l4joswf3m9gOfjQn"),
    ("sub", "санкции-против-китайских-поставщиков", "sub#Mtva1oXkZfk3rJ85"),  # 64+ bytes
    ("sub", "санкции", "sub:санкции"),
])
def test_callback_data(action: str, topic: str, expected: str) -> None:
    data = callback_data(action, topic)
    assert data == expected
    assert 1 <= len(data.encode()) <= 64
    assert parse_callback(data, ["other", topic, "pos2x"]) == (action, topic)


@pytest.mark.parametrize("data", [
    "", "mute", "mute:", "mute:unknown", ":pos2", "MUTE:pos2", "mute#AAAAAAAAAAAAAAAA",
    "tog#" + "x" * 16, "mute pos2", "toolongactionname_x:pos2", "mute#" + "a" * 61,
])
def test_parse_callback_garbage_is_none(data: str) -> None:
    assert parse_callback(data, ["pos2", "a" * 61, LONG_ID]) is None


def test_the_hash_form_only_stands_for_ids_too_long_to_fit() -> None:
    def hashed(topic: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(topic.encode()).digest()[:12]).decode()

    assert callback_data("mute", "x" * 70) == "mute#" + hashed("x" * 70)
    assert parse_callback("mute#" + hashed("x" * 70), ["pos2", "x" * 70]) == ("mute", "x" * 70)
    assert parse_callback("mute#" + hashed("pos2"), ["pos2"]) is None


@pytest.mark.parametrize("action, topic", [("Mute", "x"), ("", "x"), ("a" * 17, "x"),
                                           ("mu:te", "x"), ("mute", "")])
def test_callback_data_refuses_bad_arguments(action: str, topic: str) -> None:
    with pytest.raises(ValueError):
        callback_data(action, topic)


def test_buttons_for_long_topic_ids_and_without_buttons() -> None:
    topic = replace(SANCTIONS, id=LONG_ID)
    r = render_alert(alert(item(), LONG_ID), topic)
    assert [b.data for b in r.buttons[0]] == ["mute#l4joswf3m9gOfjQn", "unsub#l4joswf3m9gOfjQn"]
    assert render_alert(alert(item()), topic, buttons=False).buttons == ()


@pytest.mark.parametrize("text, data", [("Mute", ""), ("Mute", "x" * 65), ("", "mute:x"),
                                        ("Mute", "é" * 33)])
def test_button_refuses_what_telegram_would(text: str, data: str) -> None:
    with pytest.raises(ValueError):
        Button(text, data)


# ---------------------------------------------------------------- lengths


@pytest.mark.parametrize("html, units", [
    ("plain", 5),
    ("<b>bold</b> &amp; <a href=\"https://x.example/?a=1&amp;b=2\">link</a>", 11),
    ("&lt;&gt;&quot;&#65;&#x42;", 5),
    ("emoji 🔴👨‍👩‍👧", 6 + 2 + 2 + 1 + 2 + 1 + 2),
    ("中文", 2),
    ("𝔘", 2),
])
def test_entity_length(html: str, units: int) -> None:
    assert entity_length(html) == units


def test_plain_keeps_the_text_and_the_article_link() -> None:
    r = render_alert(EN_ALERT, POS2, tz="Europe/Paris", also=ALSO[:1])
    assert r.plain() == (
        "🔴 Power of Siberia 2 pipeline\n"
        "Gazprom and CNPC settle price formula for Power of Siberia 2 "
        "(https://energy.example/pos2?id=7&src=rss)\n"
        "Energy Wire · 30 Nov 2026, 14:05 CET\n"
        "\n"
        "Moscow and Beijing agreed on a pricing formula for the Power of Siberia 2 pipeline, "
        "people familiar with the talks said. Financing remains open.\n"
        "\n"
        "Also: TASS (https://tass.example/1)\n"
        "\n"
        "Financing and route of the second Russia–China gas pipeline via Mongolia.")


def test_plain_drops_link_addresses_that_no_longer_fit() -> None:
    text = "x" * 4000 + '<a href="https://n.example/' + "p" * 200 + '">here</a>'
    assert Rendered(text).plain() == "x" * 4000 + "here"
    assert utf16_len(Rendered("🔴" * 3000).plain()) <= LIMIT


def shown_parts(r: Rendered) -> list[str]:
    return check_message(r).split("\n\n")


def test_a_huge_summary_shrinks_first_and_keeps_the_rest() -> None:
    summary = "Gas talks in Beijing dragged on & on. " * 400
    r = render_alert(EN_ALERT, POS2, tz="Europe/Paris", summary=summary, also=ALSO,
                     previously=PREVIOUSLY)
    head, excerpt, story, context = shown_parts(r)
    assert LIMIT - 20 <= entity_length(r.text) <= LIMIT
    assert head.endswith("Energy Wire · 30 Nov 2026, 14:05 CET")
    assert re.search(r" (Gas|talks|in|Beijing|dragged|on|&)…$", excerpt)
    assert story.startswith("Also: TASS, Caixin, Le Monde (+2)\nPreviously:")
    assert context.startswith("Financing")
    assert "&amp; on" in r.text and "&amp…" not in r.text and "&…" not in r.text


def test_a_10000_character_title_is_cut_and_the_excerpt_survives() -> None:
    title = "Sanctions " + "très longues " * 800
    r = render_alert(alert(item(title=title, summary="A short lead.")), SANCTIONS)
    head, excerpt = shown_parts(r)
    shown_title = head.split("\n")[1]
    assert utf16_len(shown_title) <= 500 and re.search(r" (très|longues)…$", shown_title)
    assert excerpt == "A short lead."


@pytest.mark.parametrize("unit, kept", [
    ("👨\u200d👩\u200d👧", 62),  # 8 units a family: 62 of them and the ellipsis fit in 500
    ("🇷🇺🇨🇳", 62),  # 8 units, 2 flags: 124 flags (the 125th's first half would still fit)
    ("e\u0301", 249),  # letter + combining accent: never a bare accent at the end
    ("中", 499),
])
def test_a_cut_never_splits_a_character_or_a_grapheme(unit: str, kept: int) -> None:
    r = render_alert(alert(item(title=unit * 1000)), None)
    title = check_message(r).split("\n")[1]
    assert title == unit * kept + "…"


def test_everything_absurd_at_once_still_fits() -> None:
    huge = "<&>" + "💥" * 5000 + " مرحبا" * 2000
    it = item(title=huge, summary=huge, content=huge, source=huge,
              link="https://x.example/" + "a" * 5000)
    topic = replace(POS2, title=huge, context=huge)
    also = [{"source": huge + str(i), "url": "https://x.example"} for i in range(50)]
    r = render_alert(alert(it, hits=(Hit("x", "body", 0, 3, "<&>"),)), topic, summary=huge,
                     also=also, previously=(NOV30, huge))
    shown = check_message(r)
    assert "<&>" in shown and "💥" in shown
    assert 'href="https://x.example/aaa' not in r.text  # an address too long is not linked


def test_an_absurd_translation_cannot_break_the_limit() -> None:
    def loud(text: str) -> str:
        return text * 2000

    r = render_alert(EN_ALERT, POS2, t=loud, also=ALSO, previously=PREVIOUSLY)
    check_message(r)


# ---------------------------------------------------------------- digests


def dated(minutes: int) -> datetime:
    return datetime(2026, 11, 30, 8, 0, tzinfo=UTC).replace(minute=minutes)


def entry(title: str, topic: Topic | None, minutes: int, story: str | None = None,
          source: str = "Wire", outlets: int = 0, topic_id: str | None = None) -> DigestEntry:
    it = item(title=title, source=source, published=dated(minutes),
              link=f"https://n.example/{abs(hash(title)) % 1000}?a=1&b=2",
              url=f"https://n.example/{title}")
    tid = topic.id if topic else (topic_id or "orphan")
    return DigestEntry(Alert(tid, it, Match(tid, ()), story=story), topic, outlets)


def test_digest_groups_by_priority_then_title_newest_first_each_story_once() -> None:
    entries = [
        entry("Joint statement signed in Moscow", JOINT, 5, story="s1"),
        entry("Treasury names 12 Chinese firms", SANCTIONS, 10, story="s2", source="Reuters"),
        entry("Treasury adds Chinese drone suppliers", SANCTIONS, 40, story="s2",
              source="AP"),
        entry("Pipeline price formula agreed", POS2, 20, story="s3", outlets=5),
        entry("Beijing reacts to US sanctions", SANCTIONS, 30, story="s4"),
        entry("Statement mentions the pipeline", POS2, 25, story="s1"),
        entry("Undated note <draft>", None, 0, topic_id="orphan"),
    ]
    entries[-1] = replace(entries[-1], alert=replace(
        entries[-1].alert, item=replace(entries[-1].alert.item, published=None)))
    pages = render_digest(entries, tz="Europe/Paris", lang="en")
    assert len(pages) == 1
    text = pages[0].text
    links = re.findall(r'<a href="[^"]+">', text)
    for link in set(links):
        text = text.replace(link, "<a>")
    assert text == (
        "📰 <b>Digest</b>\n"
        "\n"
        "🔴 <b>Power of Siberia 2 pipeline</b>\n"
        "• <a>Statement mentions the pipeline</a> — Wire · 30 Nov, 09:25\n"
        "• <a>Pipeline price formula agreed</a> — Wire (+4) · 30 Nov, 09:20\n"
        "\n"
        "🔹 <b>orphan</b>\n"
        "• <a>Undated note &lt;draft&gt;</a> — Wire\n"
        "\n"
        "🔹 <b>Sanctions on Chinese suppliers</b>\n"
        "• <a>Treasury adds Chinese drone suppliers</a> — AP (+1) · 30 Nov, 09:40\n"
        "• <a>Beijing reacts to US sanctions</a> — Wire · 30 Nov, 09:30")
    assert "Joint statement" not in text  # story s1 shown once, under its first topic
    assert '&amp;b=2">' in pages[0].text
    assert not pages[0].buttons and not pages[0].preview
    check_message(pages[0])


def test_digest_in_french() -> None:
    pages = render_digest([entry("Force de Sibérie 2 : accord", POS2, 5, outlets=3)],
                          tz="Asia/Shanghai", lang="fr", t=fr, title="Résumé du 30 novembre")
    assert re.sub(r'<a href="[^"]+">', "<a>", pages[0].text) == (
        "📰 <b>Résumé du 30 novembre</b>\n"
        "\n"
        "🔴 <b>Power of Siberia 2 pipeline</b>\n"
        "• <a>Force de Sibérie 2 : accord</a> — Wire (+2) · 30 nov., 16:05")


def test_empty_digest_renders_nothing() -> None:
    assert render_digest([], tz="UTC", lang="en") == []


def test_a_long_digest_splits_between_entries_and_repeats_the_topic() -> None:
    entries = [entry(f"Sanctions update number {i} " + "détail " * 60, SANCTIONS, i % 60)
               for i in range(40)]
    entries += [entry(f"Pipeline note {i}", POS2, i) for i in range(3)]
    pages = render_digest(entries, tz="UTC", lang="en")
    assert len(pages) > 2
    shown = [check_message(p) for p in pages]
    total = len(pages)
    for n, text in enumerate(shown, 1):
        assert text.startswith(f"📰 Digest ({n}/{total})\n\n")
        assert utf16_len(text) <= LIMIT
    assert shown[0].split("\n")[2] == "🔴 Power of Siberia 2 pipeline"
    for text in shown[1:]:
        assert text.split("\n")[2] == "🔹 Sanctions on Chinese suppliers"  # carried over
    lines = [line for text in shown for line in text.split("\n") if line.startswith("• ")]
    assert len(lines) == 43  # every entry whole, once
    assert sum(1 for line in lines if line.startswith("• Sanctions update")) == 40
    assert all(re.search(r"</?\w|&\w+;", line) is None for line in lines)  # shown text
    assert all(re.search(r" — Wire · 30 Nov, 08:\d\d$", line) for line in lines)


def test_a_digest_of_absurd_entries_still_fits() -> None:
    huge = "<&>" + "💥" * 6000
    entries = [entry(huge + str(i), replace(SANCTIONS, title=huge), i, source=huge)
               for i in range(12)]
    pages = render_digest(entries, tz="UTC", lang="en", title=huge)
    assert len(pages) >= 2
    for p in pages:
        check_message(p)


# ---------------------------------------------------------------- properties

NASTY = ["<", ">", "&", "&amp;", "&lt", "<script>", "</b>", "<b>", "<a href='x'>", '"', "'",
         "😀", "👨‍👩‍👧", "🇷🇺🇨🇳", "\u200d", "\u200b", "\u200f", "\u202e", "שלום", "مرحبا",
         "中俄", "Сила", "é", "e\u0301", "𝔘", " ", "\n", "\t", "\x00", "\x1f", "\ud800",
         "\ufeff", "…", "—", "/", "=", "#", "%"]
nasty_text = st.lists(st.sampled_from(NASTY) | st.text(max_size=5), max_size=40).map("".join)
long_text = st.tuples(nasty_text, st.integers(1, 10_000)).map(
    lambda p: (p[0] * (10_000 // max(1, len(p[0])) + 1))[:p[1]] if p[0] else "")
any_text = nasty_text | long_text
links = st.sampled_from(["https://n.example/a?b=1&c=\"2\"", "javascript:alert(1)", "",
                         "ftp://x.example/<b>", "https://n.example/" + "😀" * 30,
                         "http://[::1", "https://n.example/a b"]) | any_text
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(title=any_text, summary=any_text, content=any_text, source=any_text, link=links,
       topic_title=nasty_text, context=any_text, term=nasty_text,
       also=st.lists(st.fixed_dictionaries({"source": any_text, "url": links}), max_size=6),
       given_summary=st.none() | any_text, prev=st.none() | any_text,
       tz=st.sampled_from(["UTC", "Europe/Paris", "Asia/Tehran", "nowhere", ""]),
       lang=st.sampled_from(["en", "fr", "ar", "??"]))
def test_any_alert_renders_to_a_message_telegram_accepts(
        title, summary, content, source, link, topic_title, context, term, also,
        given_summary, prev, tz, lang) -> None:
    it = item(title=title, summary=summary, content=content, source=source, link=link)
    hits = (Hit(term, "body", 0, len(term), term), Hit(term, "title", 0, 3, term))
    topic = replace(POS2, title=topic_title, context=context)
    r = render_alert(alert(it, hits=hits), topic, tz=tz, lang=lang, summary=given_summary,
                     also=also, previously=(NOV30, prev) if prev is not None else None)
    check_message(r)


@SETTINGS
@given(titles=st.lists(st.tuples(any_text, any_text, links, st.sampled_from(
    [POS2, SANCTIONS, JOINT, None])), max_size=30), heading=st.none() | nasty_text)
def test_any_digest_renders_to_messages_telegram_accepts(titles, heading) -> None:
    entries = [DigestEntry(alert(item(title=t, source=s, link=lk, url=f"u{i}"),
                                 topic.id if topic else "x"), topic)
               for i, (t, s, lk, topic) in enumerate(titles)]
    pages = render_digest(entries, tz="Europe/Paris", lang="fr", title=heading)
    assert (pages == []) == (entries == [])
    bullets = 0
    for p in pages:
        bullets += sum(1 for line in check_message(p).split("\n") if line.startswith("• "))
    assert bullets == len(entries)


@SETTINGS
@given(action=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
       topic=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80))
def test_callback_data_round_trips(action: str, topic: str) -> None:
    data = callback_data(action, topic)
    assert 1 <= len(data.encode()) <= 64
    assert parse_callback(data, ["pos2", topic, topic + "x"]) == (action, topic)
