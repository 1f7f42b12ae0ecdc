import orjson
import pytest

from worker.decisions import SCHEMA_PATH, Decision, decode_decision, schema_text
from worker.events import BadEvent

GOOD = {
    "id": "c-1",
    "policy": "fruit",
    "policy_version": "ab" * 32,
    "decision": 1,
    "reviewer": "r@example.org",
    "decided_at": "2026-11-23T10:00:00Z",
    "origin": "audit_sample",
}


def test_the_committed_schema_is_the_one_the_model_generates():
    assert SCHEMA_PATH.read_text() == schema_text() + "\n", "run: python -m worker.decisions"


def test_a_good_decision_round_trips():
    decision = decode_decision(orjson.dumps(GOOD))
    assert decision.decision == 1 and decision.origin == "audit_sample"
    assert decode_decision(decision.to_json()) == decision


def test_version_and_origin_may_be_left_to_the_review_record():
    minimal = {k: v for k, v in GOOD.items() if k not in ("policy_version", "origin")}
    decision = decode_decision(orjson.dumps(minimal))
    assert decision.policy_version is None and decision.origin is None


@pytest.mark.parametrize(
    ("value", "kind", "reason"),
    [
        (None, "empty_value", "no value"),
        (b"{nope", "invalid_json", "not JSON"),
        (b"[1]", "not_an_object", "list"),
        (orjson.dumps({**GOOD, "decision": 2}), "invalid_decision", "decision"),
        (orjson.dumps({**GOOD, "decision": "1"}), "invalid_decision", "decision"),
        (orjson.dumps({**GOOD, "decision": True}), "invalid_decision", "decision"),
        (orjson.dumps({**GOOD, "origin": "vibes"}), "invalid_decision", "origin"),
        (orjson.dumps({**GOOD, "decided_at": "yesterday"}), "invalid_decision", "decided_at"),
        (
            orjson.dumps({k: v for k, v in GOOD.items() if k != "reviewer"}),
            "invalid_decision",
            "reviewer",
        ),
        (orjson.dumps({**GOOD, "id": ""}), "invalid_decision", "id"),
    ],
)
def test_bad_decisions_say_why(value, kind, reason):
    with pytest.raises(BadEvent) as caught:
        decode_decision(value)
    assert caught.value.kind == kind and reason in caught.value.reason


def test_the_model_is_the_contract():
    assert set(Decision.model_fields) == {
        "id", "policy", "policy_version", "decision", "reviewer", "decided_at", "origin"
    }  # fmt: skip
