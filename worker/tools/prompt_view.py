"""``moderation-worker prompt``: exactly what the engine receives for one content and policy.

Operators debugging a policy need the prompt itself, not a description of it: the ids are
built by the same functions the worker serves with, so what this prints is what runs.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..policies import PolicyRegistry
from ..prompt_check import check_splice
from ..prompts import (
    Images,
    Overlong,
    Tokenizer,
    assemble,
    build_policy_prompt,
    media_suffix,
    tokenize_contents,
)


def prompt_ids(
    tokenizer: Tokenizer,
    registry: PolicyRegistry,
    policy_id: str,
    content: str,
    max_model_len: int,
    overlong: Overlong,
    images: int = 0,
    tokens_each: int | None = None,
) -> list[int]:
    """The engine's token ids, with ``images`` image placeholders after the content where a
    media item's frames go (the engine expands each into the image's tokens, ``tokens_each``
    of them when known: the content is fitted beside them as the worker fits it). Raises
    PolicyError (unknown id) or PromptError."""
    [policy] = registry.resolve([policy_id])
    check_splice(tokenizer, [policy])  # as at start-up: a model the worker would refuse
    prompt = build_policy_prompt(tokenizer, policy, max_model_len)
    [content_ids] = tokenize_contents(tokenizer, [content])
    suffix = media_suffix(tokenizer, images) if images else None
    cost = Images(images, tokens_each) if images and tokens_each else None
    return assemble(prompt, content_ids, overlong, suffix, cost)


def image_note(images: int, tokens_each: int | None, ids: list[int], max_model_len: int) -> str:
    """A line on what the image placeholders become in the engine."""
    if tokens_each is None:
        return f"{images} image placeholder(s); the tokens an image takes are not known here"
    return (
        f"{images} image placeholder(s), each up to {tokens_each} tokens in the engine: "
        f"at most {len(ids) - images + images * tokens_each} of max_model_len {max_model_len}"
    )


def format_prompt(tokenizer: Any, ids: list[int], as_ids: bool) -> str:
    """The ids as one JSON list and a newline, or the decoded prompt, special tokens shown."""
    if as_ids:
        return orjson.dumps(ids).decode() + "\n"
    return str(tokenizer.decode(ids, skip_special_tokens=False))
