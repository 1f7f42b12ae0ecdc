"""From an item's bank matches to the policies they decide. Pure functions.

A policy is decided when any matching bank covers it. Label 1 wins: a known-good bank
(label 0) can never hide a known-bad match (label 1) from another bank, whatever the order
or distance. Among the banks giving the winning label, any that routes to review sends the
item to review, and the nearest match (then the bank's name) is the one the verdict names.

An event has parts (its text, each image or video): a label-1 match on any part decides the
policy, but a label-0 match decides it only when every part is known good for it, so a
known-good caption cannot pass an unknown picture, nor a known-good meme a new caption.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .banks import Match


@dataclass(frozen=True)
class Decision:
    """One policy decided by the banks, without the model."""

    label: Literal[0, 1]
    route: Literal["auto", "review"]
    match: Match  # the match the verdict names


def decide(matches: Sequence[Match], policies: Iterable[str]) -> dict[str, Decision]:
    """The decision per policy (of ``policies``) that the matches cover; others are absent."""
    decided = {}
    for policy in policies:
        covering = [m for m in matches if policy in m.bank.policies]
        if not covering:
            continue
        label = max(m.bank.label for m in covering)
        winners = [m for m in covering if m.bank.label == label]
        route = "review" if any(m.bank.route == "review" for m in winners) else "auto"
        named = min(winners, key=lambda m: (m.distance, m.bank.name, m.signal_type))
        decided[policy] = Decision(label, route, named)
    return decided


def decide_parts(parts: Sequence[Sequence[Match]], policies: Iterable[str]) -> dict[str, Decision]:
    """The decision per policy for an event of several parts (``parts``: each part's
    matches): ``decide`` over all of them, label-0 decisions kept only where every part
    has one."""
    wanted = list(policies)
    decided = decide([match for part in parts for match in part], wanted)
    if all(decision.label == 1 for decision in decided.values()):
        return decided
    each = [decide(part, wanted) for part in parts]
    return {
        policy: decision
        for policy, decision in decided.items()
        if decision.label == 1 or all(policy in part for part in each)
    }
