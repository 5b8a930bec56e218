"""The query language: a table of cases, each with the expected verdict and matched spans."""

from __future__ import annotations

import pytest

from bot.errors import QuerySyntaxError
from bot.match import Matcher
from bot.model import Topic
from bot.query import And, Near, Not, Or, Scope, Term, compile_query, parse, to_text

ALIASES = {
    "pos2": ["Power of Siberia 2", "Сил* Сибири 2", "Force de Sibérie 2", "西伯利亚力量2号"],
    "xi": ["Xi Jinping", "Си Цзиньпин*", "习近平"],
    "leaders": ["@xi", "Putin", "Путин*", "普京"],
}


def run(query: str, title: str, body: str = "") -> list[str] | None:
    """Matched texts (title first, in order), or None when the query does not match."""
    topic = Topic("t", "T", query, compile_query(query, ALIASES))
    found = Matcher([topic]).match(title, body)
    if not found:
        return None
    return [h.text for h in found[0].hits]


# (query, title, body, expected matched texts or None for no match)
CASES = [
    # bare words, case, word boundaries and false friends
    ("Xi", "Xi meets Putin", "", ["Xi"]),
    ("Xi", "XI CONGRESS", "", ["XI"]),
    ("Xi", "Taxi drivers strike in Paris", "", None),
    ("Xi", "Xinhua reports record harvest", "", None),
    ("Xi", "Maxi-scooter sales rise", "", None),
    ("Xi", "Xi's visit", "", ["Xi"]),
    ("Siberia", "Siberian tigers counted", "", None),
    ("Siberia*", "Siberian tigers counted", "", ["Siberian"]),
    ("gas", "Gazprom results", "", None),
    ("gas", "Natural-gas prices", "", ["gas"]),
    # phrases
    ('"Power of Siberia"', "Power of Siberia deliveries rise", "", ["Power of Siberia"]),
    ('"Power of Siberia"', "Power in Siberia", "", None),
    ('"Power of Siberia 2"', "Power-of-Siberia-2 talks stall", "", ["Power-of-Siberia-2"]),
    ('"Power of Siberia 2"', "Power of Siberia — 2 talks", "", ["Power of Siberia — 2"]),
    ('"Power of Siberia 2"', "Power of Siberia deliveries", "", None),
    ('"joint declaration"', "A joint\ndeclaration was signed", "", ["joint\ndeclaration"]),
    # AND / OR / NOT / implicit AND / parentheses
    ("Xi AND Putin", "Xi and Putin meet", "", ["Xi", "Putin"]),
    ("Xi AND Putin", "Xi meets Biden", "", None),
    ("Xi Putin", "Putin hosts Xi", "", ["Putin", "Xi"]),
    ("Xi OR Putin", "Putin speaks", "", ["Putin"]),
    ("Xi OR Putin", "Macron speaks", "", None),
    ("sanctions NOT Iran", "New sanctions on Chinese banks", "", ["sanctions"]),
    ("sanctions NOT Iran", "New sanctions on Iran oil", "", None),
    ("sanctions AND NOT (Iran OR Venezuela)", "Sanctions hit Venezuela", "", None),
    ("(Xi OR Putin) AND summit", "Putin summit in Kazan", "", ["Putin", "summit"]),
    ("(Xi OR Putin) AND summit", "Modi summit in Delhi", "", None),
    ("NOT Iran AND sanctions", "Sanctions widen", "", ["Sanctions"]),
    ("a1 OR (b2 AND c3)", "b2 and c3", "", ["b2", "c3"]),
    ('lowercase "and" "or" "not"', "lowercase and or not", "", ["lowercase", "and", "or", "not"]),
    # wildcards
    ("sanction*", "Sanctioned firms listed", "", ["Sanctioned"]),
    ("sanction*", "Sanction-busting network", "", ["Sanction"]),
    ("financ*", "Refinancing deal", "", None),
    ('"Сил* Сибири"', "Переговоры о «Силе Сибири — 2»", "", ["Силе Сибири"]),
    ('"Сил* Сибири"', "Сила Сибири", "", ["Сила Сибири"]),
    ("санкци*", "США ввели вторичные санкции", "", ["санкции"]),
    ("санкци*", "Санкциями пригрозили банкам", "", ["Санкциями"]),
    ('"вторичн* санкци*"', "О вторичных санкциях против банков", "", ["вторичных санкциях"]),
    ("Sanktion*", "Sekundärsanktionen gegen China", "", None),
    ("Sekundärsanktion*", "Sekundärsanktionen gegen China", "", ["Sekundärsanktionen"]),
    # NEAR
    ('"Power of Siberia" NEAR/3 financing', "Power of Siberia financing", "", ["Power of Siberia", "financing"]),
    ('"Power of Siberia" NEAR/3 financing', "financing for the Power of Siberia", "", ["financing", "Power of Siberia"]),
    ('"Power of Siberia" NEAR/2 financing', "financing of a new link to the Power of Siberia", "", None),
    ("Gazprom NEAR/5 CNPC", "Gazprom", "talks with CNPC resumed", None),
    ("Gazprom NEAR/0 CNPC", "Gazprom CNPC deal", "", ["Gazprom", "CNPC"]),
    ("Gazprom NEAR/0 CNPC", "Gazprom and CNPC", "", None),
    ("(Gazprom OR Газпром) NEAR/4 (CNPC OR КННК)", "Газпром и КННК договорились", "", ["Газпром", "КННК"]),
    ("a NEAR/1 b NEAR/1 c", "a b c", "", ["a", "b", "c"]),
    # title: scope
    ("title:Putin", "Putin speaks", "", ["Putin"]),
    ("title:Putin", "Kremlin news", "Putin spoke today", None),
    ("title:(Xi OR Putin) AND pipeline", "Xi visits", "pipeline deal near", ["Xi", "pipeline"]),
    ("Putin NOT title:Putin", "Kremlin news", "Putin spoke", ["Putin"]),
    # aliases, nested aliases
    ("@pos2", "Сила Сибири 2: новые сроки", "", ["Сила Сибири 2"]),
    ("@pos2", "Le financement de Force de Siberie 2", "", ["Force de Siberie 2"]),
    ("@pos2", "西伯利亚力量2号管道谈判", "", ["西伯利亚力量2号"]),
    ("@leaders", "Путина встретили в Пекине", "", ["Путина"]),
    ("@leaders NEAR/3 @leaders", "Xi Jinping and Putin", "", ["Xi Jinping", "Putin"]),
    ("@xi", "Си Цзиньпина встретили", "", ["Си Цзиньпина"]),
    # diacritics, ё, full-width, dashes
    ("Sibérie", "La Siberie orientale", "", ["Siberie"]),
    ("Siberie", "Force de Sibérie", "", ["Sibérie"]),
    ("елка", "Ёлка у Кремля", "", ["Ёлка"]),
    ("Xi", "ＸＩ ｍｅｅｔｓ", "", ["ＸＩ"]),
    ('"dual use"', "dual-use goods", "", ["dual-use"]),
    ("dual-use", "dual use goods", "", ["dual use"]),
    ("Zürich", "ZURICH talks", "", ["ZURICH"]),
    ("Gespräch*", "Gespraeche laufen", "", None),
    ("Gespräch*", "Gespräche laufen", "", ["Gespräche"]),
    # CJK by characters
    ("习近平", "习近平与普京举行会谈", "", ["习近平"]),
    ("普京", "习近平与普京举行会谈", "", ["普京"]),
    ('"联合声明"', "中俄发表联合声明", "", ["联合声明"]),
    ("联合声明", "中俄发表联合 声明", "", ["联合 声明"]),
    ("次级制裁", "美国威胁实施次级制裁", "", ["次级制裁"]),
    ("习近平", "习近", "", None),
    ("西伯利亚*", "西伯利亚力量", "", ["西伯利亚"]),
    ("日本", "日本の首相", "", ["日本"]),
    # numbers
    ('"Power of Siberia 2"', "Power of Siberia 22", "", None),
    ("2026", "Summit in 2026", "", ["2026"]),
]


@pytest.mark.parametrize(("query", "title", "body", "expected"), CASES,
                         ids=[f"{i}:{c[0][:30]}" for i, c in enumerate(CASES)])
def test_query_table(query: str, title: str, body: str, expected: list[str] | None) -> None:
    assert run(query, title, body) == expected


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 60


def test_spans_point_into_the_original_text() -> None:
    title = "Financement : la « Force de Sibérie 2 » attend Pékin"
    topic = Topic("t", "T", "@pos2", compile_query("@pos2", ALIASES))
    [m] = Matcher([topic]).match(title, "")
    [hit] = m.hits
    assert (hit.field, hit.start, hit.end) == ("title", 19, 37)
    assert title[hit.start:hit.end] == "Force de Sibérie 2"
    assert hit.term == '"Force de Sibérie 2"'


def test_body_spans_and_terms_order() -> None:
    topic = Topic("t", "T", "Xi OR Putin", compile_query("Xi OR Putin"))
    [m] = Matcher([topic]).match("Putin in Beijing", "Xi greeted him.")
    assert [(h.field, h.start, h.end) for h in m.hits] == [("title", 0, 5), ("body", 0, 2)]
    assert m.terms == ("Putin", "Xi")


# ------------------------------------------------------------ parsing


@pytest.mark.parametrize(("query", "ast"), [
    ("a b", And((Term("a"), Term("b")))),
    ("a OR b c", Or((Term("a"), And((Term("b"), Term("c")))))),
    ("NOT a", Not(Term("a"))),
    ('"x y" NEAR/3 z', Near(Term("x y", True), Term("z"), 3)),
    ("title:(a OR b)", Scope("title", Or((Term("a"), Term("b"))))),
    ("a NEAR/1 b NEAR/2 c", Near(Near(Term("a"), Term("b"), 1), Term("c"), 2)),
])
def test_parse_builds_the_ast(query: str, ast) -> None:
    assert parse(query) == ast
    assert parse(to_text(parse(query))) == ast


@pytest.mark.parametrize(("query", "message", "pos"), [
    ("", "empty query", 0),
    ("(a", "'(' is never closed (add the ')' that ends this group)", 0),
    ("a)", "unbalanced ')'", 1),
    ("()", "empty parentheses", 1),
    ("a OR OR b", "unexpected OR", 5),
    ("a AND", "query ends too early (missing term or ')')", 5),
    ('"unclosed', "unclosed quote", 0),
    ("x*y", "a wildcard * may only end a word", 1),
    ("ab*", "wildcard stem 'ab' is too short (at least 3 letters)", 0),
    ("a NEAR b", "NEAR needs a distance, e.g. NEAR/5", 2),
    ("a NEAR/ b", "NEAR needs a distance, e.g. NEAR/5", 2),
    ("a NEAR/500 b", "NEAR distance 500 is larger than 100", 2),
    ("NEAR/3 b", "NEAR/n needs a term on each side", 0),
    ("title: x", "title: must be followed directly by a term or a group", 0),
    ('"—"', "phrase '—' has no letters or digits", 0),
    ("a NEAR/3 NOT b", "unexpected NOT", 9),
])
def test_syntax_errors_point_at_the_character(query: str, message: str, pos: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(query)
    assert (info.value.message, info.value.pos) == (message, pos)


@pytest.mark.parametrize(("query", "message"), [
    ("NOT Iran", "query can match without any positive term"),
    ("a OR NOT b", "query can match without any positive term"),
    ("@nope", "unknown alias @nope (known: @leaders, @pos2, @xi)"),
    ("@pos3", "unknown alias @pos3 (did you mean @pos2?)"),
    ("(a AND b) NEAR/3 c", "NEAR joins terms, @aliases or (a OR b) groups, not AND/NOT"),
])
def test_compile_errors(query: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        compile_query(query, ALIASES)
    assert info.value.message.startswith(message)


def test_alias_cycle_is_reported() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        compile_query("@a", {"a": ["@b"], "b": ["@a"]})
    assert "alias cycle: @a -> @b -> @a" in info.value.message


# ------------------------------------------------------------ queries that cannot mean something else


@pytest.mark.parametrize(("query", "title", "expected"), [
    ("«Arctic LNG 2»", "Arctic LNG 2 cargo sails", ["Arctic LNG 2"]),
    ("«Arctic LNG 2»", "Arctic news: LNG 2 tankers", None),
    ("“joint statement”", "A joint statement", ["joint statement"]),
    ("„gemeinsame Erklärung“", "Eine gemeinsame Erklärung", ["gemeinsame Erklärung"]),
    ("„gemeinsame Erklärung”", "Eine gemeinsame Erklärung", ["gemeinsame Erklärung"]),
    ("‘dual use’", "dual-use goods", ["dual-use"]),
    ("«Сила Сибири» NEAR/3 рекорд", "Рекорд «Силы Сибири»", None),
    ("l’Iran", "sanctions contre l’Iran", ["l’Iran"]),  # an apostrophe inside a word stays
])
def test_typographic_quotes_are_phrase_quotes(query: str, title: str, expected) -> None:
    assert run(query, title) == expected


@pytest.mark.parametrize(("query", "message", "pos"), [
    ("a NEAR5 b", 'did you mean NEAR/5? (to search for the word, write it in quotes: "NEAR5")',
     2),
    ("a NEAR 5 b", "did you mean NEAR/5? (no space before the distance)", 2),
    ("a near/5 b", 'did you mean NEAR/5? (to search for the word, write it in quotes: "near/5")',
     2),
    ("Iran and Iraq", "'and' is a word here: did you mean the operator AND? (to search for the "
                      'word, write it in quotes: "and")', 5),
    ("gas or oil", "'or' is a word here: did you mean the operator OR? (to search for the word, "
                   'write it in quotes: "or")', 4),
    ("sanctions not Iran", "'not' is a word here: did you mean the operator NOT? (to search for "
                           'the word, write it in quotes: "not")', 10),
    ("(a OR (b c)", "'(' is never closed (add the ')' that ends this group)", 0),
    ("a AND (b OR (c d) e", "'(' is never closed (add the ')' that ends this group)", 6),
    ('"(" OR (b', "'(' is never closed (add the ')' that ends this group)", 7),
    ("a SENT", "query ends too early (missing term or ')')", 6),
    ("PARA b", "PARA needs a term on each side", 0),
    ("a SENT NOT b", "unexpected NOT", 7),
])
def test_operator_typos_are_errors_with_a_suggestion(query: str, message: str, pos: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(query)
    assert (info.value.message, info.value.pos) == (message, pos)


def test_quoted_operator_words_are_searched_for() -> None:
    assert run('"and" "or" "not" "NEAR5"', "and or not NEAR5") == ["and", "or", "not", "NEAR5"]
    assert run("near Moscow", "Near Moscow, a blast") == ["Near", "Moscow"]  # bare near: a word


def test_unknown_aliases_suggest_the_closest() -> None:
    many = {f"group{i}": ["x"] for i in range(40)} | {"leaders": ["Putin"], "leader-zh": ["普京"]}
    with pytest.raises(QuerySyntaxError) as info:
        compile_query("@leader", many)
    assert info.value.message == "unknown alias @leader (did you mean @leaders or @leader-zh?)"
    with pytest.raises(QuerySyntaxError) as info:
        compile_query("@zzz", many)
    assert info.value.message == "unknown alias @zzz (none of the 42 aliases is close)"


def test_sent_joins_only_positional_parts() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        compile_query("(a AND b) SENT c")
    assert info.value.message == "SENT joins terms, @aliases or (a OR b) groups, not AND/NOT"
