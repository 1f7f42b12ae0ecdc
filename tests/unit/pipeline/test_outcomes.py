"""What each outcome produces: a verdict and its review copy, or a dead letter with its reason."""

from __future__ import annotations

import orjson
import pytest

from worker.engine import Score
from worker.errors import Rejected
from worker.events import ContentEvent
from worker.pipeline.outcomes import (
    DeadLetterOutcome,
    VerdictOutcome,
    dead_letter,
    outcome,
    refused_verdict,
    slim_dead_letter,
)
from worker.scoring.classify import Job, Scored

from ..fakes import catalog, record, settings

SETTINGS = settings()


@pytest.fixture(scope="module")
def entries(tokenizer):
    return catalog(tokenizer).resolve(["fruit"])


def _scored(entries, p_yes: float, **event) -> Scored:
    job = Job(ContentEvent(id="e1", content="a mango", **event), entries)
    return Scored(job, scores=[Score(p_yes, 10, 0)], started=job.received, finished=job.received)


def _headers(records) -> dict[str, bytes]:
    return dict(records[0][3])


def test_a_certain_verdict_goes_to_results_only(entries) -> None:
    result = outcome(_scored(entries, 0.99), "m", record(b"{}", offset=7), SETTINGS)
    assert isinstance(result, VerdictOutcome)
    assert [r[0] for r in result.records] == ["results"]
    topic, key, value, headers = result.records[0]
    verdict = orjson.loads(value)
    assert (key, headers) == (b"e1", [])
    assert verdict["label"] == 1 and verdict["route"] == "auto"
    assert verdict["source"] == {"topic": "content", "partition": 0, "offset": 7}


def test_an_uncertain_verdict_is_copied_to_review(entries) -> None:
    result = outcome(_scored(entries, 0.5), "m", record(b"{}"), SETTINGS)
    assert isinstance(result, VerdictOutcome)
    assert [r[0] for r in result.records] == ["results", "review"]
    review = orjson.loads(result.records[1][2])
    assert review["origin"] == "review_band" and review["audit_rates"] == {}
    assert review["id"] == "e1" and result.verdict.route == "review"


def test_an_audited_automatic_verdict_is_copied_to_review_keeping_its_route(entries) -> None:
    audited = settings(routing={"audit_label_1": 1.0})
    result = outcome(_scored(entries, 0.99), "m", record(b"{}"), audited)
    assert isinstance(result, VerdictOutcome)
    assert [r[0] for r in result.records] == ["results", "review"]
    review = orjson.loads(result.records[1][2])
    assert review["origin"] == "audit_sample" and review["audit_rates"] == {"fruit": 1.0}
    assert review["route"] == "auto" and orjson.loads(result.records[0][2])["route"] == "auto"


def test_an_unscored_item_is_a_dead_letter_with_its_reason(entries) -> None:
    job = Job(ContentEvent(id="e1", content="x"), entries)
    scored = Scored(job, error=Rejected("content_too_long", "content is 9000 tokens"))
    source = record(b"original", offset=3, headers=[("trace", b"t")])
    result = outcome(scored, "m", source, SETTINGS)
    assert isinstance(result, DeadLetterOutcome)
    [(topic, key, value, headers)] = result.records
    assert (topic, key, value) == ("dlq", b"k", b"original")
    named = dict(headers)
    assert named["trace"] == b"t"  # the original headers are kept
    assert named["x-dead-letter-error-type"] == b"content_too_long"
    assert named["x-dead-letter-reason"] == b"content is 9000 tokens"
    assert named["x-dead-letter-source-offset"] == b"3"


def test_a_verdict_json_cannot_write_is_a_dead_letter(entries) -> None:
    scored = _scored(entries, 0.99)
    deep: dict = {}
    for _ in range(300):  # past orjson's depth; decode_event refuses this on arrival
        deep = {"d": deep}
    scored.job.event.metadata["deep"] = deep
    result = outcome(scored, "m", record(b"{}"), SETTINGS)
    assert isinstance(result, DeadLetterOutcome)
    assert result.error.kind == "publish_failed"
    assert b"cannot be written as JSON" in _headers(result.records)["x-dead-letter-reason"]


def test_a_verdict_the_broker_refuses_becomes_a_dead_letter() -> None:
    refused = Rejected("publish_failed", "MessageSizeTooLargeError: too big")
    result = refused_verdict(record(b"v"), refused, "dlq")
    assert result.error.kind == "publish_failed"
    assert result.error.reason == "the verdict could not be published: " + refused.reason


def test_a_dead_letter_too_large_to_copy_keeps_only_the_coordinates() -> None:
    source = record(b"x" * 10_000, key=b"k" * 2000, offset=5)
    letter = dead_letter(source, Rejected("invalid_json", "not JSON"), "dlq")
    topic, key, value, headers = slim_dead_letter(source, letter, "MessageSizeTooLargeError")
    named = dict(headers)
    assert (topic, key, value) == ("dlq", None, b"")  # an over-long key is dropped too
    assert named["x-dead-letter-original-omitted"] == b"MessageSizeTooLargeError"
    assert named["x-dead-letter-source-offset"] == b"5"
    assert named["x-dead-letter-error-type"] == b"invalid_json"
