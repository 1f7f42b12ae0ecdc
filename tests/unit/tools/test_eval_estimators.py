import pytest

from worker.tools.evaluate.estimators import (
    Audited,
    Unit,
    agreement,
    negative_predictive_value,
    precision,
    ratio,
    recall,
    wilson_cc,
)


@pytest.mark.parametrize(
    ("hits", "n", "low", "high"),
    [
        (81, 263, 0.2535, 0.3682),
        (15, 148, 0.0598, 0.1644),
        (0, 20, 0.0, 0.2005),
        (1, 29, 0.0018, 0.1963),
    ],
)
def test_wilson_with_continuity_correction_matches_newcombes_table(hits, n, low, high):
    # Newcombe (1998), Statistics in Medicine 17:857-872, method 4: his worked examples.
    got = wilson_cc(hits / n, n)
    assert got == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


def test_no_items_give_no_estimate_and_no_information_the_whole_range():
    assert wilson_cc(0.5, 0) == (0.0, 1.0)
    assert ratio([]) is None
    assert ratio([Unit(3.0, False, True)]) is None  # nothing in the domain


def test_equal_weights_give_the_plain_share_on_the_reviewed_count():
    estimate = ratio([Unit(5.0, True, True)] * 6 + [Unit(5.0, True, False)] * 2)
    assert estimate.value == 0.75 and estimate.count == 8
    assert estimate.effective_n == pytest.approx(8)
    assert (estimate.low, estimate.high) == wilson_cc(0.75, 8)


def test_recall_undoes_the_sampling_rates_and_its_interval_follows_the_misses():
    # 100 flagged items audited at 50 %: 50 reviewed, all right. 1,000 cleared items audited
    # at 1 %: 10 reviewed, 2 of them positives, standing for 200 missed positives.
    audited = [Audited(1, 1, 0.5)] * 50 + [Audited(0, 1, 0.01)] * 2 + [Audited(0, 0, 0.01)] * 8
    assert precision(audited).value == 1.0
    assert negative_predictive_value(audited).value == pytest.approx(0.8)
    r = recall(audited)
    assert r.value == pytest.approx(100 / 300)  # not 50 / 52, the unweighted share
    # Linearized variance: 50 hits of weight 2 and 2 misses of weight 100 around R = 1/3.
    variance = (50 * (2 * 2 / 3) ** 2 + 2 * (100 / 3) ** 2) / 300**2
    assert r.count == 52 and r.effective_n == pytest.approx((1 / 3) * (2 / 3) / variance)
    assert (r.low, r.high) == wilson_cc(1 / 3, r.effective_n)


def test_when_every_item_agrees_the_heaviest_candidate_sets_the_effective_n():
    # No miss seen among 45 flagged copies (weight 100), but a miss would be a cleared copy of
    # weight 200: the 45 count as 4,500 / 200 = 22.5 such items, not as 45.
    audited = [Audited(1, 1, 0.01)] * 45 + [Audited(0, 0, 0.005)] * 400
    r = recall(audited)
    assert r.value == 1.0 and r.high == 1.0
    assert r.effective_n == pytest.approx(22.5)
    assert r.low == pytest.approx(wilson_cc(1.0, 22.5)[0]) and r.low < 0.9
    # Precision's candidates all weigh 100: its 45 count in full.
    assert precision(audited).effective_n == pytest.approx(45)


def test_precision_counts_reviewer_rejections():
    audited = [Audited(1, 1, 0.2)] * 3 + [Audited(1, 0, 0.2)]
    p = precision(audited)
    assert p.value == pytest.approx(0.75) and p.effective_n == pytest.approx(4)


def test_agreement_in_the_band():
    a = agreement([(1, 1), (1, 0), (0, 0), (0, 0)])
    assert a.value == 0.75 and a.count == 4
    assert agreement([]) is None
