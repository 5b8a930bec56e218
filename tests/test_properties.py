"""Property tests: folding is idempotent, printed queries re-parse, the fast path is exact."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.errors import QuerySyntaxError
from bot.match import Matcher
from bot.model import Topic
from bot.query import Alias, And, Near, Not, Or, Scope, Term, compile_query, parse, to_text
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


# ------------------------------------------------------------ round trip

PIECES = ["a", "b", "xi", "putin", "sanction*", '"power of"', '"сил* сибири"', "习近平", "AND",
          "OR", "NOT", "(", ")", "NEAR/2", "title:", "@al", "Ünïcode", "dual-use", '"', "*"]


@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12))
def test_every_accepted_query_round_trips(pieces: list[str]) -> None:
    source = " ".join(pieces).replace("title: ", "title:")
    try:
        ast = parse(source)
    except QuerySyntaxError:
        return
    printed = to_text(ast)
    assert parse(printed) == ast
    assert to_text(parse(printed)) == printed


# ------------------------------------------------------------ AC path == naive reference

VOCAB = ["xi", "putin", "gas", "sanctions", "sanctioned", "power", "of", "siberia", "siberian",
         "сила", "сибири", "习", "近", "平", "2"]
ALIASES = {"al": ["power of siberia", "сил* сибири", "习近平"]}


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
