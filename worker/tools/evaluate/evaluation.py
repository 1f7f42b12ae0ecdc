"""One evaluation: score the sample through the engine, then compute every figure.

``evaluate`` is the only async step; everything after the scores is pure (``summarize``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...catalog import Catalog, Entry
from ...config import MediaSettings
from ...engine import Classifier
from ...prompts import Overlong
from .dataset import BadRow, Pair, Row
from .metrics import (
    Confusion,
    Distribution,
    PrPoint,
    ReliabilityBin,
    Steerability,
    average_precision,
    confusion_of,
    distribution,
    expected_calibration_error,
    pr_curve,
    reliability,
    steerability,
)
from .runner import Advance, Failure, MediaHashes, Task, run_tasks
from .thresholds import Band, BandOutcome, Suggestion, band_outcome, suggest


@dataclass(frozen=True)
class Targets:
    precision: float | None = None
    recall: float | None = None
    review_budget: float | None = None

    def goals(self) -> list[tuple[str, float]]:
        wanted = (
            ("precision", self.precision),
            ("recall", self.recall),
            ("review_budget", self.review_budget),
        )
        return [(goal, target) for goal, target in wanted if target is not None]


@dataclass(frozen=True)
class Sample:
    """What was read: golden rows, contrastive pairs, and the rows that could not be used."""

    rows: list[Row]
    pairs: list[Pair] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    rows_source: str = "dataset"
    pairs_source: str = "pairs"


@dataclass(frozen=True)
class Item:
    line: int
    id: str
    content: str
    label: int
    score: float
    predicted: int


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    title: str
    version: str
    band: Band
    items: list[Item]
    confusion: Confusion
    positives: Distribution
    negatives: Distribution
    curve: list[PrPoint]
    average_precision: float | None
    reliability: list[ReliabilityBin]
    calibration_error: float | None
    current: BandOutcome
    suggestions: dict[str, Suggestion | None]


@dataclass(frozen=True)
class PairResult:
    pair: Pair
    score_pos: float
    score_neg: float
    label_pos: int
    label_neg: int


@dataclass(frozen=True)
class SteerabilityResult:
    summary: Steerability
    pairs: list[PairResult]


@dataclass(frozen=True)
class Flip:
    line: int
    id: str
    content: str
    label: int
    before_score: float
    before_label: int
    after_score: float
    after_label: int


@dataclass(frozen=True)
class Comparison:
    policy: str
    before_version: str
    after_name: str
    after_version: str
    before: Confusion
    after: Confusion
    before_ap: float | None
    after_ap: float | None
    flips: list[Flip]


@dataclass(frozen=True)
class Evaluation:
    model: str
    targets: Targets
    policies: list[PolicyResult]
    overall: Confusion | None
    steerability: SteerabilityResult | None
    comparison: Comparison | None
    bad_rows: list[BadRow]
    # Rows the hash banks decide (bank_check.BankCheck); None when no banks are configured.
    bank_checks: list[Any] | None = None


@dataclass(frozen=True)
class Plan:
    """What to score: the sample, the compiled policies, and an optional second version."""

    catalog: Catalog
    sample: Sample
    targets: Targets
    primary: str | None = None
    other: Entry | None = None


async def evaluate(
    classifier: Classifier,
    plan: Plan,
    overlong: Overlong,
    max_retries: int,
    advance: Advance | None = None,
    media: MediaSettings | None = None,
    hashes: MediaHashes | None = None,
) -> Evaluation:
    """``media``: the limits and allowed hosts for rows' media (the worker's settings);
    ``hashes``: the banks' signal types to compute for them, filled as they are."""
    tasks = plan_tasks(plan)
    scores = await run_tasks(
        classifier, tasks, overlong, max_retries, advance=advance, media=media, hashes=hashes
    )
    return summarize(plan, scores, classifier.model_name)


def plan_tasks(plan: Plan) -> list[Task]:
    entries = plan.catalog.entries
    rows = plan.sample.rows
    tasks = [Task(("row", i), r.content, entries[r.policy], r.media) for i, r in enumerate(rows)]
    if plan.other is not None:
        tasks += [
            Task(("other", i), r.content, plan.other, r.media)
            for i, r in enumerate(plan.sample.rows)
            if r.policy == plan.primary
        ]
    for i, pair in enumerate(plan.sample.pairs):
        tasks.append(Task(("pos", i), pair.content, entries[pair.policy_pos]))
        tasks.append(Task(("neg", i), pair.content, entries[pair.policy_neg]))
    return tasks


def summarize(plan: Plan, scores: dict[Hashable, float | Failure], model: str) -> Evaluation:
    sample = plan.sample
    bad = list(sample.bad_rows)
    items: dict[str, list[Item]] = {}
    for i, row in enumerate(sample.rows):
        score = scores[("row", i)]
        if isinstance(score, Failure):
            bad.append(BadRow(sample.rows_source, row.line, f"{score.kind}: {score.reason}"))
            continue
        predicted = plan.catalog.entries[row.policy].thresholds.label(score)
        item = Item(row.line, row.id, row.shown, row.label, score, predicted)
        items.setdefault(row.policy, []).append(item)
    results = [
        policy_result(plan.catalog.entries[policy], items[policy], plan.targets)
        for policy in sorted(items)
    ]
    everything = [item for result in results for item in result.items]
    overall = (
        confusion_of([i.predicted for i in everything], [i.label for i in everything])
        if len(results) > 1
        else None
    )
    steered = _steerability(plan, scores, bad)
    compared = _comparison(plan, scores, items, bad)
    return Evaluation(
        model=model,
        targets=plan.targets,
        policies=results,
        overall=overall,
        steerability=steered,
        comparison=compared,
        bad_rows=sorted(bad, key=lambda b: (b.source, b.line)),
    )


def policy_result(entry: Entry, items: Sequence[Item], targets: Targets) -> PolicyResult:
    scores = [i.score for i in items]
    labels = [i.label for i in items]
    thresholds = entry.thresholds
    band = Band(thresholds.threshold, thresholds.review_low, thresholds.review_high)
    curve = pr_curve(scores, labels)
    bins = reliability(scores, labels)
    return PolicyResult(
        policy=entry.policy.id,
        title=entry.policy.title,
        version=entry.policy.version,
        band=band,
        items=list(items),
        confusion=confusion_of([i.predicted for i in items], labels),
        positives=distribution([i.score for i in items if i.label == 1]),
        negatives=distribution([i.score for i in items if i.label == 0]),
        curve=curve,
        average_precision=average_precision(curve),
        reliability=bins,
        calibration_error=expected_calibration_error(bins),
        current=band_outcome(scores, labels, band),
        suggestions={goal: suggest(goal, scores, labels, t) for goal, t in targets.goals()},
    )


def _steerability(
    plan: Plan, scores: dict[Hashable, float | Failure], bad: list[BadRow]
) -> SteerabilityResult | None:
    if not plan.sample.pairs and not any(b.source == plan.sample.pairs_source for b in bad):
        return None
    entries = plan.catalog.entries
    results = []
    for i, pair in enumerate(plan.sample.pairs):
        pos, neg = scores[("pos", i)], scores[("neg", i)]
        if isinstance(pos, Failure) or isinstance(neg, Failure):
            failure = pos if isinstance(pos, Failure) else neg
            reason = f"{failure.kind}: {failure.reason}"
            bad.append(BadRow(plan.sample.pairs_source, pair.line, reason))
            continue
        label_pos = entries[pair.policy_pos].thresholds.label(pos)
        label_neg = entries[pair.policy_neg].thresholds.label(neg)
        results.append(PairResult(pair, pos, neg, label_pos, label_neg))
    summary = steerability([(r.label_pos, r.label_neg) for r in results])
    return SteerabilityResult(summary, results)


def _comparison(
    plan: Plan,
    scores: dict[Hashable, float | Failure],
    items: dict[str, list[Item]],
    bad: list[BadRow],
) -> Comparison | None:
    if plan.other is None or plan.primary is None:
        return None
    before_items = {item.line: item for item in items.get(plan.primary, [])}
    pairs: list[tuple[Item, float, int]] = []
    for i, row in enumerate(plan.sample.rows):
        if row.policy != plan.primary or row.line not in before_items:
            continue
        after = scores[("other", i)]
        if isinstance(after, Failure):
            reason = f"compared version: {after.kind}: {after.reason}"
            bad.append(BadRow(plan.sample.rows_source, row.line, reason))
            continue
        pairs.append((before_items[row.line], after, plan.other.thresholds.label(after)))
    return compare(plan.catalog.entries[plan.primary], plan.other, pairs)


def compare(before: Entry, after: Entry, scored: Sequence[tuple[Item, float, int]]) -> Comparison:
    """Side-by-side figures of two policy versions on the same items, and the label flips."""
    labels = [item.label for item, _, _ in scored]
    flips = [
        Flip(item.line, item.id, item.content, item.label, item.score, item.predicted, score, label)
        for item, score, label in scored
        if label != item.predicted
    ]
    before_curve = pr_curve([item.score for item, _, _ in scored], labels)
    after_curve = pr_curve([score for _, score, _ in scored], labels)
    return Comparison(
        policy=before.policy.id,
        before_version=before.policy.version,
        after_name=_name(after),
        after_version=after.policy.version,
        before=confusion_of([item.predicted for item, _, _ in scored], labels),
        after=confusion_of([label for _, _, label in scored], labels),
        before_ap=average_precision(before_curve),
        after_ap=average_precision(after_curve),
        flips=flips,
    )


def _name(entry: Entry) -> str:
    policy = entry.policy
    return f"{policy.id} ({policy.path})" if policy.path else policy.id
