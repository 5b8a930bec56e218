"""The topic query language: parse to an AST, print it back, evaluate it over tokens.

    query   := or
    or      := and ("OR" and)*
    and     := not ("AND"? not)*            adjacent terms mean AND
    not     := "NOT" not | near
    near    := scoped (op scoped)*           left to right; op is one of:
                 NEAR/n                      either order, at most n words between
                 SENT                        both in one sentence (the title is its own)
                 PARA                        both in one paragraph (the title is its own)
    scoped  := "title:" atom | atom
    atom    := "(" query ")" | phrase | word | @alias
    phrase  := "…" | “…” | «…» | „…“ | „…” | ‘…’      (typographic quotes are quotes too)
    word    := text | text* | ~text | ~*text  (inside a phrase as well, per word)

A trailing `*` matches any continuation of a word (at least 3 letters before it). `~word`
matches every inflected form of a dictionary word in Russian, Ukrainian, German, French,
Spanish, Czech and English (bot/lemmas.py); `~*word` also matches it as the last part of
a compound (Sekundärsanktionen for ~*Sanktion, at least 3 letters before it).

Operators are upper case. A bare `and`/`or`/`not` in any other case, `NEAR5`, `NEAR 5`
and `near/5` are errors with a did-you-mean: an operator who means the word writes it in
quotes (`"and"`). NEAR, SENT and PARA join terms, @aliases, (a OR b) groups or each
other, never AND/NOT. Parsed with lark (LALR, exact error positions); no user text ever
becomes a regular expression, so no ReDoS.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Container, Mapping, Protocol, Sequence, Union

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import lemmas
from .errors import QuerySyntaxError
from .text import is_cjk, words

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND? not_expr)*
?not_expr: _NOT not_expr -> not_
         | near_expr
?near_expr: scoped ((NEAR | SENT | PARA) scoped)*
?scoped: TITLE atom -> scope
       | atom
?atom: _LPAR or_expr _RPAR
     | PHRASE -> phrase
     | ALIAS -> alias
     | WORD -> word

_OR: "OR"
_AND: "AND"
_NOT: "NOT"
_LPAR: "("
_RPAR: ")"
NEAR.3: /NEAR\/[0-9]+(?![^\s"()])/
SENT.3: /SENT(?![^\s"()])/
PARA.3: /PARA(?![^\s"()])/
TITLE.3: /title:(?=[^\s)])/
PHRASE.2: /"[^"]*"|“[^“”]*”|«[^«»]*»|„[^„“”]*[“”]|‘[^‘’]*’/
ALIAS: /@[A-Za-z0-9_][A-Za-z0-9_.-]*/
WORD: /[^\s"()@“«„‘][^\s"()]*/
%import common.WS
%ignore WS
"""

MAX_NEAR = 100
MIN_STEM = 3  # letters before a trailing * (CJK: 1)


# ---------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Term:
    """A word or a quoted phrase; `parts` are folded words, each (text, is_prefix)."""

    raw: str
    quoted: bool = False
    parts: tuple[tuple[str, bool], ...] = field(default=(), compare=False, hash=False)

    def __str__(self) -> str:
        return f'"{self.raw}"' if self.quoted else self.raw


@dataclass(frozen=True, slots=True)
class Alias:
    name: str

    def __str__(self) -> str:
        return f"@{self.name}"


@dataclass(frozen=True, slots=True)
class Not:
    child: "Node"


@dataclass(frozen=True, slots=True)
class And:
    children: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Near:
    left: "Node"
    right: "Node"
    distance: int


@dataclass(frozen=True, slots=True)
class Within:
    """Both sides in one sentence (unit "SENT") or one paragraph ("PARA")."""

    left: "Node"
    right: "Node"
    unit: str


@dataclass(frozen=True, slots=True)
class Scope:
    field: str  # "title"
    child: "Node"


Node = Union[Term, Alias, Not, And, Or, Near, Within, Scope]


def to_text(node: Node) -> str:
    """Print a node so that parse(to_text(n)) == n."""
    if isinstance(node, (Term, Alias)):
        return str(node)
    if isinstance(node, Not):
        return f"NOT {_wrap(node.child)}"
    if isinstance(node, And):
        return " AND ".join(_wrap(c) for c in node.children)
    if isinstance(node, Or):
        return " OR ".join(_wrap(c) for c in node.children)
    if isinstance(node, Near):
        return f"{_wrap(node.left)} NEAR/{node.distance} {_wrap(node.right)}"
    if isinstance(node, Within):
        return f"{_wrap(node.left)} {node.unit} {_wrap(node.right)}"
    if isinstance(node, Scope):
        return f"{node.field}:{_wrap(node.child)}"
    raise TypeError(node)


def _wrap(node: Node) -> str:
    return to_text(node) if isinstance(node, (Term, Alias)) else f"({to_text(node)})"


# ---------------------------------------------------------------- parsing


LEMMA, COMPOUND = "~", "~*"  # part kinds beside False (exact) and True (trailing *)


def make_term(raw: str, quoted: bool, pos: int = 0, query: str = "") -> Term:
    """Fold a word or phrase into parts, rejecting wildcards other than a trailing *.

    A part is (folded word, kind): kind False matches the word, True any continuation of
    it, LEMMA its inflected forms, COMPOUND those forms also as a compound's last part.
    """
    parts: list[tuple[str, bool | str]] = []
    for chunk in raw.split():
        if chunk.startswith("~"):
            parts.append(_lemma_part(chunk, pos + raw.find(chunk) + (1 if quoted else 0),
                                     query or raw))
            continue
        prefix = chunk.endswith("*")
        stem = chunk[:-1] if prefix else chunk
        if "*" in stem:
            at = pos + raw.find("*") + (1 if quoted else 0)
            raise QuerySyntaxError("a wildcard * may only end a word", query or raw, at)
        folded = words(stem)
        if prefix:
            if not folded:
                raise QuerySyntaxError("a wildcard needs letters before it", query or raw, pos)
            stem_word = folded[-1]
            if len(stem_word) < MIN_STEM and not is_cjk(stem_word[-1]):
                raise QuerySyntaxError(
                    f"wildcard stem {stem_word!r} is too short (at least {MIN_STEM} letters)",
                    query or raw, pos)
            parts += [(w, False) for w in folded[:-1]] + [(stem_word, True)]
        else:
            parts += [(w, False) for w in folded]
    if not parts:
        what = "phrase" if quoted else "term"
        raise QuerySyntaxError(f"{what} {raw!r} has no letters or digits", query or raw, pos)
    return Term(raw, quoted, tuple(parts))


def _lemma_part(chunk: str, at: int, query: str) -> tuple[str, str]:
    """(folded word, LEMMA or COMPOUND) for `~word` / `~*word`."""
    kind = COMPOUND if chunk.startswith("~*") else LEMMA
    word = chunk[len(kind):]
    folded = words(word)
    if any(is_cjk(c) for c in word) or (folded and lemmas.script(word) is None):
        raise QuerySyntaxError(f"{chunk!r}: ~ works for words in Latin or Cyrillic letters "
                               "(Chinese has no inflection to expand)", query, at)
    if "*" in word or "~" in word or len(folded) != 1:
        raise QuerySyntaxError(f"{chunk!r}: ~ takes one dictionary word, e.g. ~встреча "
                               "(no * after it, no dash or space inside)", query, at)
    return folded[0], kind


class _Build(Transformer):
    def __init__(self, query: str) -> None:
        super().__init__()
        self.query = query

    def word(self, items: list[Token]) -> Term:
        tok = items[0]
        _operator_typo(str(tok), tok.start_pos, self.query)
        if str(tok) == "NEAR" or str(tok).startswith("NEAR/"):
            raise QuerySyntaxError("NEAR needs a distance, e.g. NEAR/5", self.query, tok.start_pos)
        if str(tok).lower() == "title:":
            raise QuerySyntaxError("title: must be followed directly by a term or a group",
                                   self.query, tok.start_pos)
        return make_term(str(tok), False, tok.start_pos, self.query)

    def phrase(self, items: list[Token]) -> Term:
        tok = items[0]
        return make_term(str(tok)[1:-1], True, tok.start_pos, self.query)

    def alias(self, items: list[Token]) -> Alias:
        return Alias(str(items[0])[1:])

    def not_(self, items: list[Node]) -> Not:
        return Not(items[0])

    def and_expr(self, items: list[Node]) -> And:
        return And(tuple(items))

    def or_expr(self, items: list[Node]) -> Or:
        return Or(tuple(items))

    def scope(self, items: list) -> Scope:
        return Scope(str(items[0])[:-1], items[1])

    def near_expr(self, items: list) -> Near | Within:
        node = items[0]
        for op, right in zip(items[1::2], items[2::2]):
            if op.type in ("SENT", "PARA"):
                node = Within(node, right, op.type)
                continue
            n = int(str(op).split("/")[1])
            if n > MAX_NEAR:
                raise QuerySyntaxError(f"NEAR distance {n} is larger than {MAX_NEAR}",
                                       self.query, op.start_pos)
            node = Near(node, right, n)
        return node


_NEAR_TYPO = re.compile(r"near/?(\d+)", re.IGNORECASE)
_BOOLEANS = ("and", "or", "not")


def _operator_typo(text: str, pos: int, query: str) -> None:
    """Refuse a word that is an operator mistyped: it would silently be searched for."""
    quoted = f'"{text}"'
    if text.lower() in _BOOLEANS:
        raise QuerySyntaxError(
            f"{text!r} is a word here: did you mean the operator {text.upper()}? "
            f"(to search for the word, write it in quotes: {quoted})", query, pos)
    typo = _NEAR_TYPO.fullmatch(text)
    if typo:
        raise QuerySyntaxError(f"did you mean NEAR/{typo.group(1)}? (to search for the word, "
                               f"write it in quotes: {quoted})", query, pos)
    following = re.match(r"\s+(\d+)(?![^\s\"()])", query[pos + len(text):])
    if text == "NEAR" and following:
        raise QuerySyntaxError(f"did you mean NEAR/{following.group(1)}? (no space before "
                               "the distance)", query, pos)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="basic", maybe_placeholders=False)


_TOKEN_NAMES = {
    "_OR": "OR", "_AND": "AND", "_NOT": "NOT", "_RPAR": "')'", "_LPAR": "'('",
    "NEAR": "NEAR/n", "SENT": "SENT", "PARA": "PARA", "TITLE": "title:", "$END": "end of query",
}


def parse(query: str) -> Node:
    """Parse a query into its AST or raise QuerySyntaxError pointing at the character."""
    if not query.strip():
        raise QuerySyntaxError("empty query", query, 0)
    try:
        tree = _parser().parse(query)
        return _Build(query).transform(tree)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, query) from None
    except Exception as exc:  # lark wraps transformer errors in VisitError
        inner = getattr(exc, "orig_exc", None)
        if isinstance(inner, QuerySyntaxError):
            raise inner from None
        raise


def _syntax_error(exc: UnexpectedInput, query: str) -> QuerySyntaxError:
    if isinstance(exc, UnexpectedCharacters):
        ch = query[exc.pos_in_stream]
        msg = "unclosed quote" if ch == '"' else f"unexpected character {ch!r}"
        return QuerySyntaxError(msg, query, exc.pos_in_stream)
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        left_open = _unclosed_paren(query)
        if left_open is not None:
            return QuerySyntaxError("'(' is never closed (add the ')' that ends this group)",
                                    query, left_open)
        return QuerySyntaxError("query ends too early (missing term or ')')", query, len(query))
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    if tok.type in ("NEAR", "SENT", "PARA"):
        msg = f"{_TOKEN_NAMES[tok.type]} needs a term on each side"
    elif tok.type == "_RPAR":
        before = query[: tok.start_pos].rstrip()
        msg = "empty parentheses" if before.endswith("(") else "unbalanced ')'"
    else:
        shown = _TOKEN_NAMES.get(tok.type, repr(str(tok)))
        msg = f"unexpected {shown}"
    return QuerySyntaxError(msg, query, tok.start_pos)


def _unclosed_paren(query: str) -> int | None:
    """The offset of the innermost '(' that no ')' closes, quotes respected."""
    stack: list[int] = []
    try:
        for tok in _parser().lex(query):
            if tok.type == "_LPAR":
                stack.append(tok.start_pos)
            elif tok.type == "_RPAR" and stack:
                stack.pop()
    except UnexpectedInput:
        return None
    return stack[-1] if stack else None


def alias_hint(name: str, known) -> str:
    """The closest alias names to a mistyped one, as a short hint."""
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join("@" + c for c in close) + "?"
    if not known:
        return "no alias is defined"
    if len(known) <= 8:
        return "known: " + ", ".join("@" + a for a in sorted(known))
    return f"none of the {len(known)} aliases is close"


# ---------------------------------------------------------------- compilation


@dataclass(frozen=True, slots=True)
class CTerm:
    """A compiled term: folded parts plus the field it is limited to (None: any).

    forms: per part, the folded inflected forms of a ~word part (None for other parts).
    """

    parts: tuple[tuple[str, bool | str], ...]
    label: str
    scope: str | None = None
    forms: tuple[frozenset[str] | None, ...] = field(default=(), compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A query with aliases resolved: a tree over term indices, and the terms."""

    source: str
    tree: tuple  # ("t", i) | ("not", x) | ("and", xs) | ("or", xs) | ("near", a, b, n)
    #              | ("sent", a, b) | ("para", a, b)
    terms: tuple[CTerm, ...]


def alias_terms(name: str, aliases: Mapping[str, Sequence[str]],
                _stack: tuple[str, ...] = ()) -> list[Term]:
    """The terms an alias stands for, following @references; raises KeyError/ValueError."""
    if name in _stack:
        raise ValueError("alias cycle: " + " -> ".join("@" + n for n in (*_stack, name)))
    if name not in aliases:
        raise KeyError(name)
    out: list[Term] = []
    for entry in aliases[name]:
        entry = entry.strip()
        if entry.startswith("@"):
            out += alias_terms(entry[1:], aliases, (*_stack, name))
        else:
            out.append(make_term(entry, True))
    return out


def compile_query(source: str, aliases: Mapping[str, Sequence[str]] | None = None) -> Compiled:
    """Parse and compile; raises QuerySyntaxError for syntax, alias and structure problems."""
    node = parse(source)
    lemmas.prepare(lemmas.words_in([source, *(e for group in (aliases or {}).values()
                                              for e in group)]))
    terms: dict[CTerm, int] = {}
    tree = _compile(node, aliases or {}, terms, None, source)
    if not _anchored(tree):
        raise QuerySyntaxError(
            "query can match without any positive term (it only excludes); add a term to find",
            source, 0)
    return Compiled(source, tree, tuple(terms))


def compiled_term(term: Term, scope: str | None = None) -> CTerm:
    """A term with the forms of its ~words looked up; raises ValueError for an unknown word."""
    if not any(kind in (LEMMA, COMPOUND) for _, kind in term.parts):
        return CTerm(term.parts, str(term), scope)
    written = iter(c.lstrip("~*") for c in term.raw.split() if c.startswith("~"))
    forms = []
    for folded, kind in term.parts:
        if kind not in (LEMMA, COMPOUND):
            forms.append(None)
            continue
        word = next(written)
        found = lemmas.lookup(word)
        if not found.forms:
            langs = "/".join(lemmas.LANGUAGES[lemmas.script(word) or "latin"])
            if found.lemma_of:
                hint = " or ".join("~" + w for w in sorted(found.lemma_of)[:3])
                raise ValueError(f"~{word} is an inflected form, not a dictionary word: "
                                 f"did you mean {hint}?")
            raise ValueError(f"~{word} is not in the {langs} dictionaries; write {word}* or "
                             "list its forms")
        forms.append(frozenset(found.forms))
    return CTerm(term.parts, str(term), scope, tuple(forms))


def _compile(node: Node, aliases, terms: dict, scope: str | None, src: str) -> tuple:
    if isinstance(node, Term):
        try:
            cterm = compiled_term(node, scope)
        except ValueError as exc:
            raise QuerySyntaxError(str(exc), src, max(src.find(node.raw), 0)) from None
        return ("t", terms.setdefault(cterm, len(terms)))
    if isinstance(node, Alias):
        at = max(src.find("@" + node.name), 0)
        try:
            group = alias_terms(node.name, aliases)
            cterms = [compiled_term(t, scope) for t in group]
        except KeyError as exc:
            raise QuerySyntaxError(f"unknown alias @{exc.args[0]} "
                                   f"({alias_hint(exc.args[0], aliases)})", src, at) from None
        except (ValueError, QuerySyntaxError) as exc:
            raise QuerySyntaxError(f"alias @{node.name}: {exc}", src, at) from None
        kids = [("t", terms.setdefault(t, len(terms))) for t in cterms]
        return kids[0] if len(kids) == 1 else ("or", tuple(kids))
    if isinstance(node, Scope):
        return _compile(node.child, aliases, terms, node.field, src)
    if isinstance(node, Not):
        return ("not", _compile(node.child, aliases, terms, scope, src))
    if isinstance(node, (And, Or)):
        op = "and" if isinstance(node, And) else "or"
        return (op, tuple(_compile(c, aliases, terms, scope, src) for c in node.children))
    if isinstance(node, Near):
        left = _compile(node.left, aliases, terms, scope, src)
        right = _compile(node.right, aliases, terms, scope, src)
        for side in (left, right):
            if not _positional(side):
                raise QuerySyntaxError(
                    "NEAR joins terms, @aliases or (a OR b) groups, not AND/NOT",
                    src, max(src.find("NEAR/"), 0))
        return ("near", left, right, node.distance)
    if isinstance(node, Within):
        left = _compile(node.left, aliases, terms, scope, src)
        right = _compile(node.right, aliases, terms, scope, src)
        for side in (left, right):
            if not _positional(side):
                raise QuerySyntaxError(
                    f"{node.unit} joins terms, @aliases or (a OR b) groups, not AND/NOT",
                    src, max(src.find(node.unit), 0))
        return (node.unit.lower(), left, right)
    raise TypeError(node)


_PAIRS = ("near", "sent", "para")


def _positional(tree: tuple) -> bool:
    if tree[0] == "t":
        return True
    if tree[0] == "or":
        return all(_positional(c) for c in tree[1])
    return tree[0] in _PAIRS


def _anchored(tree: tuple) -> bool:
    """True when every way to satisfy the tree needs some positive term to occur."""
    kind = tree[0]
    if kind == "t" or kind in _PAIRS:
        return True
    if kind == "not":
        return False
    if kind == "and":
        return any(_anchored(c) for c in tree[1])
    return all(_anchored(c) for c in tree[1])


def anchor_terms(tree: tuple, terms: Sequence[CTerm]) -> frozenset[int]:
    """Terms one of which every match contains: an AND needs only its most selective child.

    A topic whose anchors do not occur cannot match, so only anchors need to trigger an
    evaluation; choosing rare ones (phrases over common single words) keeps evaluations few.
    """
    kind = tree[0]
    if kind == "t":
        return frozenset((tree[1],))
    if kind == "or":
        return frozenset().union(*(anchor_terms(c, terms) for c in tree[1]))
    if kind in _PAIRS:
        sides = (anchor_terms(tree[1], terms), anchor_terms(tree[2], terms))
        return min(sides, key=lambda a: _cost(a, terms))
    if kind == "and":
        options = [anchor_terms(c, terms) for c in tree[1] if _anchored(c)]
        return min(options, key=lambda a: _cost(a, terms))
    raise ValueError("a NOT has no anchors")  # compile_query rejects unanchored queries


def _cost(anchors: frozenset[int], terms: Sequence[CTerm]) -> float:
    """How often the anchors may occur: common single words cost most, long phrases least."""
    total = 0.0
    for i in anchors:
        parts = terms[i].parts
        letters = sum(len(w) for w, _ in parts)
        total += 1.0 / len(parts) ** 2 * (4.0 if any(p for _, p in parts) else 1.0) * max(
            1.0, 12.0 - letters)
    return total


# ---------------------------------------------------------------- evaluation

FIELDS = ("title", "body")
Occ = tuple[int, int, int, int]  # (field index, first token, end token, term index)


class TermFinder(Protocol):
    """A document as evaluate sees it: where each term occurs, as (field, start, end), and
    which sentence ("sent") or paragraph ("para") a token of a field belongs to."""

    def find(self, term: CTerm) -> list[tuple[int, int, int]]: ...

    def unit(self, field: int, token: int, kind: str) -> int: ...


def evaluate(q: Compiled, doc: TermFinder, present: Container[int] | None = None,
             tree: tuple | None = None) -> tuple[bool, list[Occ]]:
    """Whether the query matches, and the occurrences of the terms that made it match.

    present: the indices of the terms that may occur (a superset), when the caller knows;
    the others are taken as absent without asking doc (a big alias group costs nothing).
    tree: a part of q.tree to evaluate instead (the branches whose anchors occurred).
    """
    return _eval(q.tree if tree is None else tree, q.terms, doc, present)


def branches(q: Compiled) -> list[tuple[tuple, frozenset[int]]]:
    """The alternatives of the query's top-level OR, each with its anchor terms."""
    alternatives = q.tree[1] if q.tree[0] == "or" else (q.tree,)
    return [(b, anchor_terms(b, q.terms)) for b in alternatives]


def _eval(tree: tuple, terms: tuple[CTerm, ...], doc: TermFinder,
          present: Container[int] | None) -> tuple[bool, list[Occ]]:
    kind = tree[0]
    if kind == "t":
        if present is not None and tree[1] not in present:
            return False, []
        occ = [(f, s, e, tree[1]) for f, s, e in doc.find(terms[tree[1]])]
        return bool(occ), occ
    if kind == "not":
        ok, _ = _eval(tree[1], terms, doc, present)
        return not ok, []
    if kind == "and":
        out: list[Occ] = []
        for child in tree[1]:
            ok, occ = _eval(child, terms, doc, present)
            if not ok:
                return False, []
            out += occ
        return True, out
    if kind == "or":
        out = []
        any_ok = False
        for child in tree[1]:
            if present is not None and child[0] == "t" and child[1] not in present:
                continue  # the common case, inlined: an absent alternative of an alias group
            ok, occ = _eval(child, terms, doc, present)
            any_ok |= ok
            out += occ
        return any_ok, out
    return _near(tree, terms, doc, present)


def _near(tree: tuple, terms: tuple[CTerm, ...], doc: TermFinder,
          present: Container[int] | None) -> tuple[bool, list[Occ]]:
    kind, left, right = tree[0], tree[1], tree[2]
    n = tree[3] if kind == "near" else 0
    ok_l, occ_l = _eval(left, terms, doc, present)
    if not ok_l:
        return False, []
    ok_r, occ_r = _eval(right, terms, doc, present)
    if not ok_r:
        return False, []
    used: dict[Occ, None] = {}
    for a in occ_l:
        for b in occ_r:
            if a[0] != b[0] or (gap := _gap(a, b)) is None:
                continue
            if gap <= n if kind == "near" else _one_unit(doc, kind, a, b):
                used.setdefault(a, None)
                used.setdefault(b, None)
    return bool(used), list(used)


def _one_unit(doc: TermFinder, kind: str, a: Occ, b: Occ) -> bool:
    """Both occurrences (each from its first to its last token) in one sentence/paragraph."""
    first = doc.unit(a[0], a[1], kind)
    return all(doc.unit(a[0], t, kind) == first for t in (a[2] - 1, b[1], b[2] - 1))


def _gap(a: Occ, b: Occ) -> int | None:
    """Words strictly between two occurrences in one field; None when they overlap."""
    if a[2] <= b[1]:
        return b[1] - a[2]
    if b[2] <= a[1]:
        return a[1] - b[2]
    return None
