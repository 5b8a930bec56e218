"""Property tests: folding is idempotent, printed queries re-parse, the fast path is exact."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.errors import QuerySyntaxError
from bot.match import Matcher
from bot.model import Topic
from bot.query import (Alias, And, Near, Node, Not, Or, Scope, Term, compile_query, parse,
                       to_text)
from bot.text import normalize, tokens, words

# ------------------------------------------------------------ normalisation


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@given(st.text())
def test_tokens_agree_with_words_and_spans_cover_the_text(text: str) -> None:
    toks = tokens(text)
    assert [t.norm for t in toks] == words(text)
    for t in toks:
        assert 0 <= t.start < t.end <= len(text)
        assert normalize(text[t.start:t.end]).replace(" ", "") != ""


# ------------------------------------------------------------ the grammar, generated
#
# Valid queries are built from the grammar in query.py's docstring, so nearly every example
# parses (the few that do not are discarded with `assume`; hypothesis fails the test if that
# happens too often). To cover a new construct, add it to the lists below: a word form to
# WORD_FORMS, a positional operator (like NEAR/n) to POSITIONAL_OPS.

WORDS = ["xi", "putin", "gas", "Ünïcode", "dual-use", "习近平", "сибири", "2", "e.on"]
STEMS = ["sanction*", "сил*", "financ*", "习*"]
WORD_FORMS = [st.sampled_from(WORDS), st.sampled_from(STEMS)]  # e.g. + lemma forms (~word)
QUOTES = [('"', '"'), ("«", "»"), ("“", "”")]
POSITIONAL_OPS = [st.integers(0, 12).map(lambda n: f"NEAR/{n}")]  # e.g. + SENT, PARA


def words_() -> st.SearchStrategy[str]:
    return st.one_of(*WORD_FORMS)


def phrases() -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(QUOTES), st.lists(words_(), min_size=1, max_size=3)).map(
        lambda p: p[0][0] + " ".join(p[1]) + p[0][1])


def terms() -> st.SearchStrategy[str]:
    """term := word | phrase | @alias."""
    return st.one_of(words_(), phrases(), st.just("@al"))


def positional() -> st.SearchStrategy[str]:
    """What NEAR/n may join: terms, @aliases, (a OR b) groups, other positional joins."""
    return st.recursive(terms(), lambda inner: st.one_of(
        st.tuples(inner, st.one_of(*POSITIONAL_OPS), inner).map(lambda p: " ".join(p)),
        st.tuples(inner, inner).map(lambda p: f"({p[0]} OR {p[1]})"),
        inner.map(lambda t: f"title:{t}" if not t.startswith("title:") else t),
    ), max_leaves=4)


def valid_queries() -> st.SearchStrategy[str]:
    """query := or; or := and (OR and)*; and := not (AND? not)*; not := NOT not | near."""
    return st.recursive(positional(), lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: f"({p[0]} AND {p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]} {p[1]})"),  # adjacent: AND
        st.tuples(inner, inner).map(lambda p: f"({p[0]} OR {p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]} NOT {p[1]})"),
        inner.map(lambda t: f"(NOT {t})"),
        inner.map(lambda t: f"title:({t})"),
        inner.map(lambda t: f"  {t}\n"),  # whitespace anywhere between tokens
    ), max_leaves=8)


ALIASES = {"al": ["power of siberia", "сил* сибири", "习近平"]}


def _parses(source: str) -> Node | None:
    try:
        return parse(source)
    except QuerySyntaxError:
        return None


@settings(max_examples=400, deadline=None)
@given(valid_queries())
def test_generated_queries_parse_print_back_and_compile_or_fail_positioned(source: str) -> None:
    ast = _parses(source)
    assume(ast is not None)
    printed = to_text(ast)
    assert parse(printed) == ast  # printing keeps the meaning
    assert to_text(parse(printed)) == printed  # and is stable
    try:
        compiled = compile_query(source, ALIASES)
    except QuerySyntaxError as exc:  # by design, e.g. a query of NOT-terms only
        assert 0 <= exc.pos <= len(source) and exc.message
    else:
        assert compiled is not None


def test_the_generated_queries_mostly_parse() -> None:
    """The strategy is the grammar: at least 95% of its examples parse."""
    results: list[bool] = []

    @settings(max_examples=300, database=None, deadline=None)
    @given(valid_queries())
    def collect(source: str) -> None:
        results.append(_parses(source) is not None)

    collect()
    assert len(results) >= 200 and sum(results) >= 0.95 * len(results)


# ------------------------------------------------------------ invalid input, positioned
#
# Each strategy breaks a valid query in one known place; the error must point inside it.


def broken(defect: st.SearchStrategy[tuple[str, str, str]]) -> st.SearchStrategy[tuple]:
    """(query, start, end) where the defect spans [start, end] of the query."""
    def assemble(parts: tuple[str, str, str]) -> tuple[str, int, int]:
        before, bad, after = parts
        return before + bad + after, len(before), len(before) + len(bad)
    return defect.map(assemble)


def around(bad: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str, str]]:
    """A defect between two valid queries."""
    return st.tuples(valid_queries().map(lambda q: q + " "), bad,
                     valid_queries().map(lambda q: " " + q))


DEFECTS = {
    "lower-case operator": around(st.sampled_from(["and", "or", "not", "And", "Or"])),
    "NEAR without a slash": around(st.sampled_from(["NEAR5", "NEAR 5", "near/3", "NEAR"])),
    "operator at the end": st.tuples(valid_queries(),
                                     st.sampled_from([" AND", " OR", " NOT", " NEAR/2"]),
                                     st.just("")),
    "operator at the start": st.tuples(st.just(""), st.sampled_from(["OR ", "AND "]),
                                       valid_queries()),
    "a group never closed": st.tuples(st.just(""), st.just("("), valid_queries()),
    "a stray ')'": st.tuples(valid_queries(), st.just(")"), st.just("")),
    "a short wildcard": around(st.sampled_from(["ab*", "x*", "sa*nction"])),
    "an empty phrase": around(st.sampled_from(['""', "« »", '"  "'])),
    "title: and a space": around(st.just("title: ")),
}


@settings(max_examples=60, deadline=None)
@pytest.mark.parametrize("defect", sorted(DEFECTS))
@given(data=st.data())
def test_a_broken_query_is_refused_with_the_position_of_the_defect(defect: str,
                                                                   data: st.DataObject) -> None:
    source, start, end = data.draw(broken(DEFECTS[defect]))
    with pytest.raises(QuerySyntaxError) as caught:
        compile_query(source, ALIASES)
    err = caught.value
    assert err.query == source and err.message
    if defect == "a group never closed":  # the error names the '(' that is left open ...
        assert err.pos == start or err.pos == len(source)  # ... or the end it reached
    else:
        assert start <= err.pos <= max(end, start + 1), (err.pos, err.message)


# ------------------------------------------------------------ AC path == naive reference

VOCAB = ["xi", "putin", "gas", "sanctions", "sanctioned", "power", "of", "siberia", "siberian",
         "сила", "сибири", "习", "近", "平", "2"]
def naive_positions(node, title: list[str], body: list[str], scope=None) -> list[tuple]:
    """Occurrences (field, start, end) of a positional node, computed the slow obvious way."""
    if isinstance(node, Term):
        out = []
        for f, toks in (("title", title), ("body", body)):
            if scope and f != scope:
                continue
            for i in range(len(toks)):
                window = toks[i:i + len(node.parts)]
                if len(window) == len(node.parts) and all(
                    tok.startswith(w) if pre else tok == w
                    for tok, (w, pre) in zip(window, node.parts)
                ):
                    out.append((f, i, i + len(node.parts)))
        return out
    if isinstance(node, Alias):
        from bot.query import alias_terms

        return [p for t in alias_terms(node.name, ALIASES)
                for p in naive_positions(t, title, body, scope)]
    if isinstance(node, Scope):
        return naive_positions(node.child, title, body, node.field)
    if isinstance(node, Or):
        return [p for c in node.children for p in naive_positions(c, title, body, scope)]
    if isinstance(node, Near):
        left = naive_positions(node.left, title, body, scope)
        right = naive_positions(node.right, title, body, scope)
        out = []
        for a in left:
            for b in right:
                if a[0] == b[0] and (a[2] <= b[1] or b[2] <= a[1]):
                    gap = b[1] - a[2] if a[2] <= b[1] else a[1] - b[2]
                    if gap <= node.distance:
                        out += [a, b]
        return out
    raise TypeError(node)


def naive_match(node, title: list[str], body: list[str], scope=None) -> bool:
    if isinstance(node, Not):
        return not naive_match(node.child, title, body, scope)
    if isinstance(node, And):
        return all(naive_match(c, title, body, scope) for c in node.children)
    if isinstance(node, Or):
        return any(naive_match(c, title, body, scope) for c in node.children)
    if isinstance(node, Scope):
        return naive_match(node.child, title, body, node.field)
    return bool(naive_positions(node, title, body, scope))


TERMS = st.sampled_from(["xi", "putin", "gas", "sanction*", '"power of siberia"', "siberia",
                         '"сил* сибири"', "习近平", "@al", "2", '"siberia 2"'])


def queries(depth: int = 3):
    leaf = TERMS
    return st.recursive(leaf, lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: f"({p[0]} AND {p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]} OR {p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]} NOT {p[1]})"),
        st.tuples(leaf, leaf, st.integers(0, 4)).map(lambda p: f"({p[0]} NEAR/{p[2]} {p[1]})"),
        leaf.map(lambda t: f"title:{t}"),
    ), max_leaves=6)


texts = st.lists(st.sampled_from(VOCAB + [" ", "-", ", "]), max_size=25).map(
    lambda ws: " ".join(ws))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(queries(), min_size=1, max_size=6), texts, texts)
def test_aho_corasick_path_agrees_with_naive_reference(qs: list[str], title: str,
                                                       body: str) -> None:
    topics = []
    for i, q in enumerate(qs):
        try:
            topics.append(Topic(f"t{i}", "T", q, compile_query(q, ALIASES)))
        except QuerySyntaxError:
            continue  # e.g. only NOT-terms: rejected by design
    assume(topics)
    fast = {m.topic for m in Matcher(topics).match(title, body)}
    tw, bw = words(title), words(body)
    slow = {t.id for t in topics if naive_match(parse(t.query), tw, bw)}
    assert fast == slow


@given(st.text())
def test_spans_agree_with_the_slow_tokeniser(text: str) -> None:
    from bot.text import _slow_tokens, spans

    assert spans(text) == [(t.start, t.end) for t in _slow_tokens(text)]
    assert tokens(text) == _slow_tokens(text)


# ------------------------------------------------------------ the lazy tables and the lists


@contextlib.contextmanager
def text_tables(*, lists: bool) -> Iterator[None]:
    """bot.text with fresh tables: the lazy dicts alone (lists=False) or the BMP lists built."""
    import bot.text as t

    names = ("_TABLE", "_FLAT", "_RESIZED", "_BMP", "_BMP_FLAT", "_lazy_chars", "_LAZY_BUDGET")
    saved = {name: getattr(t, name) for name in names}
    t._TABLE, t._FLAT, t._RESIZED = t._FoldTable(), t._FlatTable(), set()
    t._BMP, t._BMP_FLAT, t._lazy_chars, t._LAZY_BUDGET = [], [], 0, 10**12
    try:
        if lists:
            t.build_tables()
        yield
    finally:
        for name, value in saved.items():
            setattr(t, name, value)


def _every_bmp_character_in_runs() -> list[str]:
    runs = []
    for start in range(0, 0x10000, 61):  # runs of code points, each followed by a letter run
        runs.append("".join(chr(cp) for cp in range(start, min(start + 61, 0x10000))) + " Ab")
    return runs


SAMPLES = [
    "Газопровод «Сила Сибири‑2»: ЁЖ и ёж", "Straße, ÆØÅ, ﬁnancing № 2, ½ Ⅻ", "西伯利亚力量2号管道 ｶﾀｶﾅ",
    "soft\u00adhyphen, zero\u200bwidth, e\u0301clair, İstanbul", "emoji 👍🏽 and 𠀀𠀁 ext-B, 𝐁𝐨𝐥𝐝",
]


def test_the_lazy_tables_fold_and_tokenise_like_the_built_lists() -> None:
    texts = SAMPLES + _every_bmp_character_in_runs()
    results = {}
    for lists in (False, True):
        with text_tables(lists=lists):
            from bot.text import fold, spans

            results[lists] = [(fold(x), tokens(x), spans(x)) for x in texts]
    assert results[False] == results[True]


@given(st.text())
def test_tokens_agree_with_words_with_the_lazy_tables(text: str) -> None:
    from bot.text import _slow_tokens

    with text_tables(lists=False):
        toks = tokens(text)
        assert [t.norm for t in toks] == words(text)
        assert toks == _slow_tokens(text)


def test_the_lists_are_built_after_the_lazy_budget() -> None:
    import bot.text as t

    with text_tables(lists=False):
        t._LAZY_BUDGET = 1000
        t.fold("a" * 999)
        assert not t._BMP and len(t._TABLE) < 10  # only the characters seen
        t.fold("bb")
        assert len(t._BMP) == 0x10000
