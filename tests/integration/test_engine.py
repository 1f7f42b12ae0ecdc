"""The vLLM classifier on the CPU with the policy-following test model."""

from __future__ import annotations

import pytest

from worker.engine import EngineError
from worker.policies import parse_policy
from worker.prompts import assemble, build_policy_prompt, tokenize_contents

pytestmark = pytest.mark.integration


def _policy(policy_id: str, text: str):
    return parse_policy(f"---\nid: {policy_id}\n---\n{text}")


async def _score(engine, policy, content: str) -> float:
    prompt = build_policy_prompt(engine.tokenizer, policy, engine.max_model_len)
    [ids] = tokenize_contents(engine.tokenizer, [content])
    return (await engine.score(assemble(prompt, ids, "dead_letter"))).p_yes


async def test_label_follows_the_policy(engine):
    fruit = _policy("fruit", "Flag content that mentions any of: apple, mango.")
    nature = _policy("nature", "Flag content that mentions any of: river, meadow.")
    content = "We had a picnic by the river last week."
    assert await _score(engine, fruit, content) < 0.1
    assert await _score(engine, nature, content) > 0.9


async def test_scores_are_probabilities_of_one(engine):
    fruit = _policy("fruit", "Flag content that mentions any of: apple, mango.")
    score = await _score(engine, fruit, "an apple a day")
    assert 0.0 <= score <= 1.0 and score > 0.9


async def test_second_item_of_a_policy_reads_the_prefix_from_cache(engine):
    text = "Flag content that mentions any of: comet, otter. " + "Context words here. " * 20
    policy = _policy("cache-probe", text)
    prompt = build_policy_prompt(engine.tokenizer, policy, engine.max_model_len)
    contents = [f"item number {n} says hello {'again ' * n}" for n in range(4)]
    scores = []
    for ids in tokenize_contents(engine.tokenizer, contents):
        scores.append(await engine.score(assemble(prompt, ids, "dead_letter")))
    assert scores[0].cached_tokens < len(prompt.prefix)
    block = 32
    for later in scores[1:]:
        # Every whole block of the shared prefix is served from the cache.
        assert later.cached_tokens >= (len(prompt.prefix) // block) * block > 0


async def test_invalid_prompt_is_an_engine_error_not_a_crash(engine):
    with pytest.raises(EngineError) as info:
        await engine.score([10**9])  # a token id outside the vocabulary
    assert info.value.retriable
    assert not engine.dead
