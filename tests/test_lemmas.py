"""~word terms: every inflected form, per language, found through the one-pass prefilter."""

from __future__ import annotations

import pickle

import pytest

from bot import lemmas
from bot.errors import QuerySyntaxError
from bot.match import Matcher
from bot.model import Topic
from bot.query import compile_query

# (term, forms it must match, words it must not match) — inflection tables by language
TABLES = [
    ("ru", "~встреча", ["встреча", "встречи", "встрече", "встречу", "встречей", "встречам",
                        "встречами", "встречах"], ["встречный", "встретить"]),
    ("ru", "~санкция", ["санкция", "санкции", "санкцию", "санкцией", "санкций", "санкциям",
                        "санкциями", "санкциях"], ["санкционный"]),
    ("uk", "~зустріч", ["зустріч", "зустрічі", "зустріччю", "зустрічей", "зустрічам",
                        "зустрічами", "зустрічах"], ["зустрічний"]),
    ("de", "~Gipfel", ["Gipfel", "Gipfels", "Gipfeln"], ["Gipfeltreffen"]),
    ("de", "~treffen", ["treffen", "trifft", "traf", "trafen", "getroffen"], ["Treffpunkt"]),
    ("fr", "~rencontrer", ["rencontrer", "rencontre", "rencontrent", "rencontrera",
                           "rencontraient", "rencontrons"], ["rencontreur"]),
    ("es", "~reunión", ["reunión", "reuniones", "reunion"], ["reunir"]),
    ("es", "~sancionar", ["sancionar", "sanciona", "sancionó", "sancionaron", "sancionará"],
     ["sanción"]),
    ("cs", "~sankce", ["sankce", "sankcí", "sankcím", "sankcemi", "sankcích"], ["sankční"]),
    ("cs", "~schůzka", ["schůzka", "schůzky", "schůzce", "schůzku", "schůzek"],
     ["schůze"]),
]


@pytest.fixture(autouse=True, scope="module")
def _looked_up_once() -> None:
    """One pass over the dictionaries for every word below, as a watchlist load does."""
    lemmas.prepare(lemmas.words_in([t[1] for t in TABLES] + [
        "~Sanktion ~Gipfel ~совместный ~заявление ~treffen ~встреча ~sanction ~qzxwv"]))


def matches(query: str, text: str) -> bool:
    return bool(Matcher([Topic("t", "T", query, compile_query(query))]).match(text, ""))


@pytest.mark.parametrize(("lang", "term", "forms", "others"), TABLES,
                         ids=[f"{t[0]}:{t[1]}" for t in TABLES])
def test_a_lemma_term_matches_its_inflection_table(lang, term, forms, others) -> None:
    for form in forms:
        assert matches(term, f"— {form} —"), (term, form)
        assert matches(term, form.upper()), (term, form.upper())
    for other in others:
        assert not matches(term, f"— {other} —"), (term, other)


def test_compound_heads_need_the_tilde_star() -> None:
    assert matches("~*Sanktion", "Neue Sekundärsanktionen gegen Banken")
    assert matches("~*Sanktion", "Die Finanzsanktion gilt ab Montag")
    assert matches("~*Sanktion", "Sanktionen")
    assert not matches("~Sanktion", "Neue Sekundärsanktionen gegen Banken")
    assert not matches("~*Sanktion", "Sanktionspaket")  # a modifier, not the head: Sanktion*
    assert not matches("~*Gipfel", "Ogipfel")  # at least three letters before the head


def test_lemma_parts_inside_a_phrase() -> None:
    assert matches('"~совместный ~заявление"', "в совместном заявлении сказано")
    assert matches('"~совместный ~заявление"', "Совместное заявление подписано")
    assert not matches('"~совместный ~заявление"', "заявление совместное")
    assert matches('"Xi ~treffen"', "Xi trifft Putin")


def test_a_lemma_term_triggers_its_topic_among_many() -> None:
    """The prefilter stays valid: only the forms are in the automaton, and they trigger."""
    topics = [Topic(f"t{i}", "T", f"word{i}", compile_query(f"word{i}")) for i in range(50)]
    q = "~встреча AND Путин*"
    topics.append(Topic("lemma", "L", q, compile_query(q)))
    matcher = Matcher(topics)
    assert [m.topic for m in matcher.match("Встречу Путина отложили", "")] == ["lemma"]
    assert matcher.match("Встречный поезд, Путин", "") == []
    again = pickle.loads(pickle.dumps(matcher))  # workers receive the matcher as a pickle
    assert [m.topic for m in again.match("Путин: встречи не будет", "")] == ["lemma"]


@pytest.mark.parametrize(("query", "message"), [
    ("~встречи", "~встречи is an inflected form, not a dictionary word: did you mean ~встреча?"),
    ("~qzxwv", "~qzxwv is not in the de/fr/es/cs/en dictionaries; write qzxwv* or list its forms"),
    ("~sankce*", "'~sankce*': ~ takes one dictionary word"),
    ("~习近平", "'~习近平': ~ works for words in Latin or Cyrillic letters"),
    ("~dual-use", "'~dual-use': ~ takes one dictionary word"),
])
def test_lemma_errors_say_what_to_write(query: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        compile_query(query)
    assert info.value.message.startswith(message)
    assert info.value.pos == 0


def test_simplemma_still_has_the_front_code_reader() -> None:
    """lemmas.py reads simplemma's dictionaries through these; pyproject pins the version."""
    from simplemma.strategies.dictionaries import dictionary_factory, frontcode

    data = dictionary_factory._read_decompressed("fr")
    _, count, pos = frontcode._read_header(data)
    first = next(frontcode._iter_records(data, pos))
    assert count > 100_000 and isinstance(first[1], bytes) and isinstance(first[2], bytes)
    assert lemmas.lookup("sanction").forms >= {"sanction", "sanctions"}


@pytest.mark.parametrize(("word", "langs"), [
    ("новый", ("ru",)), ("зустріч", ("uk",)), ("второй", ("ru", "uk")),
    ("nový", ("cs",)), ("Händler", ("de",)), ("niño", ("es",)), ("façade", ("fr",)),
    ("sankce", ("de", "fr", "es", "cs", "en")), ("习近平", ()),
])
def test_a_word_is_looked_up_in_the_languages_its_letters_allow(word, langs) -> None:
    assert lemmas.languages(word) == langs
