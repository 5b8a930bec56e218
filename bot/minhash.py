"""MinHash signatures of shingle sets and a banded LSH index over them (numpy): which stored
texts may be near-copies of a new one, among thousands, in microseconds.

The scheme is datasketch's (a 32-bit hash per shingle, here crc32, then per permutation
the minimum of (a·h + b) mod 2⁶¹−1, kept to 32 bits; bands of r rows, a candidate shares one
whole band), written here rather than imported: datasketch hashes each shingle with SHA-1
and builds a MinHash object per text (0.1–0.2 ms a text in a claim), and its LSH module
imports scipy (about 60 MB in every process, for a parameter search we do not use). One
numpy expression applies every permutation to all of a text's shingle hashes at once.

Only stories.py's index imports this module, on first use: the parse workers, which import
stories.py for canonical URLs and signatures, never load numpy.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable

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
    """Keys by the bands of their MinHash values: query() gives the keys sharing a band.

    Kept small, as an index holds 72 h of texts: a band is keyed by the hash of its bytes
    (this process's hash(): the index never leaves it; a false match of 64 bits is a
    candidate more, which the exact Jaccard then refuses), and a bucket holding one key
    holds it bare (most do), not in a list.
    """

    def __init__(self, bands: int, rows: int) -> None:
        self.bands, self.rows = bands, rows
        self._tables: list[dict[int, Any]] = [{} for _ in range(bands)]
        self._keys: dict[Hashable, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def _bands(self, values: np.ndarray) -> tuple[int, ...]:
        grid = values[: self.bands * self.rows].reshape(self.bands, self.rows)
        return tuple(hash(row.tobytes()) for row in grid)

    def insert(self, key: Hashable, values: np.ndarray) -> None:
        if key in self._keys:
            self.remove(key)
        bands = self._keys[key] = self._bands(values)
        for table, band in zip(self._tables, bands):
            found = table.get(band, _EMPTY)
            if found is _EMPTY:
                table[band] = key
            elif type(found) is _Bucket:
                found.append(key)
            else:
                table[band] = _Bucket((found, key))

    def remove(self, key: Hashable) -> None:
        """Forget key (nothing when it is not there)."""
        for table, band in zip(self._tables, self._keys.pop(key, ())):
            found = table.get(band, _EMPTY)
            if type(found) is _Bucket:
                if key in found:
                    found.remove(key)
                if len(found) == 1:
                    table[band] = found[0]
            elif found == key:
                del table[band]

    def query(self, values: np.ndarray) -> set[Hashable]:
        """The keys that share at least one band with these values."""
        out: set[Hashable] = set()
        for table, band in zip(self._tables, self._bands(values)):
            found = table.get(band, _EMPTY)
            if type(found) is _Bucket:
                out.update(found)
            elif found is not _EMPTY:
                out.add(found)
        return out


class _Bucket(list):
    """Two keys or more in one band (a key is hashable: never a list, so never taken for one)."""


_EMPTY = object()
