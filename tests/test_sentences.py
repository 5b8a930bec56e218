"""SENT and PARA: sentence and paragraph scope in every shipped script, and their laws."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.match import Matcher
from bot.model import Topic
from bot.query import And, Term, Within, compile_query, parse, to_text
from bot.text import units


def run(query: str, title: str, body: str = "", lang: str | None = None) -> list[str] | None:
    """Matched texts, or None when the query does not match."""
    found = Matcher([Topic("t", "T", query, compile_query(query))]).match(title, body, lang=lang)
    return [h.text for h in found[0].hits] if found else None


# (query, title, body, lang, expected matched texts or None)
CASES = [
    # Latin: one sentence, two sentences
    ("sanctions SENT Chinese", "", "The U.S. imposed sanctions on Chinese firms.", "en",
     ["sanctions", "Chinese"]),
    ("sanctions SENT Chinese", "", "The U.S. imposed new sanctions. Chinese firms protested.",
     "en", None),
    # abbreviations are not sentence ends
    ("Treasury SENT Chinese", "", "The U.S. Treasury named Chinese firms.", "en",
     ["Treasury", "Chinese"]),
    ("Smith SENT sanctions", "", "Dr. Smith said the sanctions would bite.", "en",
     ["Smith", "sanctions"]),
    ("Petersburg SENT talks", "", "In St. Petersburg the talks went on.", "en",
     ["Petersburg", "talks"]),
    ("Sanktionen SENT Firmen", "", "Die EU verhängt Sanktionen, z. B. gegen Firmen aus China.",
     "de", ["Sanktionen", "Firmen"]),
    ("Poutine SENT président", "", "Le président russe, M. Poutine, est arrivé.", "fr",
     ["président", "Poutine"]),
    ("sanciones SENT chinas", "", "EE. UU. impone sanciones a empresas chinas.", "es",
     ["sanciones", "chinas"]),
    ("sankce SENT firem", "", "Sankce se týkají např. čínských firem. Dr. Novák to řekl.", "cs",
     ["Sankce", "firem"]),
    # Cyrillic
    ("Путин SENT Москве", "", "Встреча прошла в г. Москве, Путин приехал.", "ru",
     ["Москве", "Путин"]),
    ("Путин SENT Москве", "", "Встреча прошла в Москве. Путин приехал позже.", "ru", None),
    ("санкції SENT компанії", "", "Санкції зачепили китайські компанії у м. Києві.", "uk",
     ["Санкції", "компанії"]),
    ("санкції SENT компанії", "", "Санкції оголошено. Китайські компанії мовчать.", "uk", None),
    # Chinese punctuation, with and without a language
    ("制裁 SENT 中国", "", "美国宣布制裁中国企业。", "zh", ["制裁", "中国"]),
    ("制裁 SENT 中国", "", "美国宣布制裁。中国企业表示反对。", "zh", None),
    ("制裁 SENT 中国", "", "美国宣布制裁！中国企业表示反对", None, None),
    ("制裁 SENT 中国", "", "美国宣布制裁？中国企业表示反对", "zh", None),
    # the title is a sentence of its own
    ("sanctions SENT Chinese", "New sanctions", "Chinese firms were named.", "en", None),
    ("sanctions SENT Chinese", "New sanctions on Chinese firms", "", "en",
     ["sanctions", "Chinese"]),
    # PARA: blank lines, the title its own paragraph
    ("Xi PARA Putin", "", "Xi spoke first. Putin answered.\n\nLater, trade.", "en",
     ["Xi", "Putin"]),
    ("Xi PARA Putin", "", "Xi spoke first.\n\nPutin answered.", "en", None),
    ("Xi PARA Putin", "", "Xi spoke first.\n  \n\nPutin answered.", "en", None),
    ("Xi PARA Putin", "Xi in Moscow", "Putin answered.", "en", None),
    ("Путин PARA Пекин*", "", "Путин прилетел.\nВ Пекине его встретили.", "ru",
     ["Путин", "Пекине"]),
    # SENT with aliases, groups, and NEAR inside
    ("(sanctions OR penalties) SENT (Chinese NEAR/2 firms)", "",
     "Penalties hit two Chinese trading firms. Sanctions came later.", "en",
     ["Penalties", "Chinese", "firms"]),
    ("alpha SENT beta SENT gamma", "", "Alpha beta. Gamma.", "en", None),
    ("alpha SENT beta SENT gamma", "", "Alpha beta gamma. Delta.", "en",
     ["Alpha", "beta", "gamma"]),
    # a phrase that crosses a sentence end is not in one sentence
    ('"Moscow Chinese" SENT firms', "", "He flew to Moscow. Chinese firms waited.", "en", None),
]


@pytest.mark.parametrize(("query", "title", "body", "lang", "expected"), CASES,
                         ids=[f"{i}:{c[0][:24]}:{c[3]}" for i, c in enumerate(CASES)])
def test_sentence_and_paragraph_scope(query, title, body, lang, expected) -> None:
    assert run(query, title, body, lang) == expected


def test_sent_and_para_parse_like_near() -> None:
    assert parse("a SENT b OR c") == parse("(a SENT b) OR c")
    assert parse("a SENT b PARA c") == Within(Within(Term("a"), Term("b"), "SENT"), Term("c"),
                                              "PARA")
    assert to_text(parse("a PARA (b OR c)")) == "a PARA (b OR c)"
    assert parse("sent para") == And((Term("sent"), Term("para")))  # lower case: words


def test_units_of_a_text() -> None:
    text = "First one. Second one!\n\nThird, in a new paragraph."
    u = units(text, "en")
    assert [text[s:].split()[0] for s in u.sentences] == ["First", "Second", "Third,"]
    assert [text[p:].split()[0] for p in u.paragraphs] == ["First", "Third,"]


# ------------------------------------------------------------ laws (hypothesis)

WORDS = ["river", "stone", "market", "alpha", "beta", "window", "garden", "engine"]
sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6)
bodies = st.lists(sentence, min_size=1, max_size=5)
ZH = ["河", "石", "甲", "乙", "园", "车"]
zh_sentence = st.lists(st.sampled_from(ZH), min_size=1, max_size=6)


def _latin(sentences: list[list[str]]) -> str:
    return " ".join(" ".join(s).capitalize() + "." for s in sentences)


@settings(max_examples=200, deadline=None)
@given(bodies)
def test_sent_never_matches_across_a_sentence_boundary(sentences) -> None:
    together = any("alpha" in s and "beta" in s for s in sentences)
    assert (run("alpha SENT beta", "", _latin(sentences), "en") is not None) == together


@settings(max_examples=200, deadline=None)
@given(st.lists(zh_sentence, min_size=1, max_size=5))
def test_sent_never_crosses_a_chinese_full_stop(sentences) -> None:
    together = any("甲" in s and "乙" in s for s in sentences)
    body = "".join("".join(s) + "。" for s in sentences)
    assert (run("甲 SENT 乙", "", body, "zh") is not None) == together


@settings(max_examples=200, deadline=None)
@given(bodies, sentence, st.integers(min_value=0, max_value=5))
def test_another_sentence_never_turns_a_sent_match_off(sentences, extra, where) -> None:
    sentences = [*sentences, ["alpha", "beta"]]
    before = run("alpha SENT beta", "", _latin(sentences), "en")
    assert before is not None
    more = [*sentences[:where], extra, *sentences[where:]]
    assert run("alpha SENT beta", "", _latin(more), "en") is not None


@settings(max_examples=100, deadline=None)
@given(bodies, bodies)
def test_para_never_matches_across_a_blank_line(first, second) -> None:
    together = any(("alpha" in " ".join(map(" ".join, p)) and "beta" in " ".join(map(" ".join, p)))
                   for p in (first, second))
    body = _latin(first) + "\n\n" + _latin(second)
    assert (run("alpha PARA beta", "", body, "en") is not None) == together
