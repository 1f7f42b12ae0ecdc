"""The hand-wired dev model: loads in transformers and follows the policy in the prompt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from worker.policies import Policy, policy_version
from worker.prompts import assemble, build_policy_prompt, tokenize_contents, user_message
from worker.testing import devmodel
from worker.testing.devmodel import FILLER_WORDS, TRIGGER_WORDS, build_test_model

POLICY_PHRASINGS = (
    lambda ws: f"Flag content that mentions any of: {', '.join(ws)}.",
    lambda ws: f"Content meets this policy if it refers to {' or '.join(ws)}.",
    lambda ws: "LABELS\n" + "".join(f"- {w}\n" for w in ws) + "Any one of these is enough.",
    lambda ws: f"Violations: anything about {', '.join(ws)}; quoting counts too.",
    lambda ws: f"Answer 1 when the text talks about ({'/'.join(ws)}), otherwise 0.",
)


@dataclass(frozen=True)
class Example:
    policy: str
    content: str
    label: int


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("devmodel") / "model")


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def model(model_dir: Path):
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def chat_ids(tokenizer, policy: str, content: str) -> list[int]:
    """The worker's prompt, rendered by the chat template (which writes <bos> itself)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(policy, content)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    return tokenizer.encode(text, add_special_tokens=False)


def p_yes(model, tokenizer, ids: list[int]) -> float:
    """P("1") over just the two answer tokens, as the worker's restricted sampling sees it."""
    return p_yes_batch(model, tokenizer, [ids])[0]


def p_yes_batch(model, tokenizer, prompts: list[list[int]], batch: int = 16) -> list[float]:
    """p_yes for many prompts, right-padded in batches (causal attention ignores the padding
    after each prompt's last token, whose logits are the ones read)."""
    no, yes = tokenizer.convert_tokens_to_ids(["0", "1"])
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    result = [0.0] * len(prompts)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, : len(prompts[i])] = torch.tensor(prompts[i])
            mask[row, : len(prompts[i])] = 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        for row, i in enumerate(chunk):
            pair = logits[row, len(prompts[i]) - 1, [no, yes]]
            result[i] = torch.softmax(pair, dim=0)[1].item()
    return result


def filler(rng: random.Random, count: int) -> list[str]:
    words = [rng.choice(FILLER_WORDS) for _ in range(count)]
    words[0] = words[0].capitalize()
    for i in range(1, count, 9):
        words[i] += rng.choice([".", ",", "!", "?", ":", "\n", ""])
    return words


def random_example(rng: random.Random) -> Example:
    """A policy naming 1-4 trigger words; content with none, a named one, or an unnamed one."""
    named = rng.sample(TRIGGER_WORDS, rng.randint(1, 4))
    policy = rng.choice(POLICY_PHRASINGS)(named)
    words = filler(rng, rng.randint(5, 300))
    kind = rng.choice(["none", "named", "unnamed"])
    if kind != "none":
        pool = named if kind == "named" else [w for w in TRIGGER_WORDS if w not in named]
        word = rng.choice(pool) + rng.choice(["", "", ".", ",", "!", "\n"])
        words.insert(rng.randint(0, len(words)), word)
    return Example(policy, " ".join(words), int(kind == "named"))


def test_tokens_the_circuit_relies_on_are_single(tokenizer) -> None:
    for answer in ("0", "1"):
        assert len(tokenizer.encode(answer, add_special_tokens=False)) == 1
    for word in TRIGGER_WORDS:
        token = tokenizer.convert_tokens_to_ids(word)
        assert tokenizer.encode(word, add_special_tokens=False) == [token]
        # The same id whatever comes before or after it, on every path the worker uses.
        for text in (f"any of: {word}, x", f"an {word}.", f"(\n{word})", f"{word}!"):
            assert tokenizer.encode(text, add_special_tokens=False).count(token) == 1, text
            ids = tokenizer([text], add_special_tokens=False, split_special_tokens=True)
            assert ids["input_ids"][0].count(token) == 1, text
        # Inside other words, or capitalised, it is not the trigger token.
        for text in (f"{word}s", f"x{word}", word.capitalize(), f"{word}_x"):
            assert token not in tokenizer.encode(text, add_special_tokens=False), text


def test_trigger_words_are_distinct_and_apart_from_filler() -> None:
    assert len(set(TRIGGER_WORDS)) == len(TRIGGER_WORDS) >= 40
    assert all(w.isalpha() and w.islower() for w in TRIGGER_WORDS)
    assert not set(TRIGGER_WORDS) & set(FILLER_WORDS)


def test_tokenizer_encodes_any_text(tokenizer) -> None:
    text = "emoji 🍎🧪, control \x00\x07\x1b[0m, rtl \u05e9\u05dc\u05d5\u05dd, cjk 漢字, <bos> tags"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id  # Gemma-like default


def test_chat_template_and_special_tokens(tokenizer) -> None:
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<bos>",
        "<eos>",
        "<pad>",
    )
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.convert_tokens_to_ids("<start_of_turn>") in ids


def test_follows_policy_on_held_out_examples(model, tokenizer) -> None:
    rng = random.Random(12345)
    examples = [random_example(rng) for _ in range(240)]
    assert {e.label for e in examples} == {0, 1}
    prompts = [chat_ids(tokenizer, e.policy, e.content) for e in examples]
    wrong = [
        (round(p, 4), e)
        for p, e in zip(p_yes_batch(model, tokenizer, prompts), examples, strict=True)
        if not ((p > 0.9) if e.label else (p < 0.1))
    ]
    assert not wrong, f"{len(wrong)}/{len(examples)} wrong, e.g. {wrong[:3]}"


def test_same_content_flips_with_the_policy(model, tokenizer) -> None:
    content = "They walked home along the old road, and the violin was still playing there."
    ids_on = chat_ids(tokenizer, "Flag content that mentions any of: violin, tiger.", content)
    ids_off = chat_ids(tokenizer, "Flag content that mentions any of: otter, tiger.", content)
    assert p_yes(model, tokenizer, ids_on) > 0.99
    assert p_yes(model, tokenizer, ids_off) < 0.01


def test_long_prompt_far_match(model, tokenizer) -> None:
    rng = random.Random(7)
    content = " ".join([*filler(rng, 2600), "glacier", *filler(rng, 100)])
    ids = chat_ids(tokenizer, "Content meets this policy if it refers to glacier.", content)
    assert len(ids) > 3000
    assert p_yes(model, tokenizer, ids) > 0.99
    other = chat_ids(tokenizer, "Content meets this policy if it refers to summit.", content)
    assert p_yes(model, tokenizer, other) < 0.01


def test_worker_prompt_path(model, tokenizer) -> None:
    """Prefix, content and suffix tokenized apart, as the worker does, give the same answers."""
    rng = random.Random(99)
    examples = [random_example(rng) for _ in range(40)]
    prompts = []
    for example in examples:
        policy = Policy("p", "p", example.policy, policy_version(example.policy))
        prompt = build_policy_prompt(tokenizer, policy, max_model_len=4096)
        [content_ids] = tokenize_contents(tokenizer, [example.content])
        prompts.append(assemble(prompt, content_ids, "truncate"))
    for p, example in zip(p_yes_batch(model, tokenizer, prompts), examples, strict=True):
        assert (p > 0.9) if example.label else (p < 0.1), (p, example)


def test_build_is_deterministic_and_idempotent(tmp_path: Path, model_dir: Path) -> None:
    again = build_test_model(tmp_path / "again")
    for name in devmodel.MODEL_FILES:
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name

    weights = again / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert build_test_model(again) == again
    assert weights.stat().st_mtime_ns == mtime  # complete and stamped: left alone

    other_seed = build_test_model(tmp_path / "seed1", seed=1)
    assert (other_seed / "model.safetensors").read_bytes() != weights.read_bytes()
    assert (other_seed / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()


def test_rebuilds_an_incomplete_directory(tmp_path: Path) -> None:
    path = build_test_model(tmp_path / "m")
    (path / "model.safetensors").unlink()
    build_test_model(path)
    assert (path / "model.safetensors").is_file()


def test_main_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr("sys.argv", ["devmodel", str(tmp_path / "cli")])
    devmodel.main()
    assert (tmp_path / "cli" / devmodel.MARKER_FILE).is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
