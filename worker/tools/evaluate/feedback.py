"""What reviewers' decisions say about the automatic ones: joins and figures. Pure functions.

A decision answers one (item, policy) of a review record. Decisions on audit copies estimate
the precision and recall of automatic decisions, each weighted by the inverse of its sampling
rate (estimators.py); decisions in the review band measure how often the model's label there
agreed with the reviewer. Both together, band items weighing one and audit items ``1 / rate``
(rounded, as copies), form the sample that threshold and band suggestions are searched on:
the same search ``eval`` runs on a golden file (thresholds.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...decisions import Decision, decode_decision
from ...events import BadEvent
from .dataset import BadRow
from .estimators import (
    Audited,
    Estimate,
    agreement,
    negative_predictive_value,
    precision,
    recall,
)
from .evaluation import Targets
from .metrics import ReliabilityBin, reliability
from .records import Raw
from .thresholds import Suggestion, suggest

Key = tuple[str, str]  # (item id, policy)


@dataclass(frozen=True)
class Reviewed:
    """One policy's verdict in a review record."""

    id: str
    policy: str
    policy_version: str
    label: int
    score: float
    origin: str | None
    rate: float | None  # this policy's audit rate, when the record is its audit copy


@dataclass(frozen=True)
class Answered:
    reviewed: Reviewed
    decision: Decision


@dataclass(frozen=True)
class Unmatched:
    id: str
    policy: str
    reason: str


@dataclass(frozen=True)
class PolicyFeedback:
    policy: str
    audited: list[Audited]
    band: list[tuple[int, int]]  # (model label, reviewer decision)
    precision: Estimate | None
    recall: Estimate | None
    npv: Estimate | None
    agreement: Estimate | None
    reliability: list[ReliabilityBin]
    suggestions: dict[str, Suggestion | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    decisions_source: str
    verdicts_source: str
    targets: Targets
    policies: list[PolicyFeedback]
    decisions: int
    unmatched: list[Unmatched]
    bad_rows: list[BadRow]
    dead_lettered: int = 0


def parse_review_records(raws: Iterable[Raw]) -> tuple[dict[Key, Reviewed], list[BadRow]]:
    """Each (item, policy) of the review records; the last record of an item wins."""
    reviewed: dict[Key, Reviewed] = {}
    bad: list[BadRow] = []
    for raw in raws:
        try:
            for item in _review_items(orjson.loads(raw.value or b"null")):
                reviewed[(item.id, item.policy)] = item
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            bad.append(_bad(raw, f"not a review record: {type(exc).__name__}: {exc}"))
    return reviewed, bad


def _review_items(data: Any) -> list[Reviewed]:
    if not isinstance(data, dict):
        raise TypeError(f"JSON {type(data).__name__}, not an object")
    # Records written before audit copies existed carry no origin: the band put them there.
    origin = data.get("origin") or ("review_band" if data.get("route") == "review" else None)
    rates = data.get("audit_rates") or {}
    return [
        Reviewed(
            id=str(data["id"]),
            policy=str(v["policy"]),
            policy_version=str(v["policy_version"]),
            label=int(v["label"]),
            score=float(v["score"]),
            origin=origin,
            rate=float(rates[v["policy"]]) if v["policy"] in rates else None,
        )
        for v in data["verdicts"]
        # A bank's decision has no score to calibrate thresholds with.
        if v.get("source", "model") == "model"
    ]


def parse_decisions(raws: Iterable[Raw]) -> tuple[list[Decision], list[tuple[Raw, BadEvent]]]:
    decisions, bad = [], []
    for raw in raws:
        try:
            decisions.append(decode_decision(raw.value))
        except BadEvent as exc:
            bad.append((raw, exc))
    return decisions, bad


def bad_rows(bad: Sequence[tuple[Raw, BadEvent]]) -> list[BadRow]:
    return [_bad(raw, f"{error.kind}: {error.reason}") for raw, error in bad]


def _bad(raw: Raw, reason: str) -> BadRow:
    source, _, line = raw.where.rpartition(":")
    if raw.record is None and line.isdigit():
        return BadRow(source, int(line), reason)
    return BadRow(raw.where, 0, reason)


def join(
    decisions: Sequence[Decision], reviewed: dict[Key, Reviewed]
) -> tuple[list[Answered], list[Unmatched]]:
    """Pair each decision with the review record it answers; the latest decision wins."""
    latest: dict[Key, Decision] = {}
    for decision in sorted(decisions, key=lambda d: d.decided_at):
        latest[(decision.id, decision.policy)] = decision
    answered, unmatched = [], []
    for key, decision in latest.items():
        item = reviewed.get(key)
        reason = _mismatch(decision, item)
        if reason is None and item is not None:
            answered.append(Answered(item, decision))
        else:
            unmatched.append(Unmatched(decision.id, decision.policy, reason or "no review record"))
    return answered, unmatched


def _mismatch(decision: Decision, item: Reviewed | None) -> str | None:
    if item is None:
        return "no review record for this item and policy"
    if decision.policy_version not in (None, item.policy_version):
        return (
            f"answers policy version {decision.policy_version[:12]}, the review record has "
            f"{item.policy_version[:12]}"
        )
    if item.origin == "audit_sample" and item.rate is None:
        return "the audit copy did not sample this policy: its sampling rate is unknown"
    if item.origin is None:
        return "the verdict did not go to review (read the review topic, not the results)"
    return None


def policy_feedback(policy: str, answered: Sequence[Answered], targets: Targets) -> PolicyFeedback:
    audited = [
        Audited(a.reviewed.label, a.decision.decision, a.reviewed.rate)
        for a in answered
        if a.reviewed.origin == "audit_sample" and a.reviewed.rate
    ]
    band = [
        (a.reviewed.label, a.decision.decision)
        for a in answered
        if a.reviewed.origin == "review_band"
    ]
    scores, labels = weighted_sample(answered)
    return PolicyFeedback(
        policy=policy,
        audited=audited,
        band=band,
        precision=precision(audited),
        recall=recall(audited),
        npv=negative_predictive_value(audited),
        agreement=agreement(band),
        reliability=reliability(scores, labels),
        suggestions={goal: suggest(goal, scores, labels, t) for goal, t in targets.goals()},
    )


def weighted_sample(answered: Sequence[Answered]) -> tuple[list[float], list[int]]:
    """(score, decision) per reviewed item, an audit copy repeated round(1 / rate) times.

    Every band item reaches review, so each weighs one; an audit copy stands for the items
    of its label that were not sampled.
    """
    scores: list[float] = []
    labels: list[int] = []
    for a in answered:
        copies = round(1 / a.reviewed.rate) if a.reviewed.origin == "audit_sample" else 1
        scores += [a.reviewed.score] * copies
        labels += [a.decision.decision] * copies
    return scores, labels


def summarize(
    decisions: Sequence[Decision],
    reviewed: dict[Key, Reviewed],
    targets: Targets,
    sources: tuple[str, str],
    bad: list[BadRow],
    dead_lettered: int = 0,
) -> Feedback:
    answered, unmatched = join(decisions, reviewed)
    by_policy: dict[str, list[Answered]] = {}
    for a in answered:
        by_policy.setdefault(a.reviewed.policy, []).append(a)
    return Feedback(
        decisions_source=sources[0],
        verdicts_source=sources[1],
        targets=targets,
        policies=[policy_feedback(p, by_policy[p], targets) for p in sorted(by_policy)],
        decisions=len(decisions),
        unmatched=unmatched,
        bad_rows=bad,
        dead_lettered=dead_lettered,
    )
