import pytest

from worker.catalog import check_routing, compile_catalog
from worker.config import RoutingSettings
from worker.policies import PolicyError, PolicyRegistry, parse_policy

FRUIT = parse_policy("---\nid: fruit\nreview_low: 0.3\n---\nFlag content that mentions apple.")


def test_catalog_compiles_prompts_and_thresholds(tokenizer):
    catalog = compile_catalog(PolicyRegistry([FRUIT]), tokenizer, 4096, RoutingSettings())
    [entry] = catalog.resolve(None)
    assert entry.thresholds.review_low == 0.3 and entry.thresholds.review_high == 0.8
    assert entry.prompt.max_content_tokens == 4096 - entry.prompt.overhead - 1


def test_override_of_a_policy_that_is_not_loaded_is_refused():
    routing = RoutingSettings.model_validate({"policies": {"fruit_typo": {"threshold": 0.4}}})
    with pytest.raises(PolicyError, match="fruit_typo"):
        check_routing(PolicyRegistry([FRUIT]), routing)


def test_override_that_inverts_the_merged_band_is_refused():
    routing = RoutingSettings.model_validate({"policies": {"fruit": {"review_high": 0.2}}})
    with pytest.raises(ValueError, match="'fruit'"):
        check_routing(PolicyRegistry([FRUIT]), routing)
