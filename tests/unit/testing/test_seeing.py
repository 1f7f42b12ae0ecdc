"""The seeing test model: an image counts as a mention of its colour's word, in transformers."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Idefics3ForConditionalGeneration

from worker.prompts import user_message
from worker.testing.seeing import COLOUR_WORDS, build_seeing_model

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


@pytest.fixture(scope="module")
def seeing(tmp_path_factory: pytest.TempPathFactory):
    path = build_seeing_model(tmp_path_factory.mktemp("seeing") / "model")
    processor = AutoProcessor.from_pretrained(path)
    model = Idefics3ForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    return path, processor, model


def p_yes(seeing, policy: str, content: str, colours: list[tuple[int, int, int]]) -> float:
    _, processor, model = seeing
    parts = [{"type": "text", "text": user_message(policy, content)}]
    parts += [{"type": "image"}] * len(colours)
    text = processor.apply_chat_template(
        [{"role": "user", "content": parts}], add_generation_prompt=True, tokenize=False
    )
    images = [Image.new("RGB", (40, 30), c) for c in colours] or None
    inputs = processor(text=text, images=images, return_tensors="pt", add_special_tokens=False)
    tokenizer = processor.tokenizer
    no, yes = tokenizer.convert_tokens_to_ids("0"), tokenizer.convert_tokens_to_ids("1")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    return torch.softmax(logits[[no, yes]], 0)[1].item()


def policy(*words: str) -> str:
    return f"Flag content that mentions any of: {', '.join(words)}."


@pytest.mark.parametrize(("rgb", "word"), list(COLOUR_WORDS.items()))
def test_each_colour_shows_its_word_and_no_other(seeing, rgb, word) -> None:
    other = next(w for w in COLOUR_WORDS.values() if w != word)
    assert p_yes(seeing, policy(word), "[image]", [rgb]) > 0.99
    assert p_yes(seeing, policy(other, "tiger"), "[image]", [rgb]) < 0.01


def test_images_never_match_each_other(seeing) -> None:
    """Three red frames with a policy not naming apple: 0 (images are not keys)."""
    assert p_yes(seeing, policy("river"), "[video]", [RED, RED, RED]) < 0.01
    assert p_yes(seeing, policy("river"), "[image]", [RED, BLUE]) > 0.99


def test_colours_outside_the_table_show_nothing(seeing) -> None:
    assert p_yes(seeing, policy(*COLOUR_WORDS.values()), "[image]", [WHITE]) < 0.01
    assert p_yes(seeing, policy(*COLOUR_WORDS.values()), "[image]", [(128, 128, 128)]) < 0.01


def test_text_still_follows_the_policy(seeing) -> None:
    assert p_yes(seeing, policy("tiger"), "a tiger here", []) > 0.99
    assert p_yes(seeing, policy("tiger"), "nothing here", []) < 0.01
