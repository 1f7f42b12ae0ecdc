import pytest

from worker.config import Band, RoutingSettings
from worker.policies import Policy, policy_version
from worker.routing import Thresholds, confidence, route, thresholds_for


def _policy(**kw) -> Policy:
    return Policy(id="p", title="P", text="t", version=policy_version("t"), **kw)


def test_label_and_band_edges():
    t = Thresholds(threshold=0.5, review_low=0.2, review_high=0.8)
    assert t.label(0.5) == 1 and t.label(0.4999) == 0
    assert t.uncertain(0.2) and t.uncertain(0.79)
    assert not t.uncertain(0.8) and not t.uncertain(0.19)


def test_config_override_beats_front_matter_beats_global():
    settings = RoutingSettings(
        threshold=0.5, review_low=0.2, review_high=0.8, policies={"p": Band(review_low=0.3)}
    )
    t = thresholds_for(_policy(review_low=0.1, review_high=0.9), settings)
    assert t == Thresholds(threshold=0.5, review_low=0.3, review_high=0.9)


def test_inverted_band_after_merging_is_an_error():
    settings = RoutingSettings(policies={"p": Band(review_low=0.95)})
    with pytest.raises(ValueError, match="review_low"):
        thresholds_for(_policy(), settings)


def test_confidence_is_probability_of_emitted_label():
    assert confidence(0.9, 1) == pytest.approx(0.9)
    assert confidence(0.1, 0) == pytest.approx(0.9)


def test_route_is_review_when_any_policy_uncertain():
    assert route([False, True]) == "review"
    assert route([False, False]) == "auto"
