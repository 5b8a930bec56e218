"""MinHash signatures of shingle sets and a banded LSH index over them (numpy): which stored
texts may be near-copies of a new one, among thousands, in microseconds.

The scheme is datasketch's (a 32-bit hash per shingle, here crc32, then per permutation the minimum of
(a·h + b) mod 2⁶¹−1, kept to 32 bits; bands of r rows, a candidate shares one whole band),
written here rather than imported: datasketch hashes each shingle with SHA-1 and builds a
MinHash object per text (0.1–0.2 ms a text in a claim), and its LSH module imports scipy
(about 60 MB in every process, for a parameter search we do not use). One numpy expression
hashes all of a text's shingles under all permutations at once.

Only stories.py's index imports this module, on first use: the parse workers, which import
stories.py for canonical URLs and signatures, never load numpy.
"""

from __future__ import annotations

from typing import Hashable, Iterable

import numpy as np

_PRIME = np.uint64((1 << 61) - 1)  # Mersenne prime, as datasketch
_MASK = np.uint64((1 << 32) - 1)


class MinHasher:
    """MinHash values of shingle sets under `num_perm` fixed permutations (seeded)."""

    def __init__(self, num_perm: int = 64, seed: int = 7) -> None:
        rng = np.random.RandomState(seed)
        self.a = rng.randint(1, int(_PRIME), num_perm, dtype=np.uint64)
        self.b = rng.randint(0, int(_PRIME), num_perm, dtype=np.uint64)

    def __call__(self, shingles: Iterable[int]) -> np.ndarray | None:
        """uint32 values, one per permutation, of a set of 32-bit shingle hashes (crc32 of
        the text: stories.shingle_hash); None for an empty set."""
        hashes = np.fromiter(shingles, np.uint64)
        if not hashes.size:
            return None
        # a·h overflows 64 bits and wraps, as in datasketch: still a fine permutation family
        permuted = (np.outer(hashes, self.a) + self.b) % _PRIME & _MASK
        return permuted.min(axis=0).astype(np.uint32)


def estimate(a: np.ndarray, b: np.ndarray) -> float:
    """The Jaccard similarity two MinHash value arrays estimate."""
    return float(np.count_nonzero(a == b)) / len(a)


class BandedLSH:
    """Keys by the bands of their MinHash values: query() gives the keys sharing a band."""

    def __init__(self, bands: int, rows: int) -> None:
        self.bands, self.rows = bands, rows
        # buckets are lists: most hold one key, and a list of one is a third of a set's size
        self._tables: list[dict[bytes, list[Hashable]]] = [{} for _ in range(bands)]
        self._keys: dict[Hashable, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def _bands(self, values: np.ndarray) -> list[bytes]:
        grid = values[: self.bands * self.rows].reshape(self.bands, self.rows)
        return [row.tobytes() for row in grid]

    def insert(self, key: Hashable, values: np.ndarray) -> None:
        if key in self._keys:
            self.remove(key)
        bands = self._keys[key] = self._bands(values)
        for table, band in zip(self._tables, bands):
            table.setdefault(band, []).append(key)

    def remove(self, key: Hashable) -> None:
        """Forget key (nothing when it is not there)."""
        bands = self._keys.pop(key, None)
        for table, band in zip(self._tables, bands or ()):
            found = table.get(band)
            if found is not None and key in found:
                found.remove(key)
                if not found:
                    del table[band]

    def query(self, values: np.ndarray) -> set[Hashable]:
        """The keys that share at least one band with these values."""
        out: set[Hashable] = set()
        for table, band in zip(self._tables, self._bands(values)):
            found = table.get(band)
            if found:
                out.update(found)
        return out
