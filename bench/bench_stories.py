"""Story clustering: the near-duplicate check of one matched item against 72 h of stories.

5,000 open stories of one topic (generated headlines and leads: English-like words with
Zipf frequencies, a few names and numbers each), spread over 72 hours, are loaded into a
StoryIndex. Then new matched items arrive: a third syndicated copies of a stored story
(words swapped, an agency suffix), a third other outlets' reports (names and numbers kept,
words rewritten), a third new events. Per item: its signature and the index's decision
(the decision alone is printed too). Baseline in the same run: the same decision by
comparing the item with every stored member (exact Jaccard and weighted Jaccard, no index).
Memory: the allocations of adding the stories to the index (tracemalloc; members keep
compacted copies of their signatures).

    .venv/bin/python bench/bench_stories.py [--stories 5000] [--items 1500] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import statistics
import sys
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.model import Hit, Item, Match  # noqa: E402
from bot.stories import (COPY_LEAD, COPY_TITLE, REPORT_SCORE, StoryIndex, jaccard,  # noqa: E402
                         signature, weighted_jaccard)
from bot.stories import _may_report, _numbers_agree  # noqa: E402

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
TARGET_MS = 1.0
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def vocabulary(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 10))) for _ in range(n)]


class Writer:
    """Generated headlines and leads, Zipf-distributed words, a few names and numbers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = vocabulary(rng, 30_000)
        self.names = [w.capitalize() for w in vocabulary(rng, 5_000)]
        self.cumulative = list(itertools.accumulate(1 / (i + 1) for i in range(len(self.words))))

    def some(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=k)

    def event(self) -> tuple[list[str], list[str]]:
        """(title words, lead words) of a new event."""
        names = self.rng.sample(self.names, 3)
        number = str(self.rng.randint(2, 999))
        title = ["Pipeline"] + self.some(4) + [names[0], number] + self.some(2) + [names[1]]
        lead = self.some(8) + names + [number] + self.some(20) + ["Pipeline"] + self.some(8)
        return title, lead

    def copy(self, title: list[str], lead: list[str]) -> tuple[list[str], list[str]]:
        t = title[:]
        i = self.rng.randrange(1, len(t))
        t[i], t[i - 1] = t[i - 1], t[i]
        return t + ["(Reuters)"], lead[:]

    def report(self, title: list[str], lead: list[str]) -> tuple[list[str], list[str]]:
        keep = [w for w in title if w[:1].isupper() or w.isdigit()]
        return (["Pipeline"] + self.some(3) + keep + self.some(2),
                self.some(6) + [w for w in lead if w[:1].isupper() or w.isdigit()] + self.some(25))


def item(n: int, title: list[str], lead: list[str], when: datetime, outlet: str) -> Item:
    link = f"https://{outlet}.example/{n}"
    return Item(feed=f"https://{outlet}.example/rss", guid=str(n), url=link, link=link,
                title=" ".join(title), summary=" ".join(lead).capitalize() + ".", lang="en",
                source=outlet, published=when)


MATCH = Match("pos2", (Hit("Pipeline", "title", 0, 8, "Pipeline"),))


def naive(sig, members) -> str | None:
    """The index's decision, by comparing with every member (the baseline)."""
    best, best_score = None, 0.0
    for story, other in members:
        if sig.url and sig.url == other.url:
            return story
        if len(sig.title_units) >= 4 and jaccard(sig.title_units, other.title_units) >= COPY_TITLE \
                and _numbers_agree(sig, other):
            return story
        if len(sig.lead_shingles) >= 6 and _numbers_agree(sig, other) and \
                jaccard(sig.lead_shingles, other.lead_shingles) >= COPY_LEAD:
            return story
        if _may_report(sig, other, None):
            score = max(weighted_jaccard(sig.title_features, other.title_features),
                        weighted_jaccard(sig.features, other.features))
            if score >= REPORT_SCORE and score > best_score:
                best, best_score = story, score
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=5000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    writer = Writer(rng)

    signature(item(0, ["Warm", "up"], ["the", "folding", "tables"], NOW, "w"), MATCH, key="w",
              when=NOW)  # built once per process (text.py), not per item
    events = [writer.event() for _ in range(args.stories)]
    times = sorted(NOW - timedelta(hours=rng.uniform(0, 72)) for _ in events)
    sigs = [signature(item(n, t, lead, when, f"outlet{n % 50}"), MATCH, key=f"{n}:pos2",
                      when=NOW) for n, ((t, lead), when) in enumerate(zip(events, times))]
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    index = StoryIndex()
    for n, sig in enumerate(sigs):
        index.add(f"s{n}", sig)
    build = time.perf_counter() - started
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    arrivals = []
    for k in range(args.items):
        n = rng.randrange(args.stories)
        kind = ("copy", "report", "new")[k % 3]
        t, lead = events[n]
        t, lead = (writer.copy(t, lead) if kind == "copy" else writer.report(t, lead)
                   if kind == "report" else writer.event())
        when = min(times[n] + timedelta(minutes=rng.uniform(5, 120)), NOW)
        arrivals.append((kind, n, item(100_000 + k, t, lead, when, "late")))

    per_item, deciding, found = [], [], {"copy": 0, "report": 0, "new": 0}
    decisions = []
    for kind, n, it in arrivals:
        t0 = time.perf_counter()
        sig = signature(it, MATCH, key=f"{it.guid}:pos2", when=NOW)
        t1 = time.perf_counter()
        decision = index.decide(sig)
        per_item.append(time.perf_counter() - t0)
        deciding.append(time.perf_counter() - t1)
        decisions.append((sig, decision.story))
        found[kind] += (decision.story == f"s{n}") if kind != "new" else decision.story is None

    members = [(f"s{n}", sig) for n, sig in enumerate(sigs)]
    sample = decisions[: max(30, args.items // 20)]
    started = time.perf_counter()
    agree = sum(naive(sig, members) == story for sig, story in sample)
    baseline = (time.perf_counter() - started) / len(sample)

    mean = statistics.fmean(per_item) * 1000
    p99 = sorted(per_item)[int(len(per_item) * 0.99)] * 1000
    third = args.items / 3
    print(f"{args.stories} open stories over 72 h: index built in {build:.2f} s, "
          f"{memory / 1e6:.1f} MB ({memory / args.stories / 1e3:.1f} kB per story)")
    print(f"veille StoryIndex: {mean:.3f} ms per item (signature + decision), p99 {p99:.3f} ms; "
          f"copies found {found['copy'] / third:.0%}, reports {found['report'] / third:.0%}, "
          f"new events left new {found['new'] / third:.0%}")
    print(f"  of which the decision (MinHash values, candidates, scores): "
          f"{statistics.fmean(deciding) * 1000:.3f} ms; in veille the signature is made in a "
          f"parse worker and only the decision runs in the claim's transaction")
    print(f"baseline, every member compared: {baseline * 1000:.2f} ms per item "
          f"(decisions agree on {agree}/{len(sample)}); speed-up {baseline * 1000 / mean:.0f}x")
    print(f"target <= {TARGET_MS} ms per item: {'met' if mean <= TARGET_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
