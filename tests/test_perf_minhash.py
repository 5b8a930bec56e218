"""bot/minhash.py: the MinHash estimate tracks the true Jaccard similarity, and the banded
LSH offers near-copies as candidates and keeps unrelated texts out (seeded, generated sets)."""

from __future__ import annotations

import random
import zlib

import pytest

from bot.minhash import BandedLSH, MinHasher, estimate


def _pair(rng: random.Random, size: int, shared: int) -> tuple[set[int], set[int]]:
    """Two sets of shingle hashes (crc32, as stories.shingle_hash) sharing `shared`."""
    word = lambda tag: zlib.crc32(f"{tag}{rng.randrange(10**9)}".encode())  # noqa: E731
    common = {word("c") for _ in range(shared)}
    return (common | {word("a") for _ in range(size - shared)},
            common | {word("b") for _ in range(size - shared)})


def test_the_estimate_tracks_the_true_jaccard() -> None:
    rng, minhash = random.Random(3), MinHasher(64, seed=7)
    errors = []
    for _ in range(300):
        a, b = _pair(rng, 40, rng.randrange(41))
        errors.append(abs(estimate(minhash(a), minhash(b)) - len(a & b) / len(a | b)))
    assert sum(errors) / len(errors) < 0.06  # 64 permutations: standard error <= 1/16
    assert max(errors) < 0.25


def test_values_depend_on_the_set_and_the_seed_only() -> None:
    words = [zlib.crc32(f"w{i}".encode()) for i in range(30)]
    assert (MinHasher(64, 7)(words) == MinHasher(64, 7)(reversed(words))).all()
    assert not (MinHasher(64, 7)(words) == MinHasher(64, 8)(words)).all()
    assert MinHasher()([]) is None


@pytest.mark.parametrize("bands,rows", [(14, 4), (16, 4)])
def test_lsh_offers_near_copies_and_not_unrelated_sets(bands: int, rows: int) -> None:
    rng, minhash = random.Random(5), MinHasher(64, seed=7)
    lsh = BandedLSH(bands, rows)
    copies, strangers = [], []
    for n in range(200):
        a, b = _pair(rng, 30, 27)  # Jaccard 0.82
        lsh.insert(n, minhash(a))
        copies.append((n, minhash(b)))
        strangers.append((n, minhash(_pair(rng, 30, 0)[0])))
    assert sum(n in lsh.query(v) for n, v in copies) >= 196
    assert sum(n in lsh.query(v) for n, v in strangers) == 0
    lsh.remove(0)
    assert 0 not in lsh and 0 not in lsh.query(copies[0][1]) and len(lsh) == 199


def test_keys_sharing_every_band_come_and_go_one_by_one() -> None:
    values = MinHasher(64, seed=7)([zlib.crc32(f"w{i}".encode()) for i in range(20)])
    lsh = BandedLSH(16, 4)
    for key in ("a", "b", ("c", 3)):
        lsh.insert(key, values)
    assert lsh.query(values) == {"a", "b", ("c", 3)}
    lsh.insert("a", values)  # again: still once
    lsh.remove("b")
    assert lsh.query(values) == {"a", ("c", 3)}
    lsh.remove("a")
    assert lsh.query(values) == {("c", 3)}
    lsh.remove("nobody")
    lsh.remove(("c", 3))
    assert lsh.query(values) == set() and len(lsh) == 0
