"""What one consumed record ends as: a verdict with its review copy, or a dead letter.

Pure functions from a scored item (or an error) to the records to publish; the publisher
sends them. Nothing here touches the network, so every kind of outcome is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import ConsumerRecord

from ..audit import audit_sample
from ..config import RoutingSettings, Settings
from ..errors import DeadLetterKind, Rejected
from ..events import (
    DEAD_LETTER_PREFIX,
    Header,
    ReviewRecord,
    Source,
    Verdict,
    dead_letter_headers,
)
from ..scoring.classify import Scored, build_verdict
from ..scoring.shadow import ShadowRecord, shadow_records

# topic, key, value, headers
OutputRecord = tuple[str, bytes | None, bytes | None, list[Header]]


@dataclass(frozen=True)
class VerdictOutcome:
    """A verdict to the results topic, and its review copy when it is uncertain or audited."""

    verdict: Verdict
    records: list[OutputRecord]
    shadows: list[ShadowRecord]  # on the shadow topic, among the records


@dataclass(frozen=True)
class DeadLetterOutcome:
    """The original record copied to the dead-letter topic, with headers saying why."""

    error: Rejected
    records: list[OutputRecord]


Outcome = VerdictOutcome | DeadLetterOutcome


def source_of(record: ConsumerRecord) -> Source:
    # The broker's own coordinates: nothing to validate.
    return Source.model_construct(
        topic=record.topic, partition=record.partition, offset=record.offset
    )


def outcome(scored: Scored, model: str, record: ConsumerRecord, settings: Settings) -> Outcome:
    """The records one scored item produces."""
    topics = settings.topics
    if scored.error is not None:
        return dead_letter(record, scored.error, topics.dead_letter)
    verdict = build_verdict(scored, model, source_of(record))
    try:
        value = verdict.to_json()
    except (TypeError, ValueError) as exc:
        # decode_event refuses what JSON cannot write back (over-deep metadata); should
        # anything else slip through, one dead letter beats a worker failing on every
        # redelivery of the same record.
        error = Rejected(
            DeadLetterKind.PUBLISH_FAILED, f"the verdict cannot be written as JSON: {exc}"
        )
        return dead_letter(record, error, topics.dead_letter)
    key = scored.job.event.id.encode()
    records: list[OutputRecord] = [(topics.results, key, value, [])]
    review = review_copy(verdict, settings.routing)
    if review is not None:
        records.append((topics.review, key, review.to_json(), []))
    # Shadow records ride with the verdict: acknowledged before the offset completes.
    drafts = shadow_records(scored, model, verdict.source)
    records += [(topics.shadow, key, draft.to_json(), []) for draft in drafts]
    return VerdictOutcome(verdict, records, drafts)


def review_copy(verdict: Verdict, routing: RoutingSettings) -> ReviewRecord | None:
    """The review-topic record for an uncertain item or an audited automatic one.

    The audit choice only adds a copy: the verdict and its route stay as they are.
    """
    if verdict.route == "review":
        return ReviewRecord.of(verdict, {})
    rates = audit_sample(verdict.id, verdict.verdicts, routing)
    return ReviewRecord.of(verdict, rates) if rates else None


def refused_verdict(record: ConsumerRecord, why: Rejected, topic: str) -> DeadLetterOutcome:
    """The dead letter of an item whose verdict the broker will never take (a poison pill
    if retried)."""
    error = Rejected(
        DeadLetterKind.PUBLISH_FAILED, f"the verdict could not be published: {why.reason}"
    )
    return dead_letter(record, error, topic)


def dead_letter(record: ConsumerRecord, error: Rejected, topic: str) -> DeadLetterOutcome:
    """The original key, value and headers, plus headers naming the error and the source."""
    headers = dead_letter_headers(
        list(record.headers),
        error.kind,
        error.reason,
        record.topic,
        record.partition,
        record.offset,
    )
    return DeadLetterOutcome(error, [(topic, record.key, record.value, headers)])


def slim_dead_letter(record: ConsumerRecord, outcome: DeadLetterOutcome, why: str) -> OutputRecord:
    """A dead letter without the original, when the original is too large to copy: the
    coordinates still lead to it."""
    error = outcome.error
    headers = dead_letter_headers(
        [], error.kind, error.reason, record.topic, record.partition, record.offset
    )
    headers.append((DEAD_LETTER_PREFIX + "original-omitted", why[:500].encode()))
    key = record.key if record.key is not None and len(record.key) <= 1024 else None
    topic = outcome.records[0][0]
    return (topic, key, b"", headers)
