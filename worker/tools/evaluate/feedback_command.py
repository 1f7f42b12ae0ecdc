"""``moderation-worker eval decisions``: read decisions and review records, report, write.

No engine is started: every figure comes from scores already in the review records and the
decisions people made about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ...config import Settings
from ...kafka import KafkaSetupError
from .console import print_document
from .errors import EvalError
from .evaluation import Targets
from .feedback import bad_rows, parse_decisions, parse_review_records, summarize
from .feedback_document import build_feedback
from .records import SourceError, dead_letter, read_source
from .report import to_data, write_blocks


@dataclass(frozen=True)
class FeedbackRequest:
    decisions: str
    verdicts: str | None  # None: the configured review topic
    out: Path
    targets: Targets


async def run_feedback(settings: Settings, request: FeedbackRequest, out: Console) -> int:
    """Exit code: 0, or 1 when some records could not be used (they are listed)."""
    verdicts_source = request.verdicts or settings.topics.review
    try:
        decision_records = await read_source(settings, request.decisions)
        review_records = await read_source(settings, verdicts_source)
    except SourceError as exc:
        raise EvalError(str(exc)) from None
    decisions, bad_decisions = parse_decisions(decision_records)
    try:
        dead_lettered = await dead_letter(settings, bad_decisions)
    except KafkaSetupError as exc:
        raise EvalError(f"cannot dead-letter bad decisions: {exc}") from None
    reviewed, bad_reviews = parse_review_records(review_records)
    if not decisions:
        raise EvalError(f"no usable decisions in {request.decisions}")
    feedback = summarize(
        decisions,
        reviewed,
        request.targets,
        (request.decisions, verdicts_source),
        bad_rows(bad_decisions) + bad_reviews,
        dead_lettered,
    )
    blocks = build_feedback(feedback)
    print_document(out, blocks)
    try:
        paths = write_blocks(blocks, to_data(feedback), request.out)
    except OSError as exc:
        raise EvalError(f"cannot write the report to {request.out}: {exc}") from None
    out.print()
    out.print(f"Report written to {request.out}: " + ", ".join(p.name for p in paths), markup=False)
    return 1 if feedback.bad_rows else 0
