"""Context summaries: tables in English, French, Russian, German and Chinese (chosen
sentences hold a matched term, are whole, stay in the item's language and under the cap),
boilerplate dropped, thin items falling back to the title, marks on the terms."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bot.model import Hit, Item, Match, Topic
from bot.summarize import CAP, clean, sentences, summarize

WHEN = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
TOPIC = Topic(id="pos2", title="Power of Siberia 2", query="x", compiled=None,
              context="A proposed Russia–China gas pipeline through Mongolia.")


def item(title: str, summary: str, lang: str) -> Item:
    return Item(feed="https://f.example/rss", guid="g", url="https://f.example/a",
                link="https://f.example/a", title=title, summary=summary, lang=lang)


def match(*texts: str) -> Match:
    return Match("pos2", tuple(Hit(t, "body", 0, len(t), t) for t in texts))


# (lang, title, feed text, matched texts, sentences expected in the summary, and not)
TABLE = [
    ("en", "Pipeline talks resume",
     "By Anna Reed, Moscow correspondent | Officials met again on Monday in a cold hall. "
     "Gazprom said the Power of Siberia 2 price formula was close to agreed. "
     "The weather in Beijing was mild. "
     "Mongolia's transit fee for Power of Siberia 2 is still open, a source said. "
     "Read more: our pipeline coverage.",
     ("Power of Siberia 2",),
     ["Gazprom said the Power of Siberia 2 price formula was close to agreed.",
      "Mongolia's transit fee for Power of Siberia 2 is still open, a source said."],
     ["weather", "Read more", "Anna Reed"]),
    ("fr", "Reprise des discussions",
     "Par Jean Martin — Les négociateurs se sont retrouvés lundi. M. Novak a déclaré que "
     "le prix de Force de Sibérie 2 était presque arrêté. Il faisait beau à Pékin. "
     "Lire la suite sur notre site.",
     ("Force de Sibérie 2",),
     ["M. Novak a déclaré que le prix de Force de Sibérie 2 était presque arrêté."],
     ["beau", "Lire la suite", "Jean Martin"]),
    ("ru", "Переговоры возобновились",
     "Переговорщики встретились в понедельник. По словам источника, т.е. участника встречи, "
     "цена по «Силе Сибири 2» почти согласована. В Пекине было тепло. "
     "Подписывайтесь на наш канал.",
     ("Силе Сибири 2",),
     ["По словам источника, т.е. участника встречи, цена по «Силе Сибири 2» почти согласована."],
     ["тепло", "Подписывайтесь"]),
    ("de", "Gespräche wieder aufgenommen",
     "Von Karl Weber: Die Unterhändler trafen sich am 3. März erneut. Laut Dr. Müller ist "
     "der Preis für Kraft Sibiriens 2 fast vereinbart. In Peking war es mild. "
     "Weiterlesen auf unserer Seite.",
     ("Kraft Sibiriens 2",),
     ["Laut Dr. Müller ist der Preis für Kraft Sibiriens 2 fast vereinbart."],
     ["mild", "Weiterlesen", "Karl Weber"]),
    ("zh", "管道谈判重启",
     "双方代表周一再次会面。俄气表示，西伯利亚力量2号的价格公式已接近达成一致。北京天气晴朗。"
     "蒙古对西伯利亚力量2号的过境费仍未确定。阅读全文请点击。",
     ("西伯利亚力量2号",),
     ["俄气表示，西伯利亚力量2号的价格公式已接近达成一致。", "蒙古对西伯利亚力量2号的过境费仍未确定。"],
     ["天气", "阅读全文"]),
]


@pytest.mark.parametrize("lang,title,text,terms,wanted,unwanted", TABLE,
                         ids=[row[0] for row in TABLE])
def test_summaries_pick_whole_sentences_holding_the_terms(lang, title, text, terms, wanted,
                                                          unwanted) -> None:
    s = summarize(item(title, text, lang), match(*terms), TOPIC, (WHEN, "Earlier talks"))
    for sentence in wanted:
        assert sentence in s.text, (s.text, sentence)
    for word in unwanted:
        assert word not in s.text
    assert len(s.text) <= CAP
    assert s.text in text or all(part in text for part in wanted)  # the item's own words
    assert s.marks and all(s.text[a:b] in terms for a, b in s.marks)
    assert (s.context, s.previously, s.origin) == (TOPIC.context, (WHEN, "Earlier talks"), "feed")


def test_a_long_text_is_cut_at_sentence_boundaries_under_the_cap() -> None:
    filler = " ".join(f"Paragraph {n} mentions Power of Siberia 2 and other things at length."
                      for n in range(20))
    s = summarize(item("T", filler, "en"), match("Power of Siberia 2"), TOPIC)
    assert 100 < len(s.text) <= CAP
    assert s.text.endswith(".") and s.text.count(".") <= 3


def test_a_single_overlong_sentence_is_cut_between_words_never_inside_one() -> None:
    words = " ".join(["Power of Siberia 2 negotiators"] + ["extraordinarily"] * 60) + "."
    s = summarize(item("T", words, "en"), match("Power of Siberia 2"), TOPIC)
    assert len(s.text) <= CAP and s.text.endswith("…")
    assert s.text[:-1].split()[-1] == "extraordinarily"


@pytest.mark.parametrize("text", ["", "Gas.", "Pipeline talks resume", "<p>Read more</p>",
                                  "Pipeline talks resume. Subscribe to our newsletter."])
def test_a_thin_item_falls_back_to_its_title_and_the_topic_context(text: str) -> None:
    s = summarize(item("Pipeline talks resume", text, "en"), match("Pipeline"), TOPIC)
    assert (s.text, s.origin, s.context) == ("Pipeline talks resume", "title", TOPIC.context)
    assert s.marks == ((0, 8),)


def test_html_and_boilerplate_are_stripped() -> None:
    raw = ("<p>By Jo Bloggs</p><p>Gazprom &amp; CNPC met on Monday to discuss the route of the "
           "pipeline for the third time this year.</p><p>We use cookies to improve your "
           "experience.</p><p>The post Talks resume appeared first on Energy Wire.</p>")
    assert clean(raw) == ("Gazprom & CNPC met on Monday to discuss the route of the pipeline "
                          "for the third time this year.")


def test_no_sentence_with_a_term_gives_the_lead_sentence() -> None:
    text = ("Negotiators from both companies met again in Beijing on Monday afternoon. "
            "They will meet again next month.")
    s = summarize(item("Power of Siberia 2 talks", text, "en"), match("Power of Siberia 2"), TOPIC)
    assert s.text == "Negotiators from both companies met again in Beijing on Monday afternoon."


def test_terms_are_marked_as_whole_words_only() -> None:
    text = ("Taxi drivers in Xiamen protested on Monday, while Xi met Putin in the Kremlin "
            "for the second time this year.")
    s = summarize(item("T", text, "en"), Match("x", (Hit("Xi", "body", 0, 2, "Xi"),)), None)
    assert [s.text[a:b] for a, b in s.marks] == ["Xi"]
    assert s.marks[0][0] == s.text.index(" Xi ") + 1


def test_sentences_glue_back_abbreviation_cuts() -> None:
    assert sentences("M. Poutine est arrivé. Il a parlé.", "fr") == [
        "M. Poutine est arrivé.", "Il a parlé."]


@pytest.mark.parametrize("text", [
    "By Anna Reed | Gazprom said the Power of Siberia 2 price formula was close to agreed.",
    "MOSCOW (Reuters) - Gazprom said the Power of Siberia 2 price formula was close to agreed.",
    "Par Anna Reed — Gazprom said the Power of Siberia 2 price formula was close to agreed.",
])
def test_bylines_and_datelines_before_the_news_are_dropped(text: str) -> None:
    s = summarize(item("T", text, "en"), match("Power of Siberia 2"), TOPIC)
    assert s.text == "Gazprom said the Power of Siberia 2 price formula was close to agreed."


def test_an_overlong_sentence_is_cut_at_a_clause_when_it_can() -> None:
    words = ("Power of Siberia 2 negotiators met in Beijing, " + "extraordinarily " * 15
             + "long, " + "and then some more " * 20 + "until the end.")
    s = summarize(item("T", words, "en"), match("Power of Siberia 2"), TOPIC)
    assert s.text.endswith("extraordinarily long…") and len(s.text) <= CAP
