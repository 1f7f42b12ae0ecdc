"""Evaluation metrics against values computed by hand."""

import pytest

from worker.tools.evaluate.metrics import (
    Confusion,
    average_precision,
    confusion,
    confusion_of,
    distribution,
    expected_calibration_error,
    histogram,
    pr_curve,
    quantile,
    reliability,
    steerability,
)

SCORES = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1]
LABELS = [1, 1, 0, 1, 0, 1, 0, 0]


def test_confusion_and_ratios_at_a_threshold():
    # >= 0.65 flags 0.9, 0.8 (positives) and 0.7 (negative); 0.6 and 0.3 are missed positives.
    c = confusion(SCORES, LABELS, 0.65)
    assert c == Confusion(tp=2, fp=1, tn=3, fn=2)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 4)
    assert c.f1 == pytest.approx(4 / 7)  # 2tp / (2tp + fp + fn)
    assert c.accuracy == pytest.approx(5 / 8)
    assert c.npv == pytest.approx(3 / 5)


def test_threshold_is_inclusive():
    assert confusion([0.5], [1], 0.5) == Confusion(tp=1, fp=0, tn=0, fn=0)


def test_undefined_ratios_are_none_not_zero():
    c = confusion([0.1, 0.2], [0, 0], 0.5)
    assert c == Confusion(tp=0, fp=0, tn=2, fn=0)
    assert c.precision is None and c.recall is None and c.f1 is None
    assert c.accuracy == 1.0 and c.npv == 1.0


def test_confusion_of_decided_labels():
    assert confusion_of([1, 0, 1, 0], [1, 1, 0, 0]) == Confusion(tp=1, fp=1, tn=1, fn=1)


def test_quantiles_interpolate_linearly():
    values = [0.4, 0.1, 0.3, 0.2]
    assert quantile(values, 0.0) == pytest.approx(0.1)
    assert quantile(values, 0.5) == pytest.approx(0.25)  # halfway between 0.2 and 0.3
    assert quantile(values, 0.05) == pytest.approx(0.115)  # rank 0.15: 0.1 + 0.15 * 0.1
    assert quantile(values, 1.0) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_histogram_bins_include_one_in_the_last():
    assert histogram([0.0, 0.05, 0.1, 0.55, 0.999, 1.0]) == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]


def test_distribution_of_one_class():
    d = distribution([0.9, 0.8, 0.6, 0.3])
    assert d.count == 4
    assert d.quantiles[0.5] == pytest.approx(0.7)
    assert d.quantiles[0.0] == 0.3 and d.quantiles[1.0] == 0.9
    assert sum(d.histogram) == 4 and d.histogram[9] == 1 and d.histogram[3] == 1
    assert distribution([]).quantiles == {}


def test_pr_curve_points_and_average_precision():
    curve = pr_curve(SCORES, LABELS)
    got = [(p.threshold, round(p.precision, 4), p.recall) for p in curve]
    assert got == [
        (0.9, 1.0, 0.25),
        (0.8, 1.0, 0.5),
        (0.7, round(2 / 3, 4), 0.5),
        (0.6, 0.75, 0.75),
        (0.4, 0.6, 0.75),
        (0.3, round(4 / 6, 4), 1.0),
        (0.2, round(4 / 7, 4), 1.0),
        (0.1, 0.5, 1.0),
    ]
    # Recall steps of 0.25 at precisions 1, 1, 0.75, 4/6: 0.5 + 3/16 + 1/6 = 41/48.
    assert average_precision(curve) == pytest.approx(41 / 48)


def test_pr_curve_groups_tied_scores():
    curve = pr_curve([0.5, 0.5, 0.2], [1, 0, 1])
    assert [(p.threshold, p.precision, p.recall) for p in curve] == [
        (0.5, 0.5, 0.5),
        (0.2, pytest.approx(2 / 3), 1.0),
    ]


def test_pr_curve_without_positives_is_empty():
    assert pr_curve([0.3, 0.7], [0, 0]) == []
    assert average_precision([]) is None


def test_reliability_bins_and_calibration_error():
    bins = reliability(SCORES, LABELS)
    assert [b.count for b in bins] == [0, 1, 1, 1, 1, 0, 1, 1, 1, 1]
    assert bins[0].mean_score is None and bins[0].positive_rate is None
    assert bins[7].mean_score == pytest.approx(0.7) and bins[7].positive_rate == 0.0
    assert bins[9].low == pytest.approx(0.9) and bins[9].high == pytest.approx(1.0)
    # |0.1-0| + |0.2-0| + |0.3-1| + |0.4-0| + |0.6-1| + |0.7-0| + |0.8-1| + |0.9-1| = 2.8
    assert expected_calibration_error(bins) == pytest.approx(2.8 / 8)
    assert expected_calibration_error(reliability([], [])) is None


def test_steerability_counts():
    s = steerability([(1, 0), (1, 1), (0, 0), (1, 0)])
    assert (s.pairs, s.both_right, s.positive_right, s.negative_right) == (4, 2, 3, 3)
    assert s.pair_accuracy == 0.5
    assert s.positive_accuracy == 0.75 and s.negative_accuracy == 0.75
    assert steerability([]).pair_accuracy is None
