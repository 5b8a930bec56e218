"""Text normalisation shared by queries and items: one definition, applied per character.

`fold(text)` maps every character on its own (NFKC, casefold, diacritics dropped, ё→е,
dashes and punctuation to spaces, each Chinese/Japanese character set apart as its own
token), so the folded string and `tokens(text)` always agree and every token keeps its
span in the original text. Matching then compares tokens for equality or prefix.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

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
    """str.translate table filled lazily: each code point folded once per process."""

    def __missing__(self, cp: int) -> str:
        value = _fold_char(chr(cp))
        self[cp] = value
        return value


_TABLE = _FoldTable()


def fold(text: str) -> str:
    """The folded text: words separated by one or more spaces (not collapsed)."""
    return text.translate(_TABLE)


def normalize(text: str) -> str:
    """Folded words joined by single spaces; idempotent."""
    return " ".join(text.translate(_TABLE).split())


def words(text: str) -> list[str]:
    """The folded tokens of text."""
    return text.translate(_TABLE).split()


class Token(NamedTuple):
    """A folded token and its [start, end) span in the original text."""

    norm: str
    start: int
    end: int


def tokens(text: str) -> list[Token]:
    """Folded tokens with spans; `[t.norm for t in tokens(x)] == words(x)` always."""
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
