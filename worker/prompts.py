"""Prompt construction for the CoPE-B family, as token ids.

Each policy's prompt is split once, at policy load, into token ids before and after the
content: ``prefix + content + suffix``. The prefix (template, instruction, policy) is the
same for every item of a policy, so the engine's prefix cache computes it once; the only
per-item work is tokenizing the content, which does not grow with the policy's length.
"""

from __future__ import annotations

import copy
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import tokenizers

from .policies import Policy

INSTRUCTION = (
    "Examine the given POLICY and determine if the given CONTENT meets the criteria for ANY "
    'of the LABELS. Answer "1" if yes, and "0" if no.'
)
ANSWER_NO, ANSWER_YES = "0", "1"

# A unique string that cannot occur in a policy, used to find where the content goes.
_SLOT = "\u2063CONTENT-SLOT\u2063"

# A line made only of "=" is a section rule in our format; in content it becomes "-" so
# that content cannot open a section of its own after the CONTENT heading.
_RULE_LINE = re.compile(r"^([ \t]*)(={3,})([ \t]*)$", re.MULTILINE)


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer we use."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...
    def encode(self, text: str, **kwargs: Any) -> list[int]: ...
    def __call__(self, text: Any, **kwargs: Any) -> Any: ...


class PromptError(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def user_message(policy_text: str, content: str) -> str:
    return f"{INSTRUCTION}\n\nPOLICY\n======\n{policy_text}\n\nCONTENT\n=======\n{content}"


def neutralize_markers(content: str) -> str:
    return _RULE_LINE.sub(lambda m: m.group(1) + "-" * len(m.group(2)) + m.group(3), content)


@dataclass(frozen=True)
class PolicyPrompt:
    policy: Policy
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    max_content_tokens: int

    @property
    def overhead(self) -> int:
        return len(self.prefix) + len(self.suffix)


def answer_token_ids(tokenizer: Tokenizer) -> tuple[int, int]:
    """Token ids of "0" and "1"; fail when either is not exactly one token."""
    ids = []
    for answer in (ANSWER_NO, ANSWER_YES):
        encoded = tokenizer.encode(answer, add_special_tokens=False)
        if len(encoded) != 1:
            raise PromptError(
                "tokenizer", f"answer {answer!r} is {len(encoded)} tokens, must be exactly one"
            )
        ids.append(encoded[0])
    return ids[0], ids[1]


def build_policy_prompt(tokenizer: Tokenizer, policy: Policy, max_model_len: int) -> PolicyPrompt:
    """Render the chat template around a slot and tokenize both sides once."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(policy.text, _SLOT)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    before, sep, after = rendered.partition(_SLOT)
    if not sep:
        raise PromptError("template", "chat template dropped the content; cannot build prompts")
    prefix = tokenizer.encode(before, add_special_tokens=False)
    suffix = tokenizer.encode(after, add_special_tokens=False)
    budget = max_model_len - len(prefix) - len(suffix) - 1  # one position for the answer
    if budget < 1:
        raise PromptError(
            "policy_too_long",
            f"policy {policy.id!r} takes {len(prefix) + len(suffix)} tokens with the template; "
            f"max_model_len is {max_model_len}",
        )
    return PolicyPrompt(policy, tuple(prefix), tuple(suffix), budget)


def tokenize_contents(tokenizer: Tokenizer, contents: Sequence[str]) -> list[list[int]]:
    """Tokenize content texts in one call; special-token text stays plain text."""
    if not contents:
        return []
    texts = [neutralize_markers(c) for c in contents]
    backend = _content_backend(tokenizer)
    if backend is None:  # not a fast tokenizer: the general (slower) call
        encoded = tokenizer(
            texts,
            add_special_tokens=False,
            split_special_tokens=True,
            verbose=False,  # over-long content is our decision to make, not a warning
        )
        return [list(ids) for ids in encoded["input_ids"]]
    # The Rust tokenizer directly: the same ids as the call above, without the offsets,
    # masks and per-item Python conversion it builds and we never read.
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # tokenizers < 0.20
    return [encoding.ids for encoding in encode(texts, add_special_tokens=False)]


# One private copy of each fast tokenizer's Rust backend, set once to split special-token
# text. The Hugging Face call flips ``encode_special_tokens`` on the shared backend for each
# call, so a policy compile on another thread could flip it back mid-batch; a copy cannot.
_backends: weakref.WeakKeyDictionary[Any, tokenizers.Tokenizer] = weakref.WeakKeyDictionary()
_backends_lock = threading.Lock()


def _content_backend(tokenizer: Tokenizer) -> tokenizers.Tokenizer | None:
    """The content copy of ``tokenizer``'s backend; None for a tokenizer without one."""
    with _backends_lock:
        try:
            backend = _backends.get(tokenizer)
        except TypeError:  # not weak-referenceable: a copy per call would cost more than it saves
            return None
        if backend is None:
            shared = getattr(tokenizer, "backend_tokenizer", None)
            if not isinstance(shared, tokenizers.Tokenizer):
                return None
            backend = copy.deepcopy(shared)
            backend.encode_special_tokens = True
            backend.no_truncation()  # content length is assemble()'s decision
            backend.no_padding()
            _backends[tokenizer] = backend
        return backend


Overlong = Literal["truncate", "dead_letter"]


def assemble(prompt: PolicyPrompt, content_ids: Sequence[int], overlong: Overlong) -> list[int]:
    """The full prompt for one item and one policy."""
    if len(content_ids) > prompt.max_content_tokens:
        if overlong == "dead_letter":
            raise PromptError(
                "content_too_long",
                f"content is {len(content_ids)} tokens; policy {prompt.policy.id!r} leaves room "
                f"for {prompt.max_content_tokens}",
            )
        content_ids = content_ids[: prompt.max_content_tokens]
    return [*prompt.prefix, *content_ids, *prompt.suffix]
