"""Compiling a pack's prompts in batches, and only what changed on a reload.

The batched halves must be the ones the one-policy-at-a-time path builds, on the test
model's tokenizer and on Google's Gemma tokenizer; a compile given the catalog in use must
tokenize exactly the new policy texts and give the catalog a full compile gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.gemma import gemma3_tokenizer
from worker import prefixes
from worker.catalog import compile_catalog
from worker.config import RoutingSettings
from worker.policies import PolicyRegistry, parse_policy
from worker.prefixes import Halves, _prefix, compile_halves, shared_ids
from worker.prompts import PromptError, build_policy_prompt


def policy(n: int, extra: str = "") -> object:
    body = f"Community rule {n}.\nFlag content that mentions river number {n}.{extra}\n"
    lines = "\n".join(f"- line {k} of rule {n}, with café and 🙂" for k in range(n % 7))
    return parse_policy(f"---\nid: rule-{n}\n---\n{body}{lines}")


POLICIES = [policy(n) for n in range(40)]


@pytest.fixture(params=["test-model", "gemma3"])
def any_tokenizer(request, tokenizer):
    return tokenizer if request.param == "test-model" else gemma3_tokenizer()


@pytest.fixture
def compiled(monkeypatch):
    """The policies each backend batch tokenized, in order."""
    seen: list[str] = []
    batch = prefixes._batch

    def recording(tokenizer, backend, policies, *rest):
        seen.extend(p.id for p in policies)
        return batch(tokenizer, backend, policies, *rest)

    monkeypatch.setattr(prefixes, "_batch", recording)
    return seen


@pytest.mark.parametrize("alone", [False, True])
def test_batched_halves_equal_the_one_at_a_time_prompts(any_tokenizer, alone):
    halves = compile_halves(any_tokenizer, POLICIES, alone=alone)
    for each in POLICIES:
        prompt = build_policy_prompt(any_tokenizer, each, 8192)
        assert halves[each.version] == Halves(prompt.prefix, prompt.suffix), each.id


def test_a_compile_given_the_catalog_in_use_tokenizes_only_new_texts(tokenizer, compiled):
    routing = RoutingSettings()
    before = compile_catalog(PolicyRegistry(POLICIES), tokenizer, 4096, routing)
    assert sorted(compiled) == sorted(p.id for p in POLICIES)
    compiled.clear()
    edited = [policy(3, " Edited."), policy(17, " Edited too.")]
    added = [policy(40), policy(41)]
    kept = [p for p in POLICIES if p.id not in {"rule-3", "rule-17", "rule-5"}]  # 5 removed
    registry = PolicyRegistry([*kept, *edited, *added])
    after = compile_catalog(registry, tokenizer, 4096, routing, previous=before)
    assert sorted(compiled) == ["rule-17", "rule-3", "rule-40", "rule-41"]
    assert after == compile_catalog(registry, tokenizer, 4096, routing)
    assert "rule-5" not in after.entries
    # Unchanged policies share the compiled ids with the catalog they came from.
    assert after.entries["rule-1"].prompt.prefix is before.entries["rule-1"].prompt.prefix


def test_an_unchanged_pack_tokenizes_nothing(tokenizer, compiled):
    before = compile_catalog(PolicyRegistry(POLICIES), tokenizer, 4096, RoutingSettings())
    compiled.clear()
    again = compile_catalog(PolicyRegistry(POLICIES), tokenizer, 4096, RoutingSettings(), before)
    assert compiled == [] and again.entries == before.entries


def test_another_tokenizer_compiles_everything_again(tokenizer, compiled):
    before = compile_catalog(PolicyRegistry(POLICIES[:3]), tokenizer, 4096, RoutingSettings())
    compiled.clear()
    gemma = gemma3_tokenizer()
    after = compile_catalog(PolicyRegistry(POLICIES[:3]), gemma, 4096, RoutingSettings(), before)
    assert sorted(compiled) == ["rule-0", "rule-1", "rule-2"]
    assert after.entries["rule-0"].prompt.prefix != before.entries["rule-0"].prompt.prefix


def test_a_new_context_length_is_checked_against_reused_halves(tokenizer):
    before = compile_catalog(PolicyRegistry(POLICIES), tokenizer, 4096, RoutingSettings())
    shorter = compile_catalog(PolicyRegistry(POLICIES), tokenizer, 1024, RoutingSettings(), before)
    prompt = shorter.entries["rule-6"].prompt
    assert prompt.max_content_tokens == 1024 - prompt.overhead - 1
    with pytest.raises(PromptError, match="policy 'rule-0' takes .* max_model_len is 30"):
        compile_catalog(PolicyRegistry(POLICIES), tokenizer, 30, RoutingSettings(), before)


@dataclass
class Encoding:
    """The two fields of a backend encoding that the proof reads."""

    ids: list[int]
    offsets: list[tuple[int, int]]


def test_the_prefix_ends_where_a_token_ends_at_the_lead_in(tokenizer):
    encoding = Encoding([11, 12, 13, 14], [(0, 2), (2, 5), (5, 7), (7, 9)])
    assert _prefix(tokenizer, POLICIES[0], encoding, 5, [13, 14]) == (11, 12)


@pytest.mark.parametrize(
    "encoding, at",
    [
        (Encoding([11, 19, 14], [(0, 2), (2, 6), (6, 9)]), 2),  # a token across the cut
        (Encoding([11, 12, 13, 15], [(0, 2), (2, 5), (5, 7), (7, 9)]), 3),  # another tail
    ],
)
def test_a_policy_whose_prompt_does_not_split_at_the_lead_in_is_refused(tokenizer, encoding, at):
    with pytest.raises(PromptError) as info:
        _prefix(tokenizer, POLICIES[0], encoding, 5, [13, 14])
    message = str(info.value)
    assert info.value.kind == "template" and "policy 'rule-0'" in message
    assert f"first difference at token {at}" in message


def test_shared_ids_are_one_object_per_id():
    first, second = shared_ids([1000, 70000, 5]), shared_ids((70000, 1000))
    assert first == (1000, 70000, 5) and second == (70000, 1000)
    assert first[0] is second[1] and first[1] is second[0]


def test_a_second_copy_of_the_same_tokenizer_reuses_the_compiled_prompts(tokenizer, compiled):
    """Start-up checks load their own tokenizer; the engine's is another object."""
    from transformers import AutoTokenizer

    before = compile_catalog(PolicyRegistry(POLICIES), tokenizer, 4096, RoutingSettings())
    compiled.clear()
    copy = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    again = compile_catalog(PolicyRegistry(POLICIES), copy, 4096, RoutingSettings(), before)
    assert compiled == [] and again.entries == before.entries
    copy.chat_template = tokenizer.chat_template.replace("<start_of_turn>", "<start_of_turn> ")
    changed = compile_catalog(PolicyRegistry(POLICIES[:2]), copy, 4096, RoutingSettings(), before)
    assert sorted(compiled) == ["rule-0", "rule-1"]
    assert changed.entries["rule-0"].prompt.prefix != before.entries["rule-0"].prompt.prefix
