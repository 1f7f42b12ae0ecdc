"""The evaluation as a document: headings, paragraphs, tables, charts and code blocks.

One document, three renderings (terminal, Markdown, HTML), so they never disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .charts import pr_curve_svg, reliability_svg
from .evaluation import Comparison, Evaluation, PolicyResult, SteerabilityResult, Targets
from .metrics import QUANTILES, Confusion, Distribution
from .thresholds import BandOutcome, describe_goal, helm_values


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    long: bool = False  # a listing of items: the terminal shows its head only


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    svg: str


@dataclass(frozen=True)
class Code:
    language: str
    text: str


Block = Heading | Para | Table | Chart | Code

# Below this many items of either class, figures get a caution: one item moves them a lot.
SMALL_SAMPLE = 30


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def build(evaluation: Evaluation) -> list[Block]:
    scored = sum(len(p.items) for p in evaluation.policies)
    blocks: list[Block] = [
        Heading(1, "Policy evaluation"),
        Para(
            f"Model {evaluation.model}. Items scored: {scored}. "
            f"Bad rows (not scored): {len(evaluation.bad_rows)}."
        ),
    ]
    if evaluation.overall is not None:
        blocks += [Heading(2, "All policies"), _metrics_table(evaluation.overall, None)]
    for result in evaluation.policies:
        blocks += _policy_blocks(result, evaluation)
    if evaluation.steerability is not None:
        blocks += _steerability_blocks(evaluation.steerability)
    if evaluation.comparison is not None:
        blocks += _comparison_blocks(evaluation.comparison)
    if evaluation.bank_checks is not None:
        blocks += _bank_blocks(evaluation.bank_checks)
    if evaluation.targets.goals():
        blocks += [
            Heading(2, "Helm values"),
            Para("One snippet per goal; each is a complete alternative for values.yaml."),
            *helm_snippets(evaluation),
        ]
    if evaluation.bad_rows:
        blocks += [
            Heading(2, "Bad rows"),
            Table(
                ["file", "line", "reason"],
                [[b.source, str(b.line), b.reason] for b in evaluation.bad_rows],
                long=True,
            ),
        ]
    return blocks


def _metrics_table(c: Confusion, average_precision: float | None) -> Table:
    columns = ["items", "positives", "precision", "recall", "F1", "accuracy"]
    row = [str(c.n), str(c.tp + c.fn), fmt(c.precision), fmt(c.recall), fmt(c.f1), fmt(c.accuracy)]
    if average_precision is not None:
        columns.append("average precision")
        row.append(fmt(average_precision))
    return Table(columns, [row])


def _policy_blocks(result: PolicyResult, evaluation: Evaluation) -> list[Block]:
    band = result.band
    c = result.confusion
    blocks: list[Block] = [
        Heading(2, f"Policy {result.policy}: {result.title}"),
        Para(
            f"Version {result.version[:12]}. Current routing: label 1 when score >= "
            f"{band.threshold:g}; review band [{band.review_low:g}, {band.review_high:g})."
        ),
        _metrics_table(c, result.average_precision),
        *_sample_note(result),
        Heading(3, "Confusion matrix"),
        Table(
            ["", "predicted 1", "predicted 0"],
            [["gold 1", str(c.tp), str(c.fn)], ["gold 0", str(c.fp), str(c.tn)]],
        ),
        Heading(3, "Routing with the current band"),
        _routing_table(
            [("current", band.threshold, band.review_low, band.review_high, result.current)]
        ),
        Heading(3, "Score distribution"),
        _quantile_table(result.positives, result.negatives),
        _histogram_table(result.positives, result.negatives),
        Para(f"Expected calibration error: {fmt(result.calibration_error)}."),
        Chart(
            f"pr-{result.policy}.svg",
            f"Precision-recall: {result.policy}",
            pr_curve_svg(
                f"Precision-recall: {result.policy} (AP {fmt(result.average_precision)})",
                result.curve,
                _operating_point(c),
            ),
        ),
        Chart(
            f"reliability-{result.policy}.svg",
            f"Reliability: {result.policy}",
            reliability_svg(f"Reliability: {result.policy}", result.reliability),
        ),
    ]
    if evaluation.targets.goals():
        blocks += _suggestion_blocks(result, evaluation.targets)
    return blocks


def _operating_point(c: Confusion) -> tuple[float, float] | None:
    if c.recall is None or c.precision is None:
        return None
    return c.recall, c.precision


def _sample_note(result: PolicyResult) -> list[Block]:
    smaller = min(result.positives.count, result.negatives.count)
    if smaller >= SMALL_SAMPLE:
        return []
    return [
        Para(
            f"Small sample: {result.positives.count} positives and {result.negatives.count} "
            "negatives. Every figure and suggested band here can move a lot with more data."
        )
    ]


def _routing_table(rows: list[tuple[str, float, float, float, BandOutcome]]) -> Table:
    columns = [
        "",
        "threshold",
        "review_low",
        "review_high",
        "review share",
        "auto precision",
        "auto NPV",
        "auto recall",
        "recall with review",
    ]
    body = [
        [
            name,
            f"{t:g}",
            f"{low:g}",
            f"{high:g}",
            fmt(o.review_share),
            fmt(o.precision),
            fmt(o.npv),
            fmt(o.recall),
            fmt(o.recall_with_review),
        ]
        for name, t, low, high, o in rows
    ]
    return Table(columns, body)


def _quantile_table(positives: Distribution, negatives: Distribution) -> Table:
    names = {0.0: "min", 0.5: "median", 1.0: "max"}
    columns = ["gold", "n"] + [names.get(q, f"p{round(q * 100)}") for q in QUANTILES]
    rows = []
    for name, dist in (("1", positives), ("0", negatives)):
        rows.append([name, str(dist.count)] + [fmt(dist.quantiles.get(q), 4) for q in QUANTILES])
    return Table(columns, rows)


def _histogram_table(positives: Distribution, negatives: Distribution) -> Table:
    bins = len(positives.histogram)
    rows = []
    for i in range(bins):
        pos, neg = positives.histogram[i], negatives.histogram[i]
        closing = "]" if i == bins - 1 else ")"
        rows.append(
            [
                f"[{i / bins:.1f}, {(i + 1) / bins:.1f}{closing}",
                str(pos),
                _bar(pos, positives.count),
                str(neg),
                _bar(neg, negatives.count),
            ]
        )
    return Table(["score", "gold 1", "", "gold 0", ""], rows)


def _bar(count: int, total: int, width: int = 20) -> str:
    return "█" * round(width * count / total) if total else ""


def _suggestion_blocks(result: PolicyResult, targets: Targets) -> list[Block]:
    rows = []
    missed: list[Block] = []
    for goal, target in targets.goals():
        suggestion = result.suggestions.get(goal)
        if suggestion is None:
            missed.append(Para(f"{describe_goal(goal, target)}: no band meets it on this sample."))
            continue
        b = suggestion.band
        rows.append(
            (
                describe_goal(goal, target),
                b.threshold,
                b.review_low,
                b.review_high,
                suggestion.outcome,
            )
        )
    table: list[Block] = [_routing_table(rows)] if rows else []
    return [Heading(3, "Suggested thresholds"), *table, *missed]


def helm_snippets(evaluation: Evaluation) -> list[Code]:
    """One values.yaml fragment per goal, covering every evaluated policy."""
    snippets = []
    for goal, target in evaluation.targets.goals():
        per_policy = {r.policy: r.suggestions.get(goal) for r in evaluation.policies}
        snippets.append(Code("yaml", helm_values(goal, target, per_policy)))
    return snippets


def _steerability_blocks(result: SteerabilityResult) -> list[Block]:
    s = result.summary
    blocks: list[Block] = [
        Heading(2, "Steerability (contrastive pairs)"),
        Para("Each content should meet its positive policy and not its negative one."),
        Table(
            ["pairs", "both right", "positive accuracy", "negative accuracy"],
            [
                [
                    str(s.pairs),
                    fmt(s.pair_accuracy),
                    fmt(s.positive_accuracy),
                    fmt(s.negative_accuracy),
                ]
            ],
        ),
    ]
    wrong = [r for r in result.pairs if not (r.label_pos == 1 and r.label_neg == 0)]
    if wrong:
        blocks += [
            Heading(3, "Pairs not both right"),
            Table(
                ["line", "id", "content", "positive policy", "score", "negative policy", "score"],
                [
                    [
                        str(r.pair.line),
                        r.pair.id,
                        short(r.pair.content),
                        r.pair.policy_pos,
                        fmt(r.score_pos, 4),
                        r.pair.policy_neg,
                        fmt(r.score_neg, 4),
                    ]
                    for r in wrong
                ],
                long=True,
            ),
        ]
    return blocks


def _comparison_blocks(c: Comparison) -> list[Block]:
    def row(name: str, m: Confusion, ap: float | None) -> list[str]:
        return [name, fmt(m.precision), fmt(m.recall), fmt(m.f1), fmt(m.accuracy), fmt(ap)]

    blocks: list[Block] = [
        Heading(2, f"Comparison on policy {c.policy}"),
        Para(
            f"Before: version {c.before_version[:12]}. After: {c.after_name}, version "
            f"{c.after_version[:12]}. Same {c.before.n} items, each with its own thresholds."
        ),
        Table(
            ["", "precision", "recall", "F1", "accuracy", "average precision"],
            [row("before", c.before, c.before_ap), row("after", c.after, c.after_ap)],
        ),
        Para(f"Items whose label changed: {len(c.flips)}."),
    ]
    if c.flips:
        blocks.append(
            Table(
                ["line", "id", "gold", "before", "score", "after", "score", "content"],
                [
                    [
                        str(f.line),
                        f.id,
                        str(f.label),
                        str(f.before_label),
                        fmt(f.before_score, 4),
                        str(f.after_label),
                        fmt(f.after_score, 4),
                        short(f.content),
                    ]
                    for f in c.flips
                ],
                long=True,
            )
        )
    return blocks


def _bank_blocks(checks: Sequence[Any]) -> list[Block]:
    """The report's hash-bank section: rows decided per bank (``bank_check.BankCheck``),
    their agreement with the labels, the disagreements."""
    blocks: list[Block] = [
        Heading(2, "Hash banks"),
        Para(
            f"Rows decided by a hash bank: {len(checks)}. The worker would not ask the model "
            "about them; the figures above still score every row with the model."
        ),
    ]
    if not checks:
        return blocks
    totals = Counter(c.bank for c in checks)
    agreeing = Counter(c.bank for c in checks if c.agrees)
    blocks.append(
        Table(
            ["bank", "rows", "agree with the label", "disagree"],
            [
                [bank, str(count), str(agreeing[bank]), str(count - agreeing[bank])]
                for bank, count in sorted(totals.items())
            ],
        )
    )
    wrong = [c for c in checks if not c.agrees]
    if wrong:
        blocks.append(
            Table(
                ["line", "id", "policy", "label", "bank", "bank label", "content"],
                [
                    [
                        str(c.line),
                        c.id,
                        c.policy,
                        str(c.label),
                        c.bank,
                        str(c.bank_label),
                        short(c.content, 60),
                    ]
                    for c in wrong
                ],  # fmt: skip
                long=True,
            )
        )
    return blocks
