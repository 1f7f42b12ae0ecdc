import pytest

from worker.tools.evaluate.estimators import (
    Audited,
    agreement,
    effective_n,
    negative_predictive_value,
    precision,
    recall,
    weighted_share,
    wilson,
)


def test_wilson_matches_the_textbook_values():
    # 8 of 10: the interval Wilson (1927) gives, as every table lists it.
    low, high = wilson(0.8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0.0, 0) == (0.0, 1.0)
    low, high = wilson(1.0, 50)
    assert high == 1.0 and low == pytest.approx(0.9287, abs=1e-4)


def test_effective_n_is_n_for_equal_weights_and_smaller_otherwise():
    assert effective_n([5.0] * 8) == pytest.approx(8)
    assert effective_n([1.0, 1.0, 1.0, 9.0]) == pytest.approx(144 / 84)
    assert effective_n([]) == 0.0


def test_weighted_share_weighs_each_item():
    estimate = weighted_share([True, False, False], [2.0, 1.0, 1.0])
    assert estimate.value == pytest.approx(0.5) and estimate.count == 3
    assert estimate.low < 0.5 < estimate.high
    assert weighted_share([], []) is None


def test_recall_undoes_the_sampling_rates():
    # 100 flagged items audited at 50 %: 50 reviewed, all right. 1,000 cleared items audited
    # at 1 %: 10 reviewed, 2 of them positives, standing for 200 missed positives.
    audited = [Audited(1, 1, 0.5)] * 50 + [Audited(0, 1, 0.01)] * 2 + [Audited(0, 0, 0.01)] * 8
    assert precision(audited).value == 1.0
    assert negative_predictive_value(audited).value == pytest.approx(0.8)
    r = recall(audited)
    assert r.value == pytest.approx(100 / 300)  # not 50 / 52, the unweighted share
    # Weights 2 (x50) and 100 (x2): Kish gives 300^2 / (50 * 4 + 2 * 10,000).
    assert r.count == 52 and r.effective_n == pytest.approx(300**2 / 20_200)
    assert r.low < 100 / 300 < r.high


def test_precision_counts_reviewer_rejections():
    audited = [Audited(1, 1, 0.2)] * 3 + [Audited(1, 0, 0.2)]
    p = precision(audited)
    assert p.value == pytest.approx(0.75) and p.effective_n == pytest.approx(4)


def test_agreement_in_the_band():
    a = agreement([(1, 1), (1, 0), (0, 0), (0, 0)])
    assert a.value == 0.75 and a.count == 4
    assert agreement([]) is None
