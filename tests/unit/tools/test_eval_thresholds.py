"""Threshold suggestions on a constructed sample, checked against hand-derived bands.

The sample, in score order (label in brackets):

    0.02[0] 0.08[0] 0.18[0] 0.32[1] 0.38[0] 0.52[0] 0.58[1] 0.72[1] 0.88[1] 0.98[1]

Candidate cuts fall halfway between neighbours, rounded short: 0.05, 0.1, 0.2 (between 0.18
and 0.32), 0.35, 0.5 (0.38|0.52), 0.55 (0.52|0.58), 0.6, 0.8, 0.9 and 1.0 (above all).
"""

import pytest
import yaml

from worker.tools.evaluate.thresholds import (
    Band,
    BandOutcome,
    band_outcome,
    between,
    for_precision,
    for_recall,
    for_review_budget,
    helm_values,
    suggest,
)

SCORES = [0.02, 0.08, 0.18, 0.32, 0.38, 0.52, 0.58, 0.72, 0.88, 0.98]
LABELS = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1]


def test_between_picks_the_shortest_decimal_inside_the_gap():
    assert between(0.38, 0.52) == 0.5
    assert between(0.3, 0.4) == 0.35
    assert between(0.0004, 0.9995) == 0.5
    assert between(0.98, 1.0) == 1.0
    low, high = 0.123456, 0.123457
    assert low < between(low, high) <= high


def test_band_outcome_uses_the_threshold_outside_the_band():
    # Band [0.2, 0.8): 0.32, 0.38, 0.52, 0.58, 0.72 go to review (3 positives, 2 negatives).
    o = band_outcome(SCORES, LABELS, Band(threshold=0.5, review_low=0.2, review_high=0.8))
    assert o == BandOutcome(
        auto_tp=2, auto_fp=0, auto_tn=3, auto_fn=0, review_positives=3, review_negatives=2
    )
    assert o.review_share == 0.5
    assert o.precision == 1.0 and o.npv == 1.0 and o.recall == 1.0
    assert o.recall_with_review == 1.0 and o.errors == 0


def test_band_outcome_when_the_threshold_lies_outside_the_band():
    # 0.88 is outside [0.2, 0.8) but under the threshold 0.9: an automatic 0, a false negative.
    o = band_outcome(SCORES, LABELS, Band(threshold=0.9, review_low=0.2, review_high=0.8))
    assert (o.auto_tp, o.auto_fn, o.auto_tn) == (1, 1, 3)


def test_precision_target_with_a_review_band():
    # Auto-flag >= 0.55: {0.58 .. 0.98} all positive (0.52 would add a negative: 4/5 < 0.9).
    # Auto-clear < 0.2: {0.02, 0.08, 0.18} all negative (adding 0.32, a positive: 3/4 < 0.9).
    # Review: 0.32, 0.38, 0.52. Threshold: among cuts 0.2..0.55, F1 is best at 0.55 (8/9).
    s = for_precision(SCORES, LABELS, 0.9)
    assert s is not None
    assert s.band == Band(threshold=0.55, review_low=0.2, review_high=0.55)
    assert s.outcome == BandOutcome(4, 0, 3, 0, review_positives=1, review_negatives=2)
    assert s.outcome.review_share == pytest.approx(0.3)
    assert s.outcome.precision == 1.0 and s.outcome.npv == 1.0


def test_precision_target_met_without_review():
    # At cut 0.55 auto-positives have precision 4/4 and auto-negatives NPV 5/6 >= 0.8: no band
    # is needed. (Cut 0.5 also meets 0.8 on both sides but makes two errors, not one.)
    s = for_precision(SCORES, LABELS, 0.8)
    assert s is not None
    assert s.band == Band(threshold=0.55, review_low=0.55, review_high=0.55)
    assert s.outcome.review == 0 and s.outcome.errors == 1
    assert s.outcome.npv == pytest.approx(5 / 6)


def test_recall_target():
    # 0.8: at most 1 of 5 positives auto-cleared (low <= 0.55 allows 0.32 below), at most 1
    # of 5 negatives auto-flagged (high >= 0.5); one cut at 0.55 does both with one error.
    s = for_recall(SCORES, LABELS, 0.8)
    assert s is not None and s.band == Band(0.55, 0.55, 0.55)
    assert s.outcome.recall == pytest.approx(0.8) and s.outcome.recall_with_review == 0.8
    # 0.9: no positive may be auto-cleared (low <= 0.2), no negative auto-flagged (high >= 0.55).
    s = for_recall(SCORES, LABELS, 0.9)
    assert s is not None and s.band == Band(0.55, 0.2, 0.55)
    assert s.outcome.recall_with_review == 1.0 and s.outcome.review == 3


def test_review_budget():
    # One item may be reviewed: reviewing 0.52 (band [0.5, 0.55)) or 0.58 leaves one error
    # either way; the lower band wins the tie. Threshold 0.55: F1 8/9 beats 0.5's 8/10.
    s = for_review_budget(SCORES, LABELS, 0.1)
    assert s is not None
    assert s.band == Band(threshold=0.55, review_low=0.5, review_high=0.55)
    assert s.outcome == BandOutcome(4, 0, 4, 1, review_positives=0, review_negatives=1)
    # Three may be reviewed: 0.32, 0.38, 0.52 leave no error.
    s = for_review_budget(SCORES, LABELS, 0.3)
    assert s is not None and s.band == Band(0.55, 0.2, 0.55) and s.outcome.errors == 0
    # None: the best single cut.
    s = for_review_budget(SCORES, LABELS, 0.0)
    assert s is not None and s.band == Band(0.55, 0.55, 0.55)


def test_unreachable_target_gives_none():
    # A negative scores exactly 1.0: no cut can leave it out of the auto-positives.
    assert for_precision([1.0, 0.5], [0, 1], 1.0) is None
    assert suggest("precision", [], [], 0.9) is None


def test_scores_outside_unit_interval_are_rejected():
    with pytest.raises(ValueError):
        for_precision([1.5], [1], 0.9)


def test_helm_values_snippet():
    s = for_precision(SCORES, LABELS, 0.9)
    text = helm_values("precision", 0.9, {"fruit": s, "nature": None})
    assert text == (
        "# target precision 0.9, from the evaluation sample\n"
        "# nature: no band meets the goal on this sample\n"
        "config:\n"
        "  routing:\n"
        "    policies:\n"
        "      fruit:\n"
        "        threshold: 0.55\n"
        "        review_low: 0.2\n"
        "        review_high: 0.55\n"
    )
    assert yaml.safe_load(text) == {
        "config": {
            "routing": {
                "policies": {"fruit": {"threshold": 0.55, "review_low": 0.2, "review_high": 0.55}}
            }
        }
    }
