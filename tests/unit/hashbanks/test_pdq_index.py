"""The PDQ index finds exactly the stored hashes within the distance: the flat search and the
multi-index tables, each checked against a brute-force count of differing bits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from worker.hashbanks import pdq_index
from worker.hashbanks.pdq_index import PdqIndex


def _flip(codes: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    unpacked = np.unpackbits(codes, axis=1)
    for row in unpacked:
        row[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


def _brute(codes: np.ndarray, queries: np.ndarray, distance: int) -> list[list[tuple[int, int]]]:
    dists = np.unpackbits(queries[:, None, :] ^ codes[None, :, :], axis=2).sum(axis=2)
    return [
        sorted(((int(i), int(d[i])) for i in np.flatnonzero(d <= distance)), key=lambda h: h[::-1])
        for d in dists
    ]


@pytest.mark.parametrize("tables", [False, True])
@pytest.mark.parametrize("distance", [0, 10, 31, 40])
def test_finds_every_hash_within_the_distance_and_no_other(monkeypatch, tables, distance):
    rng = np.random.default_rng(distance)
    codes = rng.integers(0, 256, size=(3000, 32), dtype=np.uint8)
    if tables:  # the multi-index tables, on a set small enough to check by brute force
        monkeypatch.setattr(pdq_index, "FLAT_LIMIT", 100)
    index = PdqIndex(codes, distance)
    assert (index._orders is not None) == tables
    if tables:  # with 16 substrings, 40 needs two flips per probe: both probe depths run
        assert index.substrings == 16
    picks = rng.integers(0, len(codes), 60)
    queries = np.concatenate(
        [
            _flip(codes[picks[i::4]], bits, rng)
            for i, bits in enumerate((0, distance, distance + 1, 20))
        ]
        + [rng.integers(0, 256, size=(20, 32), dtype=np.uint8)]
    )
    assert index.search(queries) == _brute(codes, queries, distance)


def test_a_query_at_the_distance_matches_and_one_past_it_does_not(monkeypatch):
    monkeypatch.setattr(pdq_index, "FLAT_LIMIT", 10)
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, size=(500, 32), dtype=np.uint8)
    index = PdqIndex(codes, 31)
    at, past = _flip(codes[:1], 31, rng), _flip(codes[:1], 32, rng)
    assert index.search(at) == [[(0, 31)]]
    assert index.search(past) == [[]]


def test_nearest_first_and_duplicates_in_many_tables_reported_once(monkeypatch):
    monkeypatch.setattr(pdq_index, "FLAT_LIMIT", 1)
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(1, 32), dtype=np.uint8)
    codes = np.concatenate([_flip(base, 9, rng), base, _flip(base, 3, rng)])
    [hits] = index_hits = PdqIndex(codes, 31).search(base)
    assert [d for _, d in hits] == [0, 3, 9] and hits[0][0] == 1
    assert len(index_hits) == 1


def test_empty_index_and_empty_queries():
    index = PdqIndex(np.empty((0, 32), dtype=np.uint8), 31)
    assert index.search(np.zeros((2, 32), dtype=np.uint8)) == [[], []]
    assert index.search(np.empty((0, 32), dtype=np.uint8)) == []


def test_memory_is_fixed_per_hash(monkeypatch):
    monkeypatch.setattr(pdq_index, "FLAT_LIMIT", 1)
    codes = np.random.default_rng(0).integers(0, 256, size=(1000, 32), dtype=np.uint8)
    index = PdqIndex(codes, 31)
    assert (index.sub_bits, index.substrings) == (16, 16)  # the fewest bits it uses
    assert index.nbytes == 1000 * (32 + 4 * 16) + 16 * ((1 << 16) + 1) * 4


def test_substring_width_follows_the_set_size():
    assert [pdq_index.sub_bits(n) for n in (10, 100_000, 1 << 20, 10_000_000, 10**9)] == [
        16, 17, 20, 23, 23,
    ]  # fmt: skip


def test_threads_share_the_queries_and_agree(monkeypatch):
    monkeypatch.setattr(pdq_index, "FLAT_LIMIT", 1)
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, size=(2000, 32), dtype=np.uint8)
    index = PdqIndex(codes, 31)
    queries = np.concatenate([_flip(codes[:40], 25, rng), codes[40:50]])
    assert index.search(queries, threads=3) == index.search(queries)


def test_numba_is_loaded_only_by_the_first_search(tmp_path):
    """vLLM's CPU engine processes, forked from the worker, fail on numba's objects: banks
    may load before the engine starts, so loading must not import it."""
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "import worker.app\n"
        "from worker.hashbanks import load_banks, pdq_index\n"
        "d = Path(sys.argv[1])\n"
        "(d / 'b.yaml').write_text('policies: [x]\\nlabel: 1\\nsignal_type: pdq\\n')\n"
        "codes = np.random.default_rng(0).integers(0, 256, (70000, 32), dtype=np.uint8)\n"
        "(d / 'b.txt').write_text(''.join(r.tobytes().hex() + '\\n' for r in codes))\n"
        "banks = load_banks(d, 31)\n"
        "assert banks._pdq.index._orders is not None  # the multi-index tables\n"
        "print(sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))\n"
        "banks.match_pdq([codes[0].tobytes().hex()])\n"
        "print(sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, check=True, timeout=300
    )
    assert out.stdout.decode().splitlines() == ["[]", "['llvmlite', 'numba']"]
