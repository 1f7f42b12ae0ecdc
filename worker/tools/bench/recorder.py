"""A Classifier wrapper that records, per prompt, its policy and how much came from cache."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...catalog import Catalog
from ...engine import Classifier, Score


@dataclass(frozen=True)
class Usage:
    """One prompt's token accounting, stamped with wall-clock completion time."""

    policy: str
    prompt_tokens: int
    cached_tokens: int
    done_at: float


class PolicyFingerprints:
    """Tells which policy a prompt belongs to from its first few tokens.

    Uses the shortest lead that differs between every pair of policy prefixes, so the
    lookup costs the same whatever the policies' length.
    """

    def __init__(self, catalog: Catalog) -> None:
        prefixes = {pid: e.prompt.prefix for pid, e in catalog.entries.items()}
        self.lead = _distinguishing_length(list(prefixes.values()))
        self._by_lead = {p[: self.lead]: pid for pid, p in prefixes.items()}

    def policy_of(self, prompt_token_ids: list[int]) -> str:
        return self._by_lead.get(tuple(prompt_token_ids[: self.lead]), "?")


def _distinguishing_length(prefixes: list[tuple[int, ...]]) -> int:
    # In sorted order, the longest prefix any two share is shared by two neighbours: one
    # pass over neighbours, not every pair (thousands of policies make millions of pairs).
    ordered = sorted(prefixes)
    longest_shared = 0
    for a, b in zip(ordered, ordered[1:], strict=False):
        shared = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            shared += 1
        longest_shared = max(longest_shared, shared)
    return longest_shared + 1


class RecordingClassifier:
    """Delegates to ``inner`` and keeps a Usage per answered prompt."""

    def __init__(self, inner: Classifier, catalog: Catalog) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.max_model_len = inner.max_model_len
        self.tokenizer = inner.tokenizer
        self.accepts_media = bool(getattr(inner, "accepts_media", False))
        self._fingerprints = PolicyFingerprints(catalog)
        self.usage: list[Usage] = []

    async def score(self, prompt_token_ids: list[int], media: Sequence[Any] = ()) -> Score:
        inner = self.inner
        score = await (
            inner.score(prompt_token_ids, media=media) if media else inner.score(prompt_token_ids)
        )
        if score.cached_tokens is None:  # not reported for this prompt
            return score
        policy = self._fingerprints.policy_of(prompt_token_ids)
        self.usage.append(Usage(policy, score.prompt_tokens, score.cached_tokens, time.time()))
        return score

    def close(self) -> None:
        self.inner.close()
