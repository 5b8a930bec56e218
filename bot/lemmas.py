"""Inflected forms of a word, for the query language's `~word` terms (the only simplemma user).

simplemma ships, per language, a dictionary from every inflected form to its lemma (and
keeps its data in the package, so nothing is downloaded). A `~word` term needs the other
direction: every form whose lemma is the word. It is found by one pass over the
dictionaries of the word's script (Cyrillic: ru, uk; Latin: de, fr, es, cs, en), or only
of the languages its letters point to (ы → ru, ї → uk, ř → cs, ß → de, ñ → es, ç → fr),
done when the watchlist is compiled, never while matching; `prepare` batches the words of
a whole watchlist into one pass per language (about 3 s for all seven), and the results
are kept for the process. The matcher then holds only the folded forms (see match.py).
"""

from __future__ import annotations

import re
import threading
from typing import Iterable

from .text import words

LANGUAGES = {"cyrillic": ("ru", "uk"), "latin": ("de", "fr", "es", "cs", "en")}
# letters only one of the script's languages writes: a word with one is looked up there alone
_TELLTALE = {"ы": "ru", "э": "ru", "ъ": "ru", "ё": "ru", "і": "uk", "ї": "uk", "є": "uk",
             "ґ": "uk", "ě": "cs", "ř": "cs", "ů": "cs", "ť": "cs", "ď": "cs", "ň": "cs",
             "ý": "cs", "č": "cs", "š": "cs", "ž": "cs",
             "ä": "de", "ö": "de", "ß": "de", "ñ": "es", "ç": "fr", "è": "fr", "ê": "fr",
             "â": "fr", "î": "fr", "ô": "fr", "û": "fr", "œ": "fr", "ë": "fr"}
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
        for lang in {lang for w in todo for lang in languages(w)}:
            _scan({w for w in todo if lang in languages(w)}, lang)
        for w in todo:
            _FORMS.setdefault(w, Lookup())


def languages(word: str) -> tuple[str, ...]:
    """The dictionaries a word is looked up in: its script's, or the one its letters name."""
    kind = script(word)
    if kind is None:
        return ()
    told = {_TELLTALE[c] for c in word.lower() if c in _TELLTALE}
    return tuple(told) if len(told) == 1 else LANGUAGES[kind]


def lookup(word: str) -> Lookup:
    """The forms of a word (looked up now if `prepare` has not seen it)."""
    if word not in _FORMS:
        prepare([word])
    return _FORMS.get(word) or Lookup()


def _scan(group: set[str], lang: str) -> None:
    """One pass over one dictionary, collecting the forms of every word of the group."""
    from simplemma.strategies.dictionaries import dictionary_factory, frontcode

    # dictionary keys keep their case (German nouns are capitalised): try the usual ones
    spellings = {s.encode(): w for w in group for s in (w, w.lower(), w.capitalize())}
    found = {w: _FORMS.setdefault(w, Lookup()) for w in group}
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
            found[owner].forms.update(words(owner)[:1])
        if hit_key is not None and value != key:
            found[hit_key].lemma_of.add(v)
