"""A bounded cache of scores, so copies of the same text (spam waves, reposts) skip the engine.

The key is a hash of (model, policy version, content after the prompt's own normalization):
a policy edit or a model change makes new keys, so a stale score can never be served. Each
worker process keeps its own cache; entries leave it least recently used first, or after
``ttl_s``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from cachetools import TTLCache

from ..config import CacheSettings
from ..engine import Score
from ..prompts import neutralize_markers

# One entry as measured with tracemalloc: a 16-byte digest key, a Score and the cache's own
# LRU and expiry links. Keys are fixed-size hashes, so every entry costs the same and the
# byte bound is a bound on entries.
ENTRY_BYTES = 400


def cache_key(model: str, policy_version: str, content: str, media_sha256: str = "") -> bytes:
    """Hash of what decides the score. Content is normalized exactly as prompts see it; a
    media item counts by the sha256 of its bytes (text-only keys are unchanged by it)."""
    digest = hashlib.blake2b(digest_size=16)
    parts = (model, policy_version, neutralize_markers(content))
    for part in (*parts, media_sha256) if media_sha256 else parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))  # no two part lists hash alike
        digest.update(data)
    return digest.digest()


class VerdictCache:
    """Scores by key, bounded by entries and bytes, least recently used out first."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = max(1, min(max_entries, max_bytes // ENTRY_BYTES))
        self._entries: TTLCache[bytes, Score] = TTLCache(self.capacity, ttl_s, timer=clock)

    def get(self, key: bytes) -> Score | None:
        return self._entries.get(key)

    def put(self, key: bytes, score: Score) -> None:
        self._entries[key] = score

    def __len__(self) -> int:
        return len(self._entries)


def make_cache(settings: CacheSettings) -> VerdictCache | None:
    """The cache the settings ask for; None when it is disabled."""
    if not settings.enabled:
        return None
    return VerdictCache(settings.max_entries, settings.max_bytes, settings.ttl_s)
