"""Shadow policies: the pairs a registry accepts, the sampled share, the records' flips."""

from __future__ import annotations

import time

import pytest

from worker.catalog import compile_catalog
from worker.config import RoutingSettings
from worker.engine import Score
from worker.events import ContentEvent, Source
from worker.policies import PolicyError, PolicyRegistry, parse_policy
from worker.scoring.classify import Job, Scored, build_verdict
from worker.scoring.shadow import ShadowRecord, flip, sampled, shadow_records, shadows_for

FRUIT = parse_policy("---\nid: fruit\n---\nFlag content that mentions any of: apple, mango.")
TOOLS = parse_policy("---\nid: tools\n---\nFlag content that mentions any of: anchor.")
DRAFT = parse_policy(
    "---\nid: fruit-draft\nshadow_of: fruit\n---\nFlag content that mentions any of: mango."
)
LOOSE = parse_policy("---\nid: loose\n---\nFlag content that mentions any of: compass.")


def test_sampling_is_by_event_id_and_keeps_the_share():
    ids = [f"event-{n}" for n in range(20_000)]
    chosen = [i for i in ids if sampled(i, 0.25)]
    assert 0.23 < len(chosen) / len(ids) < 0.27
    assert chosen == [i for i in ids if sampled(i, 0.25)]  # reruns agree
    assert set(chosen) <= {i for i in ids if sampled(i, 0.5)}  # a larger share adds events
    assert all(sampled(i, 1.0) for i in ids[:100])
    assert not any(sampled(i, 0.0) for i in ids[:100])


def test_shadows_are_not_default_and_events_cannot_name_them():
    registry = PolicyRegistry([FRUIT, TOOLS, DRAFT])
    assert registry.default == ("fruit", "tools")
    assert registry.shadows == {"fruit-draft": "fruit"}
    with pytest.raises(PolicyError, match="fruit-draft are shadow policies"):
        registry.resolve(["fruit-draft"])
    with pytest.raises(PolicyError, match="shadow policies: fruit-draft"):
        PolicyRegistry([FRUIT, DRAFT], default=["fruit-draft"])


def test_configured_pairs_join_front_matter_ones():
    registry = PolicyRegistry([FRUIT, TOOLS, LOOSE], shadow_pairs={"loose": "tools"})
    assert registry.shadows == {"loose": "tools"}
    assert registry.default == ("fruit", "tools")


@pytest.mark.parametrize(
    ("policies", "pairs", "message"),
    [
        ([FRUIT, DRAFT], {"fruit-draft": "tools"}, "front matter and of 'tools' in shadow.pairs"),
        ([FRUIT], {"missing": "fruit"}, "'missing', which is not loaded"),
        ([DRAFT, TOOLS], {}, "shadows 'fruit', not loaded"),
        ([FRUIT, DRAFT, LOOSE], {"loose": "fruit-draft"}, "itself a shadow policy"),
    ],
)
def test_bad_pairs_are_refused(policies, pairs, message):
    with pytest.raises(PolicyError, match=message):
        PolicyRegistry(policies, shadow_pairs=pairs)


def test_shadow_of_must_be_an_id():
    with pytest.raises(PolicyError, match="'shadow_of' must be a policy id"):
        parse_policy("---\nid: x\nshadow_of: [a]\n---\ntext")


def test_flip_names_the_direction():
    assert [flip(0, 0), flip(1, 1), flip(0, 1), flip(1, 0)] == ["none", "none", "0->1", "1->0"]


def test_records_compare_labels_and_leave_the_verdict_alone(tokenizer):
    registry = PolicyRegistry([FRUIT, TOOLS, DRAFT])
    catalog = compile_catalog(registry, tokenizer, 4096, RoutingSettings())
    entries = catalog.resolve(None)
    drafts = shadows_for(catalog, entries, "item-1", 1.0)
    assert [(i, e.policy.id) for i, e in drafts] == [(0, "fruit-draft")]
    assert shadows_for(catalog, entries, "item-1", 0.0) == ()
    job = Job(ContentEvent(id="item-1", content="an apple"), entries, shadows=drafts)
    now = time.monotonic()
    scored = Scored(
        job,
        scores=[Score(0.99, 10, 0), Score(0.01, 10, 0)],
        shadow_scores=[Score(0.02, 10, 0)],
        started=now,
        finished=now,
    )
    source = Source(topic="content", partition=0, offset=3)
    verdict = build_verdict(scored, "m", source)
    assert [v.policy for v in verdict.verdicts] == ["fruit", "tools"]
    assert verdict.label == 1
    [record] = shadow_records(scored, "m", source)
    assert ShadowRecord.model_validate(record.model_dump()) == record
    assert (record.production_policy, record.shadow_policy) == ("fruit", "fruit-draft")
    assert (record.production_label, record.shadow_label) == (1, 0)
    assert record.disagree and record.flip == "1->0"
    assert record.production_version == FRUIT.version and record.shadow_version == DRAFT.version
