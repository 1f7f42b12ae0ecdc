"""A loaded set of banks: which banks an item's signals match, and at what distance.

Exact signals (text, URLs, video digests) are looked up in dictionaries; PDQ hashes of all
banks share one ``PdqIndex`` of unique hashes, each hash pointing at the banks that hold
it. A ``BankSet`` is immutable: a reload builds a new one off the event loop and swaps it in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import Bank, Signals, read_directory
from .pdq_index import HASH_BYTES, PdqIndex
from .signals import (
    PDQ,
    PDQ_MIN_QUALITY,
    TEXT_TYPES,
    URL,
    URL_MD5,
    VIDEO_TYPES,
    MediaSignals,
    image_pdq,
    pdq_bytes,
    text_key,
    url_key,
    url_md5,
    urls_in,
    video_keys,
)

# What a content's signal is looked up as, per entry type: text entries of both types meet
# the content's text key in one table.
_TABLE = {**dict.fromkeys(TEXT_TYPES, "text"), URL: URL, URL_MD5: URL_MD5}
_TABLE.update({t: t for t in VIDEO_TYPES})


@dataclass(frozen=True)
class Match:
    """One bank holding one of an item's signals; ``distance`` is 0 for exact types."""

    bank: Bank
    signal_type: str
    distance: int = 0


class BankSet:
    """Banks and their signals, ready to match."""

    def __init__(
        self, banks: Sequence[tuple[Bank, Signals]], pdq_distance: int, source: Path
    ) -> None:
        self.source = source
        self.banks: tuple[Bank, ...] = tuple(bank for bank, _ in banks)
        self.counts: dict[tuple[str, str], int] = {}  # (bank, signal type): entries
        self._exact: dict[str, dict[str, tuple[tuple[int, str], ...]]] = {}
        for number, (bank, signals) in enumerate(banks):
            if len(signals.pdq):
                self.counts[(bank.name, PDQ)] = len(signals.pdq)
            for entry in signals.entries:
                kind = (bank.name, entry.signal_type)
                self.counts[kind] = self.counts.get(kind, 0) + 1
                table = self._exact.setdefault(_TABLE[entry.signal_type], {})
                owners = table.get(entry.key, ())
                if (number, entry.signal_type) not in owners:
                    table[entry.key] = (*owners, (number, entry.signal_type))
        codes = [signals.pdq for _, signals in banks]
        holders = np.repeat(np.arange(len(codes), dtype=np.int32), [len(c) for c in codes])
        all_codes = np.concatenate(codes) if codes else np.empty((0, HASH_BYTES), np.uint8)
        self._pdq = _PdqOwners(all_codes, holders, pdq_distance)

    @property
    def pdq_hashes(self) -> int:
        return len(self._pdq.index)

    @property
    def signal_types(self) -> frozenset[str]:
        """The signal types some bank holds: media items are hashed for these only."""
        return frozenset(signal_type for _, signal_type in self.counts)

    def warm(self) -> None:
        """Run one PDQ lookup, so that the first event's does not compile the probe loop.

        Blocking (a second or two for a large index), and it imports numba: call it off the
        event loop, once the engine has started."""
        if self.pdq_hashes:
            self._pdq.search(["0" * 64])

    def __len__(self) -> int:
        return len(self.banks)

    def match_text(self, content: str) -> list[Match]:
        """Banks holding this exact text (as the prompt carries it) or a URL it names."""
        found = self._lookup("text", text_key(content))
        for url in urls_in(content):
            found += self._lookup(URL, url_key(url)) + self._lookup(URL_MD5, url_md5(url))
        return found

    def match_video(self, data: bytes) -> list[Match]:
        """Banks holding this video file's MD5 or SHA-256."""
        found: list[Match] = []
        for signal_type, key in video_keys(data).items():
            found += self._lookup(signal_type, key)
        return found

    def match_image(self, data: bytes) -> list[Match]:
        """Banks holding a PDQ hash within the distance of this image's; none for an image
        whose hash quality is too low to tell. Raises SignalError if it cannot be decoded."""
        digest, quality = image_pdq(data)
        if quality < PDQ_MIN_QUALITY:
            return []
        return self.match_pdq([digest])[0]

    def match_media(self, items: Sequence[MediaSignals]) -> list[list[Match]]:
        """Per item, the banks holding one of its signals (computed by ``media_signals``):
        lookups only, all the items' PDQ hashes in one search."""
        hashes = [item.pdq for item in items if item.pdq is not None]
        near = iter(self.match_pdq(hashes))
        found = []
        for item in items:
            matches = next(near) if item.pdq is not None else []
            for signal_type, key in item.keys.items():
                matches += self._lookup(signal_type, key)
            found.append(matches)
        return found

    def match_pdq(self, hashes: Sequence[str]) -> list[list[Match]]:
        """Per PDQ hash (64 hex digits), the banks holding one within the distance."""
        return [
            [Match(self.banks[owner], PDQ, distance) for owner, distance in hits]
            for hits in self._pdq.search(hashes)
        ]

    def _lookup(self, table: str, key: str) -> list[Match]:
        owners = self._exact.get(table, {}).get(key, ())
        return [Match(self.banks[number], signal_type) for number, signal_type in owners]


class _PdqOwners:
    """The PDQ index of unique hashes, and which banks hold each."""

    def __init__(self, codes: np.ndarray, owner: np.ndarray, distance: int) -> None:
        unique, inverse = np.unique(codes, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(inverse, kind="stable")
        self._owners = owner[order]
        self._starts = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        self.index = PdqIndex(unique, distance)

    def search(self, hashes: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Per hash: (bank number, distance), nearest first, each bank once."""
        if not hashes:
            return []
        queries = np.frombuffer(b"".join(map(pdq_bytes, hashes)), dtype=np.uint8)
        results = []
        for hits in self.index.search(queries.reshape(-1, HASH_BYTES)):
            best: dict[int, int] = {}
            for hash_id, distance in hits:  # nearest first: a bank keeps its nearest hash
                for owner in self._owners[self._starts[hash_id] : self._starts[hash_id + 1]]:
                    best.setdefault(int(owner), distance)
            results.append(sorted(best.items(), key=lambda item: (item[1], item[0])))
        return results


def load_banks(directory: Path, pdq_distance: int) -> BankSet:
    """Read and index a bank directory. Raises BankError naming the file and line at fault.

    CPU-bound for large banks: call it off the event loop."""
    return BankSet(read_directory(directory), pdq_distance, directory)
