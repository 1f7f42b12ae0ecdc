"""Reviewers' decisions as a report document: the blocks ``eval decisions`` prints and writes."""

from __future__ import annotations

from .charts import reliability_svg
from .document import Block, Chart, Code, Heading, Para, Table, fmt
from .estimators import Estimate
from .feedback import Feedback, PolicyFeedback
from .thresholds import describe_goal, helm_values

METHOD = (
    "Audit copies are weighted by 1 / sampling rate (inverse-probability weights). Intervals: "
    "the ratio's linearized variance as a design-based effective n (Korn-Graubard), then a "
    "95 % Wilson score interval with continuity correction on it."
)


def build_feedback(feedback: Feedback) -> list[Block]:
    blocks: list[Block] = [
        Heading(1, "Review feedback"),
        Para(
            f"Decisions from {feedback.decisions_source}, review records from "
            f"{feedback.verdicts_source}. Decisions read: {feedback.decisions}; not matched to "
            f"a review record: {len(feedback.unmatched)}; bad records: {len(feedback.bad_rows)}"
            f" (dead-lettered: {feedback.dead_lettered})."
        ),
        Para(METHOD),
    ]
    for result in feedback.policies:
        blocks += _policy_blocks(result, feedback)
    if feedback.targets.goals() and feedback.policies:
        blocks += [
            Heading(2, "Helm values"),
            Para("One snippet per goal; each is a complete alternative for values.yaml."),
            *_helm_snippets(feedback),
        ]
    if feedback.unmatched:
        rows = [[u.id, u.policy, u.reason] for u in feedback.unmatched]
        blocks += [Heading(2, "Unmatched decisions"), Table(["id", "policy", "reason"], rows, True)]
    if feedback.bad_rows:
        rows = [[b.source, str(b.line or ""), b.reason] for b in feedback.bad_rows]
        blocks += [Heading(2, "Bad records"), Table(["source", "line", "reason"], rows, True)]
    return blocks


def _policy_blocks(result: PolicyFeedback, feedback: Feedback) -> list[Block]:
    audited = result.audited
    rates = sorted({a.rate for a in audited})
    blocks: list[Block] = [
        Heading(2, f"Policy {result.policy}"),
        Para(
            f"Reviewed audit copies: {len(audited)} (sampling rates "
            f"{', '.join(f'{r:g}' for r in rates) or 'none'}); reviewed band items: "
            f"{len(result.band)}."
        ),
        Heading(3, "Automatic decisions, estimated from audit copies"),
        Table(
            ["figure", "estimate", "95 % interval", "reviewed", "effective n"],
            [
                _row("precision (label 1 confirmed)", result.precision),
                _row("recall (positives labelled 1)", result.recall),
                _row("NPV (label 0 confirmed)", result.npv),
            ],
        ),
        Heading(3, "Review band"),
        Table(
            ["figure", "estimate", "95 % interval", "reviewed", "effective n"],
            [_row("agreement (model label = decision)", result.agreement)],
        ),
        Chart(
            f"reliability-{result.policy}.svg",
            f"Reliability against reviewers: {result.policy}",
            reliability_svg(f"Reliability against reviewers: {result.policy}", result.reliability),
        ),
    ]
    if feedback.targets.goals():
        blocks += _suggestion_blocks(result, feedback)
    return blocks


def _row(name: str, estimate: Estimate | None) -> list[str]:
    if estimate is None:
        return [name, "n/a", "", "0", ""]
    interval = f"{fmt(estimate.low)} – {fmt(estimate.high)}"
    return [name, fmt(estimate.value), interval, str(estimate.count), f"{estimate.effective_n:.1f}"]


def _suggestion_blocks(result: PolicyFeedback, feedback: Feedback) -> list[Block]:
    rows = []
    for goal, target in feedback.targets.goals():
        s = result.suggestions.get(goal)
        if s is None:
            rows.append([describe_goal(goal, target), "no band meets it", "", "", ""])
            continue
        b = s.band
        rows.append(
            [
                describe_goal(goal, target),
                f"{b.threshold:g}",
                f"{b.review_low:g}",
                f"{b.review_high:g}",
                fmt(s.outcome.review_share),
            ]
        )
    columns = ["goal", "threshold", "review_low", "review_high", "review share (weighted)"]
    return [Heading(3, "Suggested thresholds"), Table(columns, rows)]


def _helm_snippets(feedback: Feedback) -> list[Code]:
    snippets = []
    for goal, target in feedback.targets.goals():
        per_policy = {r.policy: r.suggestions.get(goal) for r in feedback.policies}
        text = helm_values(goal, target, per_policy)
        text = text.replace("from the evaluation sample", "from reviewers' decisions", 1)
        snippets.append(Code("yaml", text))
    return snippets
