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
) -> list[int]:
    """The engine's token ids, with ``images`` image placeholders after the content where a
    media item's frames go (the engine expands each into the image's tokens). Raises
    PolicyError (unknown id) or PromptError."""
    [policy] = registry.resolve([policy_id])
    check_splice(tokenizer, [policy])  # as at start-up: a model the worker would refuse
    prompt = build_policy_prompt(tokenizer, policy, max_model_len)
    [content_ids] = tokenize_contents(tokenizer, [content])
    suffix = media_suffix(tokenizer, images) if images else None
    return assemble(prompt, content_ids, overlong, suffix)


def format_prompt(tokenizer: Any, ids: list[int], as_ids: bool) -> str:
    """The ids as one JSON list and a newline, or the decoded prompt, special tokens shown."""
    if as_ids:
        return orjson.dumps(ids).decode() + "\n"
    return str(tokenizer.decode(ids, skip_special_tokens=False))
