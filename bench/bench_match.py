"""Matching throughput: 500 topics x 10 aliases (mixed scripts) over generated items.

Words are 60 % Latin (with diacritics), 25 % Cyrillic, 15 % Han; items draw them from a
40,000-word vocabulary with Zipf frequencies (as in real news text), and one item in ten
mentions one of the topics' aliases.

Compares veille's Matcher (fold + one Aho-Corasick pass + exact queries of hit topics) with
a baseline of one case-insensitive regular expression per topic, in the same run.

    .venv/bin/python bench/bench_match.py [--topics 500] [--items 20000] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
            (title if rng.random() < 0.5 else body).insert(rng.randint(0, 5), alias.title())
        items.append((" ".join(title).capitalize() + ".", ", ".join(body) + "."))
    return items


def regex_baseline(alias_lists: list[list[str]]) -> list[re.Pattern]:
    """One regex per topic: its aliases, word-bounded, case-insensitive (the naive way)."""
    pats = []
    for aliases in alias_lists:
        alts = [re.escape(a.rstrip("*")).replace(r"\ ", r"[\s\-]+") + (r"\w*" if a.endswith("*")
                else r"\b") for a in aliases]
        pats.append(re.compile(r"\b(?:" + "|".join(alts) + ")", re.IGNORECASE))
    return pats


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


def run_matcher(matcher: Matcher, items: list[tuple[str, str]]) -> tuple[float, float, int]:
    return timed(lambda: sum(len(matcher.match(t, b)) for t, b in items))


def run_regex(pats: list[re.Pattern], items: list[tuple[str, str]]) -> tuple[float, float, int]:
    return timed(lambda: sum(1 for t, b in items for p in pats if p.search(t) or p.search(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topics", type=int, default=500)
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--baseline-items", type=int, default=300)
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
          f"{len(items)} items, {chars:.0f} chars each on average")
    runs = [run_matcher(matcher, items) for _ in range(args.repeat)]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    print(f"veille Matcher: {len(items) / wall:,.0f} items/s wall, {len(items) / cpu:,.0f} items/s "
          f"per core (CPU), {runs[0][2]} topic matches  [median of {args.repeat}]")
    pats = regex_baseline(alias_lists)
    sample = items[: args.baseline_items]
    bwall, bcpu, bhits = run_regex(pats, sample)
    print(f"baseline, a regex per topic: {len(sample) / bwall:,.1f} items/s wall, "
          f"{len(sample) / bcpu:,.1f} items/s per core, on the first {len(sample)} items")
    print(f"speed-up: {(len(items) / cpu) / (len(sample) / bcpu):,.0f}x; target >= 15,000 items/s "
          f"per core: {'met' if len(items) / cpu >= 15000 else 'NOT met'}")


if __name__ == "__main__":
    main()
