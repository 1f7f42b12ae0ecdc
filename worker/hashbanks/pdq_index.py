"""A PDQ index: every stored hash within a Hamming distance of each query, exactly.

Small sets are searched whole with faiss's ``IndexBinaryFlat``. Large ones use multi-index
hashing (Norouzi, Punjani and Fleet), the method of faiss's ``IndexBinaryMultiHash``, laid
out in flat arrays: the 256 bits are cut into ``m`` substrings of ``b`` bits (``b`` about
log2 of the set's size, 16 to 23), and two hashes within distance ``d`` agree within
``d // m`` bits on at least one substring (pigeonhole), so probing each substring's table
with every key that close finds every match; the candidates are then checked on all 256
bits. Each table is the stored ids sorted by their substring plus where each substring value
starts: 4 bytes per hash per table, so memory is fixed once built, about 32 + 8m bytes per
hash. (faiss's own multi-hash index keeps a hash map of id vectors per table: 2.6 GB for 10
million hashes as measured here, and several times slower to query.)

An index is immutable: built off the event loop, then swapped in whole. Searches release
the GIL, so threads can share one index.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import combinations

import faiss
import numpy as np

HASH_BYTES = 32
# Up to this many hashes a flat scan is as fast as probing and needs no tables.
FLAT_LIMIT = 65_536
MIN_SUB_BITS, MAX_SUB_BITS = 16, 23
QUERY_BLOCK = 256  # queries probed together (about 20 MB of working arrays at 10M hashes)


class PdqIndex:
    """Unique PDQ hashes (``(n, 32)`` uint8, row = hash id) and a search within ``distance``."""

    def __init__(self, codes: np.ndarray, distance: int) -> None:
        if codes.ndim != 2 or codes.shape[1] != HASH_BYTES or codes.dtype != np.uint8:
            raise ValueError("codes must be an (n, 32) uint8 array")
        self.codes = np.ascontiguousarray(codes)
        self.distance = distance
        self._words = self.codes.view(np.uint64)
        self._flat: faiss.IndexBinaryFlat | None = None
        self._orders: np.ndarray | None = None
        self._starts: np.ndarray | None = None
        self.sub_bits = sub_bits(len(self.codes))
        self.substrings = HASH_BYTES * 8 // self.sub_bits
        if len(self.codes) <= FLAT_LIMIT:
            self._flat = faiss.IndexBinaryFlat(HASH_BYTES * 8)
            if len(self.codes):
                self._flat.add(self.codes)
        else:
            self._orders, self._starts = _tables(self.codes, self.sub_bits)
        self._masks = _flip_masks(self.sub_bits, distance // self.substrings)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        """Memory the index holds (the codes, and the tables or the flat index's copy)."""
        tables = 0 if self._orders is None else self._orders.nbytes + self._starts.nbytes
        return self.codes.nbytes * (2 if self._flat is not None else 1) + tables

    def search(self, queries: np.ndarray, threads: int = 1) -> list[list[tuple[int, int]]]:
        """Per query (row of ``(q, 32)`` uint8): (hash id, distance) of every stored hash
        within the distance, nearest first. ``threads`` share the queries out."""
        if len(queries) == 0:
            return []
        if len(self.codes) == 0:
            return [[] for _ in range(len(queries))]
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        if self._flat is not None:
            return self._search_flat(queries)
        if threads <= 1 or len(queries) < 2 * threads:
            return self._search_tables(queries)
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(self._search_tables, np.array_split(queries, threads)))
        return [hits for part in parts for hits in part]

    def _search_flat(self, queries: np.ndarray) -> list[list[tuple[int, int]]]:
        assert self._flat is not None
        limits, dists, ids = self._flat.range_search(queries, self.distance + 1)
        return [
            _sorted(ids[limits[i] : limits[i + 1]], dists[limits[i] : limits[i + 1]])
            for i in range(len(queries))
        ]

    def _search_tables(self, queries: np.ndarray) -> list[list[tuple[int, int]]]:
        # In blocks: the probe's working arrays grow with the queries searched at once.
        return [
            hits
            for lo in range(0, len(queries), QUERY_BLOCK)
            for hits in self._search_block(queries[lo : lo + QUERY_BLOCK])
        ]

    def _search_block(self, queries: np.ndarray) -> list[list[tuple[int, int]]]:
        assert self._orders is not None and self._starts is not None
        hits = np.empty((max(64, 4 * len(queries)), 3), dtype=np.int64)
        while True:  # rarely more than one round: the buffer doubles when matches overflow it
            count = compiled_probe()(
                self._words,
                self._orders,
                self._starts,
                self._masks,
                _substrings(queries, self.sub_bits),
                queries.view(np.uint64),
                self.distance,
                hits,
            )
            if count >= 0:
                break
            hits = np.empty((2 * len(hits), 3), dtype=np.int64)
        out: list[list[tuple[int, int]]] = [[] for _ in range(len(queries))]
        for query, hash_id, dist in hits[:count].tolist():
            out[query].append((hash_id, dist))
        return [sorted(found, key=lambda h: (h[1], h[0])) for found in out]


_compiled: list = []  # the probe loop, once compiled


def compiled_probe():  # noqa: ANN201 (a numba dispatcher)
    """The probe loop compiled with numba, on first use.

    Compiled because the probes and checks are a few thousand small steps per query, which
    Python or array-at-a-time numpy spend most of their time dispatching. Imported and
    compiled only at the first search, never at import: vLLM's CPU engine processes, forked
    from the worker at start-up, scan every module loaded in it and fail on numba's objects.
    """
    if not _compiled:
        import numba

        jit = numba.njit(nogil=True, cache=False)
        # numba binds the probe's calls to what the names hold when it compiles the probe,
        # so its helpers (plain functions until now: numba must not load earlier) go first.
        for helper in (_bucket_bounds, _candidates, _already):
            globals()[helper.__name__] = jit(helper)
        _compiled.append(jit(_probe))
    return _compiled[0]


def _probe(words, orders, starts, masks, keys, qwords, distance, hits):  # pragma: no cover
    """Fill ``hits`` with (query, hash id, distance) rows; -1 when it is too small.

    In three passes (bucket bounds, candidate ids, distances) rather than one probe at a
    time: the index is far larger than the CPU's caches, so nearly every load misses, and
    loads that do not depend on each other are kept in flight together (about 1.3 times the
    lookups per second of the one-pass loop at 10 million hashes).
    """
    lo, hi = _bucket_bounds(starts, masks, keys)
    ids, owners = _candidates(orders, lo, hi, keys.shape[0], keys.shape[1], masks.shape[0])
    count, first, current = 0, 0, -1
    for i in range(ids.shape[0]):
        hash_id, q = ids[i], owners[i]
        if q != current:  # candidates come grouped by query
            first, current = count, q
        dist = 0
        for w in range(4):
            x = words[hash_id, w] ^ qwords[q, w]
            # popcount, written out: numba compiles it to the CPU instruction
            x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
            x = (x & np.uint64(0x3333333333333333)) + (
                (x >> np.uint64(2)) & np.uint64(0x3333333333333333)
            )
            x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
            dist += (x * np.uint64(0x0101010101010101)) >> np.uint64(56)
        if dist > distance or _already(hits, first, count, hash_id):
            continue
        if count == hits.shape[0]:
            return -1
        hits[count, 0], hits[count, 1], hits[count, 2] = q, hash_id, dist
        count += 1
    return count


def _bucket_bounds(starts, masks, keys):  # pragma: no cover
    """Where each probe's bucket starts and ends, probes in (query, substring, mask) order."""
    probes = keys.shape[0] * keys.shape[1] * masks.shape[0]
    lo, hi = np.empty(probes, dtype=np.uint32), np.empty(probes, dtype=np.uint32)
    p = 0
    for q in range(keys.shape[0]):
        for s in range(keys.shape[1]):
            for m in range(masks.shape[0]):
                key = keys[q, s] ^ masks[m]
                lo[p], hi[p] = starts[s, key], starts[s, key + 1]
                p += 1
    return lo, hi


def _candidates(orders, lo, hi, queries, substrings, masks):  # pragma: no cover
    """Every hash id in the probed buckets, and the query it was probed for."""
    total = 0
    for p in range(lo.shape[0]):
        total += hi[p] - lo[p]
    ids, owners = np.empty(total, dtype=np.uint32), np.empty(total, dtype=np.int64)
    k, p = 0, 0
    for q in range(queries):
        for s in range(substrings):
            for _ in range(masks):
                for pos in range(lo[p], hi[p]):
                    ids[k], owners[k] = orders[s, pos], q
                    k += 1
                p += 1
    return ids, owners


def _already(hits, first, count, hash_id) -> bool:  # pragma: no cover
    """Whether this query already found the hash (through another substring)."""
    for h in range(first, count):
        if hits[h, 1] == hash_id:
            return True
    return False


def _sorted(ids: np.ndarray, dists: np.ndarray) -> list[tuple[int, int]]:
    # faiss gives binary distances as float32: bit counts, so exact as integers.
    pairs = zip(ids.tolist(), dists.astype(np.int64).tolist(), strict=True)
    return sorted(pairs, key=lambda h: (h[1], h[0]))


def sub_bits(count: int) -> int:
    """Bits per substring for a set of this size: each table value holds about one hash,
    which balances probes against candidates to check."""
    return min(MAX_SUB_BITS, max(MIN_SUB_BITS, round(np.log2(max(count, 1)))))


def _substrings(codes: np.ndarray, bits: int) -> np.ndarray:
    """The substrings of ``bits`` bits of each hash, most significant first: (n, 256 // bits)."""
    count = HASH_BYTES * 8 // bits
    padded = np.zeros((len(codes), HASH_BYTES + 4), dtype=np.uint32)  # room for the last window
    padded[:, :HASH_BYTES] = codes
    keys = np.empty((len(codes), count), dtype=np.uint32)
    for s in range(count):
        bit = s * bits
        byte, shift = bit // 8, 32 - bit % 8 - bits
        window = padded[:, byte : byte + 4]
        value = (window[:, 0] << 24) | (window[:, 1] << 16) | (window[:, 2] << 8) | window[:, 3]
        keys[:, s] = (value >> shift) & ((1 << bits) - 1)
    return keys


def _tables(codes: np.ndarray, bits: int, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Per substring: hash ids sorted by it (uint32) and where each value starts (uint32)."""
    n, count, buckets = len(codes), HASH_BYTES * 8 // bits, 1 << bits
    orders = np.empty((count, n), dtype=np.uint32)
    starts = np.empty((count, buckets + 1), dtype=np.uint32)
    keys = np.empty((count, n), dtype=np.uint32)
    for lo in range(0, n, chunk):  # in chunks: the temporaries stay small
        keys[:, lo : lo + chunk] = _substrings(codes[lo : lo + chunk], bits).T
    for s in range(count):
        orders[s] = np.argsort(keys[s], kind="stable")
        starts[s, 0] = 0
        np.cumsum(np.bincount(keys[s], minlength=buckets), out=starts[s, 1:])
    return orders, starts


def _flip_masks(bits: int, flips: int) -> np.ndarray:
    """Every ``bits``-bit mask with at most ``flips`` bits set (the probes around a key)."""
    masks = [0]
    for k in range(1, flips + 1):
        masks += [sum(1 << b for b in chosen) for chosen in combinations(range(bits), k)]
    return np.array(masks, dtype=np.uint32)
