"""Media prompts: the policy prefix of text prompts, then the model's own image placeholders,
equal to the chat template's render of the card's message with images attached."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tests.gemma import gemma4_tokenizer
from worker.policies import Policy, policy_version
from worker.prompts import (
    PromptError,
    assemble,
    build_policy_prompt,
    media_message,
    media_suffix,
    tokenize_contents,
)
from worker.testing.seeing import build_seeing_model

POLICY = "Flag content that mentions any of: apple, mango.\n\nImages count too."
CONTENTS = ["[image]", "[video]", "look at this  \n", "a line\n===\nmore"]


@pytest.fixture(scope="module", params=["seeing", "gemma4"])
def tokenizer(request, tmp_path_factory):
    if request.param == "gemma4":
        return gemma4_tokenizer()
    return AutoTokenizer.from_pretrained(build_seeing_model(tmp_path_factory.mktemp("s") / "m"))


def rendered_ids(tokenizer, content: str, images: int) -> list[int]:
    text = tokenizer.apply_chat_template(
        media_message(POLICY, content, images), tokenize=False, add_generation_prompt=True
    )
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("images", [1, 3])
@pytest.mark.parametrize("content", CONTENTS[:3])
def test_ids_equal_the_templates_render(tokenizer, content: str, images: int) -> None:
    policy = Policy(id="p", title="p", text=POLICY, version=policy_version(POLICY))
    prompt = build_policy_prompt(tokenizer, policy, 4096)
    [content_ids] = tokenize_contents(tokenizer, [content])
    ids = assemble(prompt, content_ids, "dead_letter", media_suffix(tokenizer, images))
    assert ids == rendered_ids(tokenizer, content, images)
    assert tuple(ids[: len(prompt.prefix)]) == prompt.prefix  # the text prompts' cached prefix


def test_placeholders_counted(tokenizer) -> None:
    one, three = media_suffix(tokenizer, 1), media_suffix(tokenizer, 3)
    assert len(three) > len(one)


def test_a_template_that_moves_the_text_is_refused() -> None:
    tokenizer = gemma4_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}IMAGES FIRST {% for p in m['content'] %}{{ p.get('text', '') }}"
        "{% endfor %}{% endif %}{% endfor %}"
    )
    with pytest.raises(PromptError) as caught:
        media_suffix(tokenizer, 1)
    assert caught.value.kind == "template"
