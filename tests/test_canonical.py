"""stories.canonical_url and stories.title_fingerprint: tables of cases."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.stories import TRACKING_PARAMS, canonical_url, title_fingerprint

BASE = "https://base.example.org/dir/page.html"

URL_CASES = [
    # tracking parameters
    ("https://www.bbc.com/news/articles/cp81?at_medium=RSS&at_campaign=rss",
     "https://bbc.com/news/articles/cp81"),
    ("https://www.dw.com/en/x/a-75995188?maca=en-rss-en-all-1573-rdf",
     "https://dw.com/en/x/a-75995188"),
    ("https://e.com/a?utm_source=x&utm_medium=y&utm_campaign=z&utm_term=t&utm_content=c",
     "https://e.com/a"),
    ("https://e.com/a?UTM_Campaign=a&FBCLID=x", "https://e.com/a"),
    ("https://e.com/a?id=7&fbclid=abc&gclid=1&dclid=2&msclkid=3", "https://e.com/a?id=7"),
    ("https://e.com/a?mc_cid=1&mc_eid=2&ocid=3&cmpid=4&xtor=RSS-1&ref_src=twsrc",
     "https://e.com/a"),
    ("https://e.com/a?igshid=1&_ga=2&yclid=3&smid=nytcore-ios-share&page=2",
     "https://e.com/a?page=2"),
    ("https://e.com/a?utmost=1", "https://e.com/a?utmost=1"),  # only the utm_ prefix is tracking
    # remaining parameters sorted, values kept as they are
    ("https://e.com/search?q=a+b&b=2&a=1", "https://e.com/search?a=1&b=2&q=a+b"),
    ("https://e.com/?b=2&a=1&", "https://e.com/?a=1&b=2"),
    ("http://example.com?", "https://example.com/"),
    # fragments
    ("https://e.com/a#section-2", "https://e.com/a"),
    ("https://www.bbc.com/news/articles/cp81l0e1eg5o#0",
     "https://bbc.com/news/articles/cp81l0e1eg5o"),
    ("http://example.com/#!/route", "https://example.com/"),
    # ports, case
    ("HTTP://Example.COM:80/Path/Page", "https://example.com/Path/Page"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com:8443/x/", "https://example.com:8443/x"),
    ("http://EXAMPLE.com./a", "https://example.com/a"),
    # trailing slash: dropped from paths, kept for the root
    ("https://e.com/news/story/", "https://e.com/news/story"),
    ("https://e.com/", "https://e.com/"),
    ("https://e.com", "https://e.com/"),
    # RFC 3986 normalisation (url-normalize)
    ("http://example.com/a/./b/../c", "https://example.com/a/c"),
    ("http://example.com/a%7eb/%41", "https://example.com/a~b/A"),
    ("https://example.com/path with space", "https://example.com/path%20with%20space"),
    ("ftp://Example.com:21/x", "ftp://example.com/x"),
    # IDN hosts become punycode
    ("http://bücher.de/ä", "https://xn--bcher-kva.de/%C3%A4"),
    ("http://例子.中国/路径", "https://xn--fsqu00a.xn--fiqs8s/%E8%B7%AF%E5%BE%84"),
    ("http://xn--bcher-kva.de/", "https://xn--bcher-kva.de/"),
    # one page whatever the scheme and a "www.": the key is https without it
    ("http://wire.example/energy/pos2", "https://wire.example/energy/pos2"),
    ("https://www.wire.example/energy/pos2/", "https://wire.example/energy/pos2"),
    ("HTTP://WWW.Wire.Example:80/energy/pos2?utm_source=rss", "https://wire.example/energy/pos2"),
    ("http://www.wire.example:8080/a", "https://wire.example:8080/a"),
    ("https://www2.wire.example/a", "https://www2.wire.example/a"),  # another host
    ("https://m.wire.example/a", "https://m.wire.example/a"),
    ("https://wwwire.example/a", "https://wwwire.example/a"),
    ("http://www.com/a", "https://www.com/a"),  # nothing left to be the site
    ("https://www.example.org.", "https://example.org/"),
    ("ftp://www.example.org/a", "ftp://www.example.org/a"),  # only the web's two schemes
    # junk: the stripped input, never an exception
    ("not a url", "not a url"),
    ("  spaced junk \n", "spaced junk"),
    ("", ""),
    ("mailto:someone@example.com", "mailto:someone@example.com"),
    ("javascript:alert(1)", "javascript:alert(1)"),
    ("http://[::1", "http://[::1"),
    ("http://", "http://"),
    ("//cdn.example.com/x", "//cdn.example.com/x"),  # scheme-relative without a base
]

RELATIVE_CASES = [
    ("/rel/path/?q=1&utm_source=x", "https://base.example.org/rel/path?q=1"),
    ("../up#frag", "https://base.example.org/up"),
    ("other.html", "https://base.example.org/dir/other.html"),
    ("//cdn.example.com/x/", "https://cdn.example.com/x"),
    ("https://elsewhere.example/", "https://elsewhere.example/"),  # absolute ignores the base
]


@pytest.mark.parametrize(("url", "expected"), URL_CASES)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), RELATIVE_CASES)
def test_canonical_url_resolves_against_base(url: str, expected: str) -> None:
    assert canonical_url(url, BASE) == expected


def test_canonical_url_is_idempotent() -> None:
    for url, _ in URL_CASES + RELATIVE_CASES:
        once = canonical_url(url, BASE)
        assert canonical_url(once, BASE) == once, url


SAME_PAGE = [
    "http://wire.example/energy/2026/11/pos2-price-formula",
    "https://wire.example/energy/2026/11/pos2-price-formula?utm_source=rss",
    "https://www.wire.example/energy/2026/11/pos2-price-formula/",
    "http://WWW.wire.example/energy/2026/11/pos2-price-formula#top",
]


def test_http_https_and_www_copies_of_one_link_share_one_key() -> None:
    assert {canonical_url(u) for u in SAME_PAGE} == {canonical_url(u, fast=False)
                                                      for u in SAME_PAGE} == {
        "https://wire.example/energy/2026/11/pos2-price-formula"}


def test_tracking_params_constant_names_the_documented_set() -> None:
    assert isinstance(TRACKING_PARAMS, tuple)
    assert {"utm_*", "fbclid", "gclid", "maca", "xtor", "smid", "_ga"} <= set(TRACKING_PARAMS)


SAME_STORY = [
    ("Xi–Putin talks: Power of Siberia 2 deal stalls",
     "xi-putin talks — power of siberia 2 deal stalls"),
    ("Sanctions on Chinese suppliers widen", "  SANCTIONS   on chinese suppliers, widen!  "),
    ("Sibérie : le gazoduc « Force de Sibérie 2 » avance",
     "Siberie le gazoduc Force de Siberie 2 avance"),
    ("Сила Сибири 2: новые переговоры ёлки", "СИЛА СИБИРИ 2 — новые переговоры елки"),
    ("Ｆｕｌｌ－ｗｉｄｔｈ ｔｉｔｌｅ ｗｏｒｄｓ ｈｅｒｅ", "Full-width title words here"),  # NFKC
    ("“Quoted” words in a title", '"Quoted" words in a title'),
]


@pytest.mark.parametrize(("one", "other"), SAME_STORY)
def test_fingerprint_ignores_case_punctuation_diacritics_dashes(one: str, other: str) -> None:
    assert title_fingerprint(one) == title_fingerprint(other)


def test_fingerprint_is_a_short_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", title_fingerprint("Russia and China sign a declaration"))


def test_fingerprint_differs_for_different_titles() -> None:
    titles = ["Russia and China sign a joint declaration",
              "Russia and China delay a joint declaration",
              "Power of Siberia 2 financing agreed",
              "Power of Siberia 1 financing agreed"]
    assert len({title_fingerprint(t) for t in titles}) == len(titles)


def test_fingerprint_of_a_long_title_ignores_the_summary() -> None:
    title = "Russia and China sign a joint declaration"
    assert title_fingerprint(title, "one summary") == title_fingerprint(title, "another summary")


def test_short_titles_use_the_summary() -> None:
    monday = title_fingerprint("Live", "Monday: pipeline talks resume in Beijing")
    tuesday = title_fingerprint("Live", "Tuesday: sanctions list extended")
    assert monday != tuesday
    assert monday == title_fingerprint("LIVE!", "monday — pipeline talks resume in Beijing")


def test_short_titles_use_only_the_first_200_characters_of_the_summary() -> None:
    head = "word " * 40  # 200 characters
    one, two = head + "tail one", head + "tail two"
    assert title_fingerprint("Briefing", one) == title_fingerprint("Briefing", two)
    assert title_fingerprint("Briefing", one[10:]) != title_fingerprint("Briefing", two[10:])


def test_empty_title_and_summary_give_empty_fingerprint() -> None:
    assert title_fingerprint("") == ""
    assert title_fingerprint("  — ", "  ") == ""
    assert title_fingerprint("", "a summary only") != ""


# ------------------------------------------------------------ the fast path


def _slow(url: str) -> str:
    return canonical_url(url, fast=False)


@pytest.mark.parametrize("url", [c[0] for c in URL_CASES])
def test_fast_path_agrees_with_url_normalize_on_the_table(url: str) -> None:
    assert canonical_url(url) == _slow(url)


@pytest.mark.corpus
def test_fast_path_agrees_with_url_normalize_on_every_corpus_link(corpus) -> None:
    from bot.errors import ParseError
    from bot.parse import parse_feed
    from tests.conftest import corpus_files

    links = []
    for f in corpus_files():
        try:
            links += [i.link for i in parse_feed(f.read_bytes(), url=f.as_uri()).items]
        except ParseError:
            continue
    assert len(links) > 2000
    assert [canonical_url(u) for u in links] == [_slow(u) for u in links]


@settings(max_examples=400)
@given(st.builds(
    lambda scheme, host, port, path, query, frag: (
        f"{scheme}://{host}{port}{path}" + (f"?{query}" if query else "")
        + (f"#{frag}" if frag else "")),
    st.sampled_from(["http", "https", "HTTP", "ftp"]),
    st.one_of(st.text("abc.-_09", min_size=1, max_size=8),
              st.sampled_from(["News.Example.org", "xn--bcher-kva.example", "bücher.example"])),
    st.sampled_from(["", ":8080", ":443", ":80", ":", ":00", ":99999"]),
    st.text("/abcXZ09-._~!$&'()*+,;=:@?%é ", max_size=15),
    st.text("abc=&;+,/?:@!$'()*~-._%é", max_size=15),
    st.text("ab", max_size=2)))
def test_fast_path_agrees_with_url_normalize_on_generated_urls(url: str) -> None:
    assert canonical_url(url) == _slow(url)
