import orjson
import pytest

from worker.events import BadEvent, dead_letter_headers, decode_event


def test_valid_event_with_defaults():
    event = decode_event(b'{"id": "a", "content": "hi", "extra": 1}')
    assert event.id == "a" and event.policies is None and event.metadata == {}


def test_created_at_rfc3339():
    event = decode_event(b'{"id": "a", "content": "x", "created_at": "2026-01-02T03:04:05Z"}')
    assert event.created_at is not None and event.created_at.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("raw", "kind", "needle"),
    [
        (None, "empty_value", "no value"),
        (b"not json", "invalid_json", "not JSON"),
        (b"\xff\xfe\x00garbage", "invalid_json", "not JSON"),
        (b"[1, 2]", "not_an_object", "list"),
        (b'"text"', "not_an_object", "str"),
        (b'{"content": "x"}', "invalid_event", "id"),
        (b'{"id": 5, "content": "x"}', "invalid_event", "id"),
        (b'{"id": "a"}', "invalid_event", "content"),
        (b'{"id": "a", "content": "   "}', "invalid_event", "content is empty"),
        (b'{"id": "a", "content": "x", "policies": "hate"}', "invalid_event", "policies"),
        (b'{"id": "a", "content": "x", "metadata": []}', "invalid_event", "metadata"),
        (b'{"id": "a", "content": "x", "created_at": "yesterday"}', "invalid_event", "created_at"),
    ],
)
def test_bad_events_name_the_problem(raw, kind, needle):
    with pytest.raises(BadEvent) as info:
        decode_event(raw)
    assert info.value.kind == kind
    assert needle in info.value.reason


def test_dead_letter_headers_keep_originals_and_add_ours():
    headers = dead_letter_headers(
        [("traceparent", b"00-abc"), ("x-dead-letter-reason", b"spoofed")],
        "invalid_json",
        "value is not JSON",
        "content",
        3,
        42,
    )
    as_dict = dict(headers)
    assert as_dict["traceparent"] == b"00-abc"
    assert as_dict["x-dead-letter-reason"] == b"value is not JSON"
    assert as_dict["x-dead-letter-error-type"] == b"invalid_json"
    assert as_dict["x-dead-letter-source-partition"] == b"3"
    assert as_dict["x-dead-letter-source-offset"] == b"42"
    assert len([k for k, _ in headers if k == "x-dead-letter-reason"]) == 1


def test_verdict_json_round_trip():
    from datetime import UTC, datetime

    from worker.events import Latency, PolicyVerdict, Source, Verdict

    verdict = Verdict(
        id="a",
        label=1,
        route="review",
        verdicts=[
            PolicyVerdict(policy="p", policy_version="v", label=1, score=0.7, confidence=0.7)
        ],
        model="m",
        source=Source(topic="t", partition=0, offset=1),
        metadata={"k": [1]},
        latency_ms=Latency(queue=1.0, inference=2.0, total=3.0),
        classified_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    data = orjson.loads(verdict.to_json())
    assert data["verdicts"][0]["policy_version"] == "v"
    assert data["source"] == {"topic": "t", "partition": 0, "offset": 1}
    assert data["classified_at"].startswith("2026-01-01T00:00:00")
