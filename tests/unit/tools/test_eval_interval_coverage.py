"""The 95 % intervals of ``eval decisions`` cover the truth 95 % of the time.

Many audits of populations whose precision, recall and NPV are known are simulated, each
through the real estimators: the audit is Poisson sampling, as the worker's hash-based draw
is (each automatic decision sampled on its own with its label's rate), so the number of
audited items of each (label, truth) cell is binomial. Seeds are fixed: the figures are the
same on every run. With RUNS audits a true 95 % coverage reads 95 % +- 1.4 points (3 standard
errors), so ">= 93 %" can only fail for an interval that really covers less.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from worker.tools.evaluate.estimators import (
    Audited,
    Estimate,
    negative_predictive_value,
    precision,
    recall,
)

RUNS = 1000
NOMINAL_FLOOR = 0.93  # 95 % minus simulation error
CEILING = 0.998  # valid, but not so wide that it says nothing


@dataclass(frozen=True)
class Design:
    """A period's automatic decisions of one policy and how they were audited."""

    decisions: int
    flagged_share: float
    precision: float
    recall: float
    rates_1: tuple[float, ...]  # several: the rate was changed during the period
    rate_0: float

    def cells(self) -> dict[tuple[int, int], int]:
        """(model label, reviewer's truth) -> number of automatic decisions."""
        flagged = round(self.decisions * self.flagged_share)
        true_pos = round(flagged * self.precision)
        missed = round(true_pos / self.recall) - true_pos
        cleared = self.decisions - flagged
        return {
            (1, 1): true_pos,
            (1, 0): flagged - true_pos,
            (0, 1): missed,
            (0, 0): cleared - missed,
        }

    def truth(self) -> dict[str, float]:
        c = self.cells()
        return {
            "precision": c[1, 1] / (c[1, 1] + c[1, 0]),
            "recall": c[1, 1] / (c[1, 1] + c[0, 1]),
            "npv": c[0, 0] / (c[0, 0] + c[0, 1]),
        }


DESIGNS = {
    # The docs' example: 1 % of flagged and 0.5 % of cleared decisions audited, recall 0.9.
    "docs example, 50k decisions": Design(50_000, 0.05, 0.9, 0.9, (0.01,), 0.005),
    "docs example, 20k decisions (small sample)": Design(20_000, 0.05, 0.9, 0.9, (0.01,), 0.005),
    "rare positives (0.2 % flagged), rates 25x apart": Design(
        200_000, 0.002, 0.8, 0.7, (0.05,), 0.002
    ),
    "rare positives, 1M decisions, rates 33x apart": Design(
        1_000_000, 0.005, 0.95, 0.9, (0.01,), 0.0003
    ),
    "very few copies (~30 reviewed)": Design(2_000, 0.2, 0.7, 0.8, (0.1,), 0.01),
    "near-perfect model": Design(50_000, 0.05, 0.99, 0.97, (0.02,), 0.005),
    "label-1 rate changed mid-period": Design(60_000, 0.03, 0.85, 0.8, (0.05, 0.01), 0.005),
}


def _audit(design: Design, rng: np.random.Generator) -> list[Audited]:
    audited: list[Audited] = []
    for (label, truth), count in design.cells().items():
        rates = design.rates_1 if label == 1 else (design.rate_0,)
        share = count // len(rates)  # the period's decisions, split evenly between its rates
        for rate in rates:
            audited += [Audited(label, truth, rate)] * int(rng.binomial(share, rate))
    return audited


def _coverage(design: Design, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    truth = design.truth()
    estimators = {"precision": precision, "recall": recall, "npv": negative_predictive_value}
    covered = dict.fromkeys(estimators, 0)
    made = dict.fromkeys(estimators, 0)
    for _ in range(RUNS):
        audited = _audit(design, rng)
        for name, estimator in estimators.items():
            estimate: Estimate | None = estimator(audited)
            if estimate is None:  # no reviewed item in the domain: no interval to judge
                continue
            made[name] += 1
            covered[name] += estimate.low <= truth[name] <= estimate.high
    assert min(made.values()) >= 0.9 * RUNS, f"too few estimates to judge: {made}"
    return {name: covered[name] / made[name] for name in estimators}


@pytest.mark.parametrize("name", list(DESIGNS))
def test_each_interval_covers_the_truth_at_its_nominal_level(name: str) -> None:
    design = DESIGNS[name]
    coverage = _coverage(design, seed=sorted(DESIGNS).index(name) + 1)
    for figure, share in coverage.items():
        assert share >= NOMINAL_FLOOR, f"{name}: {figure} covered {share:.3f}, truth {design}"
        assert share <= CEILING, f"{name}: {figure} covered {share:.3f}: needlessly wide"
