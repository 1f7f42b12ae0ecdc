from datetime import UTC, datetime

import orjson
import pytest

from worker.audit import audit_rate, audit_sample, draw
from worker.config import Band, RoutingSettings
from worker.events import Latency, PolicyVerdict, ReviewRecord, Source, Verdict


def _verdict(label: int, policy: str = "fruit") -> PolicyVerdict:
    return PolicyVerdict(policy=policy, policy_version="v", label=label, score=0.9, confidence=0.9)


def test_rates_come_from_the_policy_override_then_the_global_setting():
    routing = RoutingSettings(
        audit_label_1=0.01, audit_label_0=0.005, policies={"fruit": Band(audit_label_1=0.2)}
    )
    assert audit_rate("fruit", 1, routing) == 0.2
    assert audit_rate("fruit", 0, routing) == 0.005
    assert audit_rate("nature", 1, routing) == 0.01


def test_the_draw_is_fixed_by_id_and_policy_and_differs_between_policies():
    assert draw("item-1", "fruit") == draw("item-1", "fruit")
    assert draw("item-1", "fruit") != draw("item-1", "nature")
    assert 0 <= draw("x", "y") < 1


@pytest.mark.parametrize("rate", [0.01, 0.2, 0.5])
def test_the_share_sampled_matches_the_rate(rate):
    routing = RoutingSettings(audit_label_1=rate)
    n = 20_000
    hits = sum(bool(audit_sample(f"id-{i}", [_verdict(1)], routing)) for i in range(n))
    sigma = (rate * (1 - rate) / n) ** 0.5
    assert abs(hits / n - rate) < 4 * sigma


def test_only_the_label_with_a_rate_is_sampled_and_rates_are_reported_per_policy():
    routing = RoutingSettings(audit_label_1=1.0, audit_label_0=0.0)
    both = [_verdict(1, "fruit"), _verdict(0, "nature")]
    assert audit_sample("a", both, routing) == {"fruit": 1.0}
    assert audit_sample("a", [_verdict(0)], routing) == {}


def test_a_review_record_is_the_verdict_plus_its_origin():
    verdict = Verdict(
        id="a", label=1, route="auto", verdicts=[_verdict(1)], model="m",
        source=Source(topic="t", partition=0, offset=1), metadata={},
        latency_ms=Latency(queue=0, inference=0, total=0), classified_at=datetime.now(UTC),
    )  # fmt: skip
    audit = orjson.loads(ReviewRecord.of(verdict, {"fruit": 0.2}).to_json())
    assert audit == {
        **orjson.loads(verdict.to_json()),
        "origin": "audit_sample",
        "audit_rates": {"fruit": 0.2},
    }
    band = ReviewRecord.of(verdict.model_copy(update={"route": "review"}), {})
    assert (band.origin, band.audit_rates, band.route) == ("review_band", {}, "review")
