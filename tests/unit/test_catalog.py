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
    with pytest.raises(PolicyError, match="'fruit'"):
        check_routing(PolicyRegistry([FRUIT]), routing)


@pytest.mark.parametrize(
    "kind, hint",
    [
        ("local", "raise engine.max_model_len"),
        ("remote", "serve the model with a larger --max-model-len"),
    ],
)
def test_policy_too_long_for_the_context_names_the_limit_to_raise(tokenizer, tmp_path, kind, hint):
    from worker.app import load_catalog
    from worker.config import load_settings
    from worker.engine.instant import InstantClassifier
    from worker.prompts import PromptError

    (tmp_path / "fruit.md").write_text("---\nid: fruit\n---\n" + "Flag apple. " * 200)
    engine = {"kind": kind, **({"url": "http://vllm:8000"} if kind == "remote" else {})}
    settings = load_settings(policies={"dir": str(tmp_path)}, engine=engine)
    classifier = InstantClassifier(tokenizer, max_model_len=128)
    with pytest.raises(PromptError, match=f"policy 'fruit' takes .* 128: {hint}"):
        load_catalog(settings, classifier)
