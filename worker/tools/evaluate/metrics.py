"""Classification metrics on scored samples. Pure functions of (scores, labels).

A score is P("1"); a label is the gold answer, 0 or 1. A ratio whose denominator is zero
(precision with nothing flagged, recall with no positives) is ``None``: "undefined" must not
read as a perfect or a failing figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

QUANTILES: tuple[float, ...] = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Confusion:
    """Counts of predicted (score >= threshold) against gold labels."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def precision(self) -> float | None:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float | None:
        return ratio(self.tp + self.tn, self.n)

    @property
    def npv(self) -> float | None:
        """Negative predictive value: the share of items labelled 0 that are negatives."""
        return ratio(self.tn, self.tn + self.fn)


def confusion(scores: Sequence[float], labels: Sequence[int], threshold: float) -> Confusion:
    return confusion_of([1 if s >= threshold else 0 for s in scores], labels)


def confusion_of(predicted: Sequence[int], labels: Sequence[int]) -> Confusion:
    """Confusion of labels already decided (each item may have had its own threshold)."""
    tp = fp = tn = fn = 0
    for guess, label in zip(predicted, labels, strict=True):
        if guess and label:
            tp += 1
        elif guess:
            fp += 1
        elif label:
            fn += 1
        else:
            tn += 1
    return Confusion(tp, fp, tn, fn)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("quantile of an empty sample")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def histogram(values: Sequence[float], bins: int = 10) -> list[int]:
    """Counts in equal-width bins over [0, 1]; the last bin includes 1.0."""
    counts = [0] * bins
    for value in values:
        counts[min(int(value * bins), bins - 1)] += 1
    return counts


@dataclass(frozen=True)
class Distribution:
    """Scores of one gold class: quantiles (keyed by q) and a 10-bin histogram."""

    count: int
    quantiles: dict[float, float]
    histogram: list[int]


def distribution(values: Sequence[float]) -> Distribution:
    quantiles = {q: quantile(values, q) for q in QUANTILES} if values else {}
    return Distribution(len(values), quantiles, histogram(values))


@dataclass(frozen=True)
class PrPoint:
    """Precision and recall when every item scoring at least ``threshold`` is flagged."""

    threshold: float
    precision: float
    recall: float


def pr_curve(scores: Sequence[float], labels: Sequence[int]) -> list[PrPoint]:
    """One point per distinct score, from the highest threshold down. Empty without positives."""
    positives = sum(labels)
    if not positives:
        return []
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: -p[0])
    points: list[PrPoint] = []
    tp = flagged = 0
    for index, (score, label) in enumerate(pairs):
        tp += label
        flagged += 1
        last_of_its_score = index + 1 == len(pairs) or pairs[index + 1][0] != score
        if last_of_its_score:
            points.append(PrPoint(score, tp / flagged, tp / positives))
    return points


def average_precision(curve: Sequence[PrPoint]) -> float | None:
    """Sum over the curve of (recall gained) x (precision there); None without positives."""
    if not curve:
        return None
    total, previous_recall = 0.0, 0.0
    for point in curve:
        total += (point.recall - previous_recall) * point.precision
        previous_recall = point.recall
    return total


@dataclass(frozen=True)
class ReliabilityBin:
    """Items whose score lies in [low, high): how confident the model was, how often right."""

    low: float
    high: float
    count: int
    mean_score: float | None
    positive_rate: float | None


def reliability(
    scores: Sequence[float], labels: Sequence[int], bins: int = 10
) -> list[ReliabilityBin]:
    sums = [0.0] * bins
    positives = [0] * bins
    counts = [0] * bins
    for score, label in zip(scores, labels, strict=True):
        index = min(int(score * bins), bins - 1)
        sums[index] += score
        positives[index] += label
        counts[index] += 1
    return [
        ReliabilityBin(
            low=i / bins,
            high=(i + 1) / bins,
            count=counts[i],
            mean_score=sums[i] / counts[i] if counts[i] else None,
            positive_rate=ratio(positives[i], counts[i]),
        )
        for i in range(bins)
    ]


def expected_calibration_error(bins: Sequence[ReliabilityBin]) -> float | None:
    """Mean gap between predicted score and observed positive rate, weighted by bin size."""
    total = sum(b.count for b in bins)
    if not total:
        return None
    gap = sum(
        b.count * abs(b.mean_score - b.positive_rate)
        for b in bins
        if b.count and b.mean_score is not None and b.positive_rate is not None
    )
    return gap / total


@dataclass(frozen=True)
class Steerability:
    """Contrastive pairs: each content meets one policy (positive) and not another (negative)."""

    pairs: int
    both_right: int
    positive_right: int
    negative_right: int

    @property
    def pair_accuracy(self) -> float | None:
        return ratio(self.both_right, self.pairs)

    @property
    def positive_accuracy(self) -> float | None:
        return ratio(self.positive_right, self.pairs)

    @property
    def negative_accuracy(self) -> float | None:
        return ratio(self.negative_right, self.pairs)


def steerability(outcomes: Sequence[tuple[int, int]]) -> Steerability:
    """From (label under the positive policy, label under the negative policy) per pair."""
    positive_right = sum(1 for pos, _ in outcomes if pos == 1)
    negative_right = sum(1 for _, neg in outcomes if neg == 0)
    both = sum(1 for pos, neg in outcomes if pos == 1 and neg == 0)
    return Steerability(len(outcomes), both, positive_right, negative_right)
