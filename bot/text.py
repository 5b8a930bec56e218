"""Text normalisation shared by queries and items: one definition, applied per character.

`fold(text)` maps every character on its own (NFKC, casefold, diacritics dropped, ё→е,
dashes and punctuation to spaces, each Chinese/Japanese character set apart as its own
token), so the folded string and `tokens(text)` always agree and every token keeps its
span in the original text. Matching then compares tokens for equality or prefix.

`units(text, lang)` cuts a text into paragraphs (blank lines) and sentences, for the
query language's SENT and PARA scopes.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from typing import NamedTuple

# sentencex (Wikimedia's rule-based splitter): abbreviation lists for every shipped language
# ("U.S.", "Dr.", "г.", "z. B."), Chinese and Japanese full stops, and fast (~10 µs a
# lead); pysbd knows fewer languages and is ten times slower.
import sentencex

# Characters matched one by one (no spaces between words): Han, kana, CJK marks.
_CJK_RANGES = (
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x31F0, 0x31FF),  # katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width katakana (NFKC makes them full-width)
    (0x20000, 0x2FFFF),  # CJK extensions B+
)
_ZERO_WIDTH_SPACE = "\u200b"


def is_cjk(ch: str) -> bool:
    """True for a character matched on its own, without word boundaries."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _step(ch: str) -> str:
    """One round of per-character folding."""
    s = unicodedata.normalize("NFKC", ch).casefold()
    out = []
    for c in unicodedata.normalize("NFD", s):
        cat = unicodedata.category(c)
        if cat[0] == "M" or (cat == "Cf" and c != _ZERO_WIDTH_SPACE):
            continue  # diacritics (so ё→е, é→e) and soft hyphens / joiners vanish
        if is_cjk(c):
            out.append(f" {c} ")
        elif cat[0] in "LN":
            out.append(c)
        else:
            out.append(" ")
    return unicodedata.normalize("NFC", "".join(out))


def _fold_char(ch: str) -> str:
    """Fold one character to a fixed point, so that folding is idempotent."""
    prev, cur = None, _step(ch)
    while prev != cur:  # CJK output is already final; only re-fold the rest
        prev, cur = cur, "".join(c if c == " " or is_cjk(c) else _step(c) for c in cur)
    return cur


class _FoldTable(dict):
    """The fold of each code point, computed on first use."""

    def __missing__(self, cp: int) -> str:
        c = chr(cp)
        value = self[cp] = _fold_char(c)
        if len(value) != 1 and value != f" {c} ":
            _RESIZED.add(c)
        return value


def _unspaced(cp: int, folded: str) -> str:
    """A fold with a CJK character not set apart by spaces (so it keeps the length of one)."""
    return folded[1] if folded == f" {chr(cp)} " else folded


class _FlatTable(dict):
    """The fold of each code point with a CJK character not set apart: length-preserving for
    every character not in _RESIZED."""

    def __missing__(self, cp: int) -> str:
        value = self[cp] = _unspaced(cp, _TABLE[cp])
        return value


_TABLE = _FoldTable()
_FLAT = _FlatTable()
# Characters whose fold is not one character (nor a CJK character set apart by spaces);
# complete for the characters _TABLE has seen.
_RESIZED: set[str] = set()
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")
_BMP: list[str] = []  # the fold of every BMP code point: list lookups are fast in translate
_BMP_FLAT: list[str] = []  # the same with CJK characters not set apart: length-preserving
_CJK_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES)
_WORD_OR_CJK = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")
# Until the BMP lists are built, translate() goes through the lazy dicts: only the characters
# seen are computed and kept (a few thousand; the lists take about 12 MB). A process that
# folds a lot (a parse worker, a backtest) gets the lists: once built explicitly
# (build_tables(), in the parse workers' preload), or after this many characters.
_LAZY_BUDGET = 2_000_000
_lazy_chars = 0


def build_tables() -> list[str]:
    """Fill _BMP and _BMP_FLAT once (about 0.3 s); most characters take a shortcut."""
    if not _BMP:
        table = []
        for cp in range(0x10000):
            c = chr(cp)
            simple = (unicodedata.normalize("NFKD", c) == c and c.casefold() == c
                      and unicodedata.category(c)[0] in "LN")
            if simple:  # already folded; CJK set apart by spaces
                table.append(_TABLE.setdefault(cp, f" {c} " if is_cjk(c) else c))
            else:
                table.append(_TABLE[cp])
        _BMP_FLAT[:] = [_unspaced(cp, c) for cp, c in enumerate(table)]
        _BMP[:] = table
    return _BMP


def _lazy(size: int) -> bool:
    """True while the lazy dicts serve (counting the characters folded through them)."""
    global _lazy_chars
    if _BMP:
        return False
    _lazy_chars += size
    if _lazy_chars > _LAZY_BUDGET:
        build_tables()
        return False
    return True


def fold(text: str) -> str:
    """The folded text: words separated by one or more spaces (not collapsed)."""
    if _lazy(len(text)) or _ASTRAL.search(text):  # the list stops at the BMP
        return text.translate(_TABLE)
    return text.translate(_BMP)


def normalize(text: str) -> str:
    """Folded words joined by single spaces; idempotent."""
    return " ".join(fold(text).split())


def words(text: str) -> list[str]:
    """The folded tokens of text."""
    return fold(text).split()


def _flat(text: str) -> str | None:
    """text with each character folded to one (CJK ones not set apart), so that offsets are
    the original's; None when a character folds to several or to none."""
    if _lazy(len(text)):
        flat = text.translate(_FLAT)  # fills _RESIZED for these characters first
        return flat if _RESIZED.isdisjoint(text) else None
    if _RESIZED.isdisjoint(text) and not _ASTRAL.search(text):
        return text.translate(_BMP_FLAT)
    return None


class Token(NamedTuple):
    """A folded token and its [start, end) span in the original text."""

    norm: str
    start: int
    end: int


def spans(text: str) -> list[tuple[int, int]]:
    """The [start, end) span in text of each token of words(text)."""
    flat = _flat(text)
    if flat is not None:
        return [m.span() for m in _WORD_OR_CJK.finditer(flat)]
    return [(t.start, t.end) for t in _slow_tokens(text)]


def tokens(text: str) -> list[Token]:
    """Folded tokens with spans; `[t.norm for t in tokens(x)] == words(x)` always."""
    flat = _flat(text)
    if flat is not None:
        return [Token(m.group(), *m.span()) for m in _WORD_OR_CJK.finditer(flat)]
    return _slow_tokens(text)


def _slow_tokens(text: str) -> list[Token]:
    """Tokens character by character, for text with characters that fold to several."""
    out: list[Token] = []
    buf: list[str] = []
    start = end = 0
    for i, ch in enumerate(text):
        for c in _TABLE[ord(ch)]:
            if c == " ":
                if buf:
                    out.append(Token("".join(buf), start, end))
                    buf = []
            else:
                if not buf:
                    start = i
                buf.append(c)
                end = i + 1
    if buf:
        out.append(Token("".join(buf), start, end))
    return out


# ---------------------------------------------------------------- sentences and paragraphs

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")  # a blank line (block breaks become these)
_INITIAL_END = re.compile(r"(?:^|[\s.(\-])\w\.\s*$")  # "M. ", "V. ", "É.-U.": an initial
_SPLITTER_LANGS = ("en", "fr", "de", "es", "ru", "uk", "cs", "zh", "ja", "it", "pt", "pl")


def _splitter_lang(lang: str | None, text: str) -> str:
    """The language whose abbreviations apply: the item's, else guessed from its script."""
    code = (lang or "").split("-")[0].lower()
    if code in _SPLITTER_LANGS:
        return code
    if any("\u0400" <= c <= "\u04ff" for c in text[:200]):
        return "ru"
    return "zh" if any(is_cjk(c) for c in text[:200]) else "en"


def sentence_starts(text: str, lang: str | None = None) -> list[int]:
    """Character offsets where the sentences of one paragraph start (the first is 0)."""
    starts, pos = [0], 0
    pieces = [p for p in sentencex.segment(_splitter_lang(lang, text), text) if p.strip()]
    for prev, piece in zip(pieces, pieces[1:]):
        found = text.find(piece, pos + len(prev) - 1 if prev else pos)
        pos = found if found >= 0 else pos + len(prev)
        if _INITIAL_END.search(prev):
            continue  # a one-letter initial ("M. Poutine") ends no sentence
        starts.append(pos)
    return starts


class Units(NamedTuple):
    """Sentence and paragraph starts of a text, as character offsets (both begin with 0)."""

    sentences: list[int]
    paragraphs: list[int]

    def sentence_of(self, offset: int) -> int:
        return bisect_right(self.sentences, offset) - 1

    def paragraph_of(self, offset: int) -> int:
        return bisect_right(self.paragraphs, offset) - 1


def units(text: str, lang: str | None = None) -> Units:
    """Paragraphs (split at blank lines) and the sentences inside each."""
    paragraphs, sentences = [0], []
    for m in _PARAGRAPH_BREAK.finditer(text):
        if m.end() < len(text):
            paragraphs.append(m.end())
    for start, end in zip(paragraphs, paragraphs[1:] + [len(text)]):
        sentences += [start + s for s in sentence_starts(text[start:end], lang)]
    return Units(sentences, paragraphs)
