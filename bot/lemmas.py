"""Inflected forms of a word, for the query language's `~word` terms (the only simplemma user).

simplemma ships, per language, a dictionary from every inflected form to its lemma (and
keeps its data in the package, so nothing is downloaded). A `~word` term needs the other
direction: every form whose lemma is the word. It is found by one pass over the
dictionaries of the word's script (Cyrillic: ru, uk; Latin: de, fr, es, cs, en), done when
the watchlist is compiled, never while matching; `prepare` batches the words of a whole
watchlist into one pass per language (about 3 s for all seven), and the results are kept
for the process. The matcher then holds only the folded forms (see match.py).
"""

from __future__ import annotations

import re
import threading
from typing import Iterable

from .text import words

LANGUAGES = {"cyrillic": ("ru", "uk"), "latin": ("de", "fr", "es", "cs", "en")}
_FORMS: dict[str, "Lookup"] = {}  # word as written -> what the dictionaries say of it
_LOCK = threading.Lock()
_LEMMA_WORD = re.compile(r"~\*?([^\s\"()“”«»„‘’]+)")


class Lookup:
    """What the dictionaries say of a word: its folded forms, or the lemmas it is a form of."""

    __slots__ = ("forms", "lemma_of")

    def __init__(self) -> None:
        self.forms: set[str] = set()  # folded forms, when the word is a lemma somewhere
        self.lemma_of: set[str] = set()  # lemmas the word is a form of (for a suggestion)


def script(word: str) -> str | None:
    """'cyrillic', 'latin', or None (Chinese and others have no inflection to expand)."""
    letters = [c for c in word if c.isalpha()]
    if letters and all("\u0400" <= c <= "\u04ff" for c in letters):
        return "cyrillic"
    if letters and all(c.isascii() or "\u00c0" <= c <= "\u024f" for c in letters):
        return "latin"
    return None


def words_in(texts: Iterable[str]) -> set[str]:
    """The `~words` written in queries or alias entries."""
    return {m.group(1) for text in texts for m in _LEMMA_WORD.finditer(text)}


def prepare(found: Iterable[str]) -> None:
    """Look every word up in one pass per language (a watchlist's words, before compiling)."""
    with _LOCK:
        todo = {w for w in found if w not in _FORMS and script(w)}
        if not todo:
            return
        for kind, langs in LANGUAGES.items():
            group = {w for w in todo if script(w) == kind}
            if group:
                _scan(group, langs)


def lookup(word: str) -> Lookup:
    """The forms of a word (looked up now if `prepare` has not seen it)."""
    if word not in _FORMS:
        prepare([word])
    return _FORMS.get(word) or Lookup()


def _scan(group: set[str], langs: tuple[str, ...]) -> None:
    """One pass over each dictionary, collecting the forms of every word of the group."""
    from simplemma.strategies.dictionaries import dictionary_factory, frontcode

    # dictionary keys keep their case (German nouns are capitalised): try the usual ones
    spellings = {s.encode(): w for w in group for s in (w, w.lower(), w.capitalize())}
    found = {w: Lookup() for w in group}
    for lang in langs:
        data = dictionary_factory._read_decompressed(lang)
        reverse, _, pos = frontcode._read_header(data)
        for _, key, value in frontcode._iter_records(data, pos):
            owner = spellings.get(value)
            hit_key = spellings.get(key)
            if owner is None and hit_key is None:
                continue
            k = (key[::-1] if reverse else key).decode("utf-8", "replace")
            v = value.decode("utf-8", "replace")
            if owner is not None:
                found[owner].forms.update(w for w in [" ".join(words(k))] if " " not in w and w)
            if hit_key is not None and value != key:
                found[hit_key].lemma_of.add(v)
    for w, entry in found.items():
        if entry.forms:
            entry.forms.update(words(w)[:1])
        _FORMS[w] = entry
