"""Estimates from reviewed samples, weighted by how likely each item was to be reviewed.

Pure functions. An audit copy of an automatic decision reaches reviewers with a known
probability (its sampling rate), drawn for each decision on its own: Poisson sampling. Each
reviewed copy therefore stands for ``1 / rate`` automatic decisions (inverse-probability,
Horvitz-Thompson weights), and precision, recall and NPV are ratios of two weighted totals,
``R = sum(w * hit * in_domain) / sum(w * in_domain)``.

Intervals: the ratio's variance by linearization (Taylor / delta method) under Poisson
sampling, ``V = sum((w * (hit - R) * in_domain)^2) / (sum(w * in_domain))^2``, without the
finite-population correction (the figure describes the process, and the correction is
negligible at audit rates). That variance is turned into a design-based effective sample
size ``n* = R (1 - R) / V`` (Korn and Graubard, 1998), at most the reviewed count, and the
interval is the Wilson score interval with continuity correction (Newcombe, 1998) on ``n*``:
it stays inside [0, 1] and keeps its coverage with few reviewed items or a rare outcome.
When every reviewed item agrees (R is 0 or 1) the variance is 0 and says nothing; then
``n* = sum(w * in_domain) / w_max``, the count an unseen item of the heaviest weight among
the candidates would be one of. Unlike Kish's effective n, ``n*`` depends on the outcomes,
which matters for recall: its misses are the rare, heavily weighted audits of label 0.
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


@dataclass(frozen=True)
class Unit:
    """One reviewed item as a ratio sees it: its weight, whether it belongs to the ratio's
    domain (its denominator), and whether it counts as a hit (its numerator)."""

    weight: float
    in_domain: bool
    hit: bool


def wilson_cc(share: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval with continuity correction for a share on ``n`` (possibly
    fractional) items; Newcombe (1998), method 4."""
    if n <= 0:
        return 0.0, 1.0
    centre, scale = 2 * n * share + z * z, 2 * (n + z * z)
    low_root = z * z - 2 - 1 / n + 4 * share * (n * (1 - share) + 1)
    high_root = z * z + 2 - 1 / n + 4 * share * (n * (1 - share) - 1)
    low = 0.0 if share <= 0 else (centre - 1 - z * math.sqrt(max(low_root, 0.0))) / scale
    high = 1.0 if share >= 1 else (centre + 1 + z * math.sqrt(max(high_root, 0.0))) / scale
    return max(0.0, low), min(1.0, high)


def ratio(units: Sequence[Unit], z: float = Z_95) -> Estimate | None:
    """The weighted share of hits among the units in the domain, with its interval.

    ``units`` may include items outside the domain: they add nothing to the estimate, but
    their weights say how heavy an unseen domain item could be. None when the domain is empty.
    """
    domain = [u for u in units if u.in_domain]
    total = sum(u.weight for u in domain)
    if not domain or total <= 0:
        return None
    value = sum(u.weight for u in domain if u.hit) / total
    variance = sum((u.weight * (u.hit - value)) ** 2 for u in domain) / (total * total)
    if variance > 0 and 0 < value < 1:
        n_star = min(value * (1 - value) / variance, len(domain))
    else:  # every item agrees: the variance is 0 and cannot measure anything
        n_star = min(total / max(u.weight for u in units), len(domain))
    low, high = wilson_cc(value, n_star, z)
    return Estimate(value, low, high, len(domain), n_star)


def precision(audited: Sequence[Audited]) -> Estimate | None:
    """Of the automatic label-1 decisions, the share reviewers confirmed."""
    return ratio([Unit(a.weight, True, a.decision == 1) for a in audited if a.label == 1])


def recall(audited: Sequence[Audited]) -> Estimate | None:
    """Of the automatically decided items reviewers call 1, the share labelled 1.

    Needs audits of both labels: positives the model missed are only seen among the audited
    label-0 decisions, each standing for ``1 / rate`` of them.
    """
    return ratio([Unit(a.weight, a.decision == 1, a.label == 1) for a in audited])


def negative_predictive_value(audited: Sequence[Audited]) -> Estimate | None:
    """Of the automatic label-0 decisions, the share reviewers confirmed."""
    return ratio([Unit(a.weight, True, a.decision == 0) for a in audited if a.label == 0])


def agreement(pairs: Sequence[tuple[int, int]]) -> Estimate | None:
    """Share of (model label, reviewer decision) pairs that agree; every pair weighs one."""
    return ratio([Unit(1.0, True, label == decision) for label, decision in pairs])
