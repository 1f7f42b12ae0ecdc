"""Audit sampling: which automatically decided items are also copied to review. Pure functions.

The review band alone is a biased sample (only uncertain items reach it), so it cannot tell
how often automatic decisions are right. A fixed share of automatic decisions, per policy and
per label, is therefore copied to review as well. The choice is a hash of the item id and the
policy, not a random draw: a redelivered item is sampled again exactly when it was sampled the
first time, and each policy's draw is independent of the others'.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .config import RoutingSettings
from .events import PolicyVerdict

_SCALE = float(2**64)


def audit_rate(policy: str, label: int, routing: RoutingSettings) -> float:
    """The configured audit share for one policy's label: its override, else the global one."""
    name = "audit_label_1" if label == 1 else "audit_label_0"
    override = routing.override(policy)
    value = getattr(override, name, None) if override is not None else None
    return float(value if value is not None else getattr(routing, name))


def draw(item_id: str, policy: str) -> float:
    """A number in [0, 1) fixed by the item id and the policy, uniform over ids."""
    digest = hashlib.sha256(f"{policy}\x00{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def audit_sample(
    item_id: str, verdicts: Sequence[PolicyVerdict], routing: RoutingSettings
) -> dict[str, float]:
    """The policies whose automatic decision on this item is audited, with their rates.

    Empty when none is: then no audit copy is sent. Only call it for items routed ``auto``:
    items in the review band reach reviewers anyway.
    """
    sampled = {}
    for verdict in verdicts:
        rate = audit_rate(verdict.policy, verdict.label, routing)
        if rate > 0 and draw(item_id, verdict.policy) < rate:
            sampled[verdict.policy] = rate
    return sampled
