"""Review bands that meet an operator's goal on a labelled sample. Pure functions.

The worker's routing, per policy: the label is 1 when ``score >= threshold``; an item whose
score lies in ``[review_low, review_high)`` also goes to human review. Items outside the band
are decided automatically: **auto-positive** (``score >= review_high``), **auto-negative**
(``score < review_low``). Every suggestion puts ``threshold`` inside the band, so an automatic
decision is always "1 above the band, 0 below it".

Goals (see docs/evaluate.md):

* ``precision P``: auto-positives have precision >= P and auto-negatives have negative
  predictive value >= P; among such bands, the one that sends the fewest items to review.
* ``recall R``: at most 1 - R of the positives are auto-negative (so positives are flagged
  or reviewed with recall >= R) and at most 1 - R of the negatives are auto-positive; among
  such bands, the one that sends the fewest items to review.
* ``review budget B``: at most a share B of the items in review; among such bands, the one
  with the fewest wrong automatic decisions.

Ties go to fewer wrong automatic decisions, then to the lower band. Within the band the
threshold is the cut with the best F1 on the sample (the label a review item carries until a
person decides). Band edges fall halfway between two neighbouring sample scores, rounded to the
fewest decimals that keep them between, so a reader's rounding cannot move an item across.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import yaml

from .metrics import ratio

GOALS = ("precision", "recall", "review_budget")


@dataclass(frozen=True)
class Band:
    threshold: float
    review_low: float
    review_high: float


@dataclass(frozen=True)
class BandOutcome:
    """What a band does to a sample. Auto decisions use the threshold; review is the band."""

    auto_tp: int
    auto_fp: int
    auto_tn: int
    auto_fn: int
    review_positives: int
    review_negatives: int

    @property
    def n(self) -> int:
        return self.auto + self.review

    @property
    def auto(self) -> int:
        return self.auto_tp + self.auto_fp + self.auto_tn + self.auto_fn

    @property
    def review(self) -> int:
        return self.review_positives + self.review_negatives

    @property
    def review_share(self) -> float | None:
        return ratio(self.review, self.n)

    @property
    def precision(self) -> float | None:
        """Of the items flagged automatically, the share that are positives."""
        return ratio(self.auto_tp, self.auto_tp + self.auto_fp)

    @property
    def npv(self) -> float | None:
        """Of the items cleared automatically, the share that are negatives."""
        return ratio(self.auto_tn, self.auto_tn + self.auto_fn)

    @property
    def recall(self) -> float | None:
        """Of the positives decided automatically, the share flagged."""
        return ratio(self.auto_tp, self.auto_tp + self.auto_fn)

    @property
    def accuracy(self) -> float | None:
        """Of the automatic decisions, the share that are right."""
        return ratio(self.auto_tp + self.auto_tn, self.auto)

    @property
    def recall_with_review(self) -> float | None:
        """Of all positives, the share flagged or sent to review (reviewers decide right)."""
        positives = self.auto_tp + self.auto_fn + self.review_positives
        return ratio(self.auto_tp + self.review_positives, positives)

    @property
    def errors(self) -> int:
        return self.auto_fp + self.auto_fn


def band_outcome(scores: Sequence[float], labels: Sequence[int], band: Band) -> BandOutcome:
    tp = fp = tn = fn = review_pos = review_neg = 0
    for score, label in zip(scores, labels, strict=True):
        if band.review_low <= score < band.review_high:
            review_pos += label
            review_neg += 1 - label
        elif score >= band.threshold:
            tp += label
            fp += 1 - label
        else:
            fn += label
            tn += 1 - label
    return BandOutcome(tp, fp, tn, fn, review_pos, review_neg)


@dataclass(frozen=True)
class Suggestion:
    goal: str
    target: float
    band: Band
    outcome: BandOutcome


def between(low: float, high: float) -> float:
    """The shortest decimal v with low < v <= high, near their midpoint."""
    middle = (low + high) / 2
    for digits in range(1, 17):
        value = round(middle, digits)
        if low < value <= high:
            return value
    return high


@dataclass(frozen=True)
class _Cuts:
    """Candidate cuts over a sample. Cut k flags the items of the k-th lowest score and up.

    ``pos_below[k]``/``neg_below[k]``: positives/negatives scoring below cut k.
    """

    values: list[float]
    pos_below: list[int]
    neg_below: list[int]

    def __len__(self) -> int:
        return len(self.values)


def _cuts(scores: Sequence[float], labels: Sequence[int]) -> _Cuts:
    if any(not 0.0 <= s <= 1.0 for s in scores):
        raise ValueError("scores must lie in [0, 1]")
    groups: dict[float, list[int]] = {}
    for score, label in zip(scores, labels, strict=True):
        groups.setdefault(score, [0, 0])[label] += 1
    distinct = sorted(groups)
    values = [0.0] + [between(a, b) for a, b in zip(distinct, distinct[1:], strict=False)]
    pos_below, neg_below = [0], [0]
    for score in distinct:
        neg_below.append(neg_below[-1] + groups[score][0])
        pos_below.append(pos_below[-1] + groups[score][1])
    if not distinct or distinct[-1] == 1.0:
        # No cut can sit above a score of exactly 1.0: the top cut flags those items.
        return _Cuts(values, pos_below[:-1] or [0], neg_below[:-1] or [0])
    values.append(between(distinct[-1], 1.0))  # above every score: nothing flagged
    return _Cuts(values, pos_below, neg_below)


Check = Callable[[int], bool]


def for_precision(
    scores: Sequence[float], labels: Sequence[int], target: float
) -> Suggestion | None:
    cuts = _cuts(scores, labels)
    positives, negatives = sum(labels), len(labels) - sum(labels)

    def flagged_ok(k: int) -> bool:
        tp, fp = positives - cuts.pos_below[k], negatives - cuts.neg_below[k]
        return tp + fp == 0 or tp / (tp + fp) >= target

    def cleared_ok(k: int) -> bool:
        tn, fn = cuts.neg_below[k], cuts.pos_below[k]
        return tn + fn == 0 or tn / (tn + fn) >= target

    return _fewest_reviews(scores, labels, cuts, flagged_ok, cleared_ok, "precision", target)


def for_recall(scores: Sequence[float], labels: Sequence[int], target: float) -> Suggestion | None:
    cuts = _cuts(scores, labels)
    positives, negatives = sum(labels), len(labels) - sum(labels)

    def flagged_ok(k: int) -> bool:  # negatives that are not auto-flagged
        return negatives == 0 or cuts.neg_below[k] / negatives >= target

    def cleared_ok(k: int) -> bool:  # positives that are not auto-cleared
        return positives == 0 or (positives - cuts.pos_below[k]) / positives >= target

    return _fewest_reviews(scores, labels, cuts, flagged_ok, cleared_ok, "recall", target)


def for_review_budget(
    scores: Sequence[float], labels: Sequence[int], budget: float
) -> Suggestion | None:
    cuts = _cuts(scores, labels)
    negatives = len(labels) - sum(labels)
    allowed = math.floor(budget * len(labels) + 1e-9)
    below = [p + n for p, n in zip(cuts.pos_below, cuts.neg_below, strict=True)]
    best: tuple[tuple[int, int], int, int] | None = None
    high = 0
    for low in range(len(cuts)):
        high = max(high, low)
        while high + 1 < len(cuts) and below[high + 1] - below[low] <= allowed:
            high += 1
        errors = cuts.pos_below[low] + negatives - cuts.neg_below[high]
        key = (errors, below[high] - below[low])
        if best is None or key < best[0]:
            best = (key, low, high)
    if best is None:
        return None
    return _suggest(scores, labels, cuts, best[1], best[2], "review_budget", budget)


def _fewest_reviews(
    scores: Sequence[float],
    labels: Sequence[int],
    cuts: _Cuts,
    flagged_ok: Check,
    cleared_ok: Check,
    goal: str,
    target: float,
) -> Suggestion | None:
    negatives = len(labels) - sum(labels)
    below = [p + n for p, n in zip(cuts.pos_below, cuts.neg_below, strict=True)]
    best: tuple[tuple[int, int], int, int] | None = None
    low = -1  # the highest acceptable low edge at or under the current high edge
    for high in range(len(cuts)):
        if cleared_ok(high):
            low = high
        if low < 0 or not flagged_ok(high):
            continue
        reviewed = below[high] - below[low]
        errors = cuts.pos_below[low] + negatives - cuts.neg_below[high]
        key = (reviewed, errors)
        if best is None or key < best[0]:
            best = (key, low, high)
    if best is None:
        return None
    return _suggest(scores, labels, cuts, best[1], best[2], goal, target)


def _suggest(
    scores: Sequence[float],
    labels: Sequence[int],
    cuts: _Cuts,
    low: int,
    high: int,
    goal: str,
    target: float,
) -> Suggestion:
    threshold = _best_f1_cut(cuts, labels, low, high)
    band = Band(cuts.values[threshold], cuts.values[low], cuts.values[high])
    return Suggestion(goal, target, band, band_outcome(scores, labels, band))


def _best_f1_cut(cuts: _Cuts, labels: Sequence[int], low: int, high: int) -> int:
    positives, negatives = sum(labels), len(labels) - sum(labels)

    def quality(k: int) -> tuple[float, float]:
        tp, fn = positives - cuts.pos_below[k], cuts.pos_below[k]
        fp, tn = negatives - cuts.neg_below[k], cuts.neg_below[k]
        f1 = ratio(2 * tp, 2 * tp + fp + fn) or 0.0
        return f1, (tp + tn) / len(labels)

    # max() keeps the first of equals: the lowest cut with the best (F1, accuracy).
    return max(range(low, high + 1), key=quality)


def suggest(
    goal: str, scores: Sequence[float], labels: Sequence[int], target: float
) -> Suggestion | None:
    """The band for one goal; None when no band meets it on this sample."""
    finders = {"precision": for_precision, "recall": for_recall, "review_budget": for_review_budget}
    if not scores:
        return None
    return finders[goal](scores, labels, target)


def describe_goal(goal: str, target: float) -> str:
    names = {
        "precision": "target precision",
        "recall": "target recall",
        "review_budget": "review budget",
    }
    return f"{names[goal]} {target:g}"


def helm_values(goal: str, target: float, suggestions: Mapping[str, Suggestion | None]) -> str:
    """A values.yaml fragment for the chart's per-policy routing overrides (under config)."""
    bands = {
        policy: {
            "threshold": s.band.threshold,
            "review_low": s.band.review_low,
            "review_high": s.band.review_high,
        }
        for policy, s in suggestions.items()
        if s is not None
    }
    header = [f"# {describe_goal(goal, target)}, from the evaluation sample"]
    header += [
        f"# {policy}: no band meets the goal on this sample"
        for policy, s in suggestions.items()
        if s is None
    ]
    body = yaml.safe_dump({"config": {"routing": {"policies": bands}}}, sort_keys=False)
    return "\n".join(header) + "\n" + body
