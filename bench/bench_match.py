"""Matching throughput: 500 topics x 10 aliases (mixed scripts) over generated items.

Words are 60 % Latin (with diacritics), 25 % Cyrillic, 15 % Han; items draw them from a
40,000-word vocabulary with Zipf frequencies (as in real news text); one item in ten
mentions one of the topics' aliases, and one such mention in four is written without its
accents or in another case, as real text often is.

Three matchers over the same items, in the same run:
  veille     the Matcher: fold + one Aho-Corasick pass + the exact queries of hit topics
  plain AC   pyahocorasick alone over the same aliases, on lower-cased text, word-bounded
             (what an automaton gives without veille's folding and queries)
  regex      one case-insensitive regular expression per topic (the naive way)
Their matches are compared on the topics whose query is just their alias group (@name):
the two baselines must agree with each other, every baseline match must be a veille match,
and veille's extra matches are counted by cause (accents folded, CJK words found inside a
run of Han characters). Any other difference is a disagreement and the run exits 1.

    .venv/bin/python bench/bench_match.py [--topics 500] [--items 3000] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import unicodedata
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ahocorasick  # noqa: E402

from bot.match import Matcher  # noqa: E402
from bot.model import Topic  # noqa: E402
from bot.query import compile_query  # noqa: E402

LATIN = "abcdefghijklmnopqrstuvwxyzéèàüöç"
CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщыэюя"
HAN = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 400))


def word(rng: random.Random) -> str:
    script = rng.random()
    if script < 0.6:
        return "".join(rng.choice(LATIN) for _ in range(rng.randint(3, 10)))
    if script < 0.85:
        return "".join(rng.choice(CYRILLIC) for _ in range(rng.randint(3, 10)))
    return "".join(rng.choice(HAN) for _ in range(rng.randint(2, 4)))


def make_topics(rng: random.Random, n: int) -> tuple[list[Topic], list[list[str]]]:
    topics, alias_lists = [], []
    for i in range(n):
        aliases = []
        for _ in range(10):
            phrase = " ".join(word(rng) for _ in range(rng.randint(1, 3)))
            if rng.random() < 0.2 and phrase[-1].isalpha() and not "\u4e00" <= phrase[-1]:
                phrase += "*"
            aliases.append(phrase)
        name = f"a{i}"
        extra = word(rng)
        shape = i % 4
        query = [f"@{name}", f"@{name} AND NOT {extra}", f"@{name} NEAR/6 {extra}",
                 f"title:@{name} OR ({extra} AND @{name})"][shape]
        topics.append(Topic(f"t{i}", f"Topic {i}", query, compile_query(query, {name: aliases})))
        alias_lists.append(aliases)
    return topics, alias_lists


def make_items(rng: random.Random, n: int, alias_lists: list[list[str]],
               vocabulary: int = 40_000) -> list[tuple[str, str]]:
    """Items drawn from a Zipf-distributed vocabulary, as words are in real news text."""
    vocab = [word(rng) for _ in range(vocabulary)]
    vocab = [w.capitalize() if rng.random() < 0.15 else w for w in vocab]
    cum, total = [], 0.0
    for rank in range(1, vocabulary + 1):
        total += 1 / rank
        cum.append(total)
    items = []
    for _ in range(n):
        title = rng.choices(vocab, cum_weights=cum, k=rng.randint(6, 14))
        body = rng.choices(vocab, cum_weights=cum, k=rng.randint(25, 60))
        if rng.random() < 0.1:  # one item in ten mentions some topic's alias
            alias = rng.choice(rng.choice(alias_lists)).replace("*", "ski")
            written = alias.title() if rng.random() < 0.75 else rng.choice(
                [unaccented(alias), alias.upper(), unaccented(alias).title()])
            (title if rng.random() < 0.5 else body).insert(rng.randint(0, 5), written)
        items.append((" ".join(title).capitalize() + ".", ", ".join(body) + "."))
    return items


def unaccented(text: str) -> str:
    """text without combining accents (Sibérie -> Siberie), as feeds often write names."""
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if not unicodedata.combining(c))


def regex_baseline(alias_lists: list[list[str]]) -> list[re.Pattern]:
    """One regex per topic: its aliases, word-bounded, case-insensitive (the naive way)."""
    pats = []
    for aliases in alias_lists:
        alts = [re.escape(a.rstrip("*")).replace(r"\ ", r"[\s\-]+") + (r"\w*" if a.endswith("*")
                else r"\b") for a in aliases]
        pats.append(re.compile(r"\b(?:" + "|".join(alts) + ")", re.IGNORECASE))
    return pats


def plain_automaton(alias_lists: list[list[str]]) -> ahocorasick.Automaton:
    """pyahocorasick over every alias, lower-cased; a key's value: its length and the
    (topic, is a prefix alias*) pairs that have it."""
    automaton = ahocorasick.Automaton()
    for topic, aliases in enumerate(alias_lists):
        for alias in aliases:
            key = alias.rstrip("*").lower()
            _, owners = automaton.get(key, (0, ()))
            automaton.add_word(key, (len(key), (*owners, (topic, alias.endswith("*")))))
    automaton.make_automaton()
    return automaton


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"  # what the regex's \b looks at


def plain_topics(automaton: ahocorasick.Automaton, text: str) -> set[int]:
    """The topics with an alias in text, word-bounded like the regex baseline."""
    low, found = text.lower(), set()
    for end, (length, owners) in automaton.iter(low):
        start = end - length + 1
        if start > 0 and _word_char(low[start - 1]):
            continue
        whole = end + 1 == len(low) or not _word_char(low[end + 1])
        found.update(topic for topic, prefix in owners if prefix or whole)
    return found


def timed(fn) -> tuple[float, float, int]:
    """Wall and CPU seconds of fn(), with the cyclic GC paused as timeit does."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        return time.perf_counter() - wall, time.process_time() - cpu, result
    finally:
        gc.enable()


def run_matcher(matcher: Matcher, items: list[tuple[str, str]]) -> tuple[float, float, list]:
    return timed(lambda: [{int(m.topic[1:]) for m in matcher.match(t, b)} for t, b in items])


def run_plain(automaton, items: list[tuple[str, str]]) -> tuple[float, float, list]:
    return timed(lambda: [plain_topics(automaton, t) | plain_topics(automaton, b)
                          for t, b in items])


def run_regex(pats: list[re.Pattern], items: list[tuple[str, str]]) -> tuple[float, float, list]:
    return timed(lambda: [{i for i, p in enumerate(pats) if p.search(t) or p.search(b)}
                          for t, b in items])


def median_of(repeat: int, run) -> tuple[float, float, list]:
    runs = [run() for _ in range(repeat)]
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
            runs[0][2])


def compare(items, alias_lists, veille: list[set], plain: list[set], regex: list[set],
            alias_only: set[int]) -> tuple[dict[str, int], list[str]]:
    """Counts of agreement and of veille's extra matches by cause; the disagreements."""
    counts = {"matches (regex)": 0, "regex = plain AC": 0, "extra: accents folded": 0,
              "extra: CJK inside a Han run": 0}
    problems: list[str] = []
    for n, ((title, body), v, p, r) in enumerate(zip(items, veille, plain, regex)):
        v, p, r = v & alias_only, p & alias_only, r & alias_only
        counts["matches (regex)"] += len(r)
        if p != r:
            problems.append(f"item {n}: plain AC {sorted(p)} != regex {sorted(r)}")
            continue
        counts["regex = plain AC"] += len(r)
        if not r <= v:
            problems.append(f"item {n}: veille misses {sorted(r - v)}: {title[:60]!r}")
        for topic in v - r:
            folded = f"{unaccented(title)} {unaccented(body)}".lower()
            aliases = alias_lists[topic]
            if any(unaccented(a.rstrip("*")).lower() in folded for a in aliases):
                counts["extra: accents folded"] += 1
            elif any(any("\u4e00" <= c <= "\u9fff" for c in a) for a in aliases):
                counts["extra: CJK inside a Han run"] += 1
            else:
                problems.append(f"item {n}: veille alone finds topic {topic}: {title[:60]!r}")
    return counts, problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topics", type=int, default=500)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    topics, alias_lists = make_topics(rng, args.topics)
    matcher = Matcher(topics)
    build = time.perf_counter() - t0
    items = make_items(rng, args.items, alias_lists)
    chars = statistics.mean(len(t) + len(b) for t, b in items)
    print(f"{args.topics} topics x 10 aliases, automaton built in {build:.2f} s; "
          f"{len(items)} items, {chars:.0f} chars each on average; the same items for all three")
    n = len(items)
    vwall, vcpu, vhits = median_of(args.repeat, lambda: run_matcher(matcher, items))
    automaton = plain_automaton(alias_lists)
    pwall, pcpu, phits = median_of(args.repeat, lambda: run_plain(automaton, items))
    pats = regex_baseline(alias_lists)
    rwall, rcpu, rhits = run_regex(pats, items)  # once: it is slow
    for name, wall, cpu in (("veille Matcher", vwall, vcpu), ("plain pyahocorasick", pwall, pcpu),
                            ("regex per topic", rwall, rcpu)):
        print(f"  {name:<20} {n / wall:>10,.0f} items/s wall {n / cpu:>10,.0f} items/s per core")
    print(f"  veille vs regex: {rcpu / vcpu:,.0f}x; veille vs plain AC: {vcpu / pcpu:.1f}x the "
          f"time (folding, tokens and the queries of hit topics)")
    alias_only = {i for i, t in enumerate(topics) if t.query == f"@a{i}"}
    counts, problems = compare(items, alias_lists, vhits, phits, rhits, alias_only)
    print(f"  matches compared on the {len(alias_only)} topics whose query is their aliases: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    rate = n / vcpu
    print(f"  target >= 15,000 items/s per core: {rate:,.0f}  {'met' if rate >= 15000 else 'NOT met'}")
    if problems:
        print(f"  DISAGREEMENT in {len(problems)} items, e.g.:")
        for line in problems[:10]:
            print("   ", line)
        sys.exit(1)
    print("  agreement: every baseline match is a veille match; the extra ones are explained")


if __name__ == "__main__":
    main()
