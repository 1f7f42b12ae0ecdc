"""Estimates from reviewed samples, weighted by how likely each item was to be reviewed.

Pure functions. An audit copy of an automatic decision reaches reviewers with a known
probability (its sampling rate), so each reviewed audit item stands for ``1 / rate`` automatic
decisions: inverse-probability (Horvitz-Thompson) weights. A share estimated from weighted
items gets a Wilson score interval computed on Kish's effective sample size
``(sum w)^2 / sum w^2``: with equal weights that is the plain Wilson interval; unequal weights
widen it as they should, because a few heavy items carry most of the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054  # two-sided 95 %


@dataclass(frozen=True)
class Estimate:
    """A share with its 95 % interval, from ``count`` reviewed items."""

    value: float
    low: float
    high: float
    count: int
    effective_n: float


@dataclass(frozen=True)
class Audited:
    """One reviewed audit copy: the automatic label, the reviewer's, and the sampling rate."""

    label: int
    decision: int
    rate: float

    @property
    def weight(self) -> float:
        return 1.0 / self.rate


def wilson(share: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a share observed on ``n`` (possibly fractional) items."""
    if n <= 0:
        return 0.0, 1.0
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def effective_n(weights: Sequence[float]) -> float:
    """Kish's effective sample size."""
    squares = sum(w * w for w in weights)
    return sum(weights) ** 2 / squares if squares else 0.0


def weighted_share(hits: Sequence[bool], weights: Sequence[float]) -> Estimate | None:
    """The weighted share of ``hits``; None when there are no items."""
    total = sum(weights)
    if not hits or total <= 0:
        return None
    value = sum(w for hit, w in zip(hits, weights, strict=True) if hit) / total
    n = effective_n(weights)
    low, high = wilson(value, n)
    return Estimate(value, low, high, len(hits), n)


def precision(audited: Sequence[Audited]) -> Estimate | None:
    """Of the automatic label-1 decisions, the share reviewers confirmed."""
    flagged = [a for a in audited if a.label == 1]
    return weighted_share([a.decision == 1 for a in flagged], [a.weight for a in flagged])


def recall(audited: Sequence[Audited]) -> Estimate | None:
    """Of the automatically decided items reviewers call 1, the share labelled 1.

    Needs audits of both labels: positives the model missed are only seen among the audited
    label-0 decisions, each standing for ``1 / rate`` of them.
    """
    positives = [a for a in audited if a.decision == 1]
    return weighted_share([a.label == 1 for a in positives], [a.weight for a in positives])


def negative_predictive_value(audited: Sequence[Audited]) -> Estimate | None:
    """Of the automatic label-0 decisions, the share reviewers confirmed."""
    cleared = [a for a in audited if a.label == 0]
    return weighted_share([a.decision == 0 for a in cleared], [a.weight for a in cleared])


def agreement(pairs: Sequence[tuple[int, int]]) -> Estimate | None:
    """Share of (model label, reviewer decision) pairs that agree; every pair weighs one."""
    return weighted_share([label == decision for label, decision in pairs], [1.0] * len(pairs))
