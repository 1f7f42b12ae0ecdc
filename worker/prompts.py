"""Prompt construction for the CoPE-B family, as token ids.

The model sees one user turn through its own chat template, generation prompt on, holding
the model card's message (``user_message``). Each policy's prompt is split once, at policy
load, into token ids before and after the content: ``prefix + content + suffix``. The prefix
(template, instruction, policy) is the same for every item of a policy, so the engine's
prefix cache computes it once; the per-item work is tokenizing the content, which does not
grow with the policy's length.

The ids equal the template's own render of the whole message, because each content is
tokenized the way the render treats it: together with the fixed text just before it
(``LEAD_IN``, the end of the CONTENT heading), so that the tokenizer merges newlines across
that boundary as it does in the render, and with trailing whitespace stripped when the
template trims the message (Gemma's do). ``check_splice`` proves this per model at start-up.
Two differences are intended: special-token text in content stays plain text, and content
lines made only of ``=`` become ``-``, so content can neither end its turn nor its section.
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

from .errors import DeadLetterKind, Rejected
from .policies import Policy

INSTRUCTION = (
    "Examine the given POLICY and determine if the given CONTENT meets the criteria for ANY "
    'of the LABELS. Answer "1" if yes, and "0" if no.'
)
ANSWER_NO, ANSWER_YES = "0", "1"

# The message's fixed text right before the content. It is tokenized with each content (a
# few tokens, whatever the policy), because the content's first characters can merge with
# its last ones ("\n\n" + "\n" is one "\n\n\n" token in Gemma's vocabulary).
LEAD_IN = "CONTENT\n=======\n\n"

# A unique string that cannot occur in a policy, used to find where the content goes.
_SLOT = "\u2063CONTENT-SLOT\u2063"
# Whitespace a trimming template removes from the end of the message.
_TRIM_PROBE = " \n\t "

# A line made only of "=" is a section rule in our format; in content it becomes "-" so
# that content cannot open a section of its own after the CONTENT heading. Any whitespace
# but a newline may stand around it: a CRLF line's "\r", or what a trimming template strips
# from the end of the message, would otherwise leave a bare rule behind.
_RULE_LINE = re.compile(r"^([^\S\n]*)(={3,})([^\S\n]*)$", re.MULTILINE)


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer we use."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...
    def encode(self, text: str, **kwargs: Any) -> list[int]: ...
    def __call__(self, text: Any, **kwargs: Any) -> Any: ...


class PromptError(Rejected, ValueError):
    """A prompt that cannot be built; ``kind`` names why (also a dead letter's error type).

    Content too long is dead-lettered; a policy or tokenizer that cannot make prompts at all
    stops start-up."""


def user_message(policy_text: str, content: str) -> str:
    """The model card's message: two blank lines before each heading, one after each rule."""
    return f"{INSTRUCTION}\n\n\nPOLICY\n======\n\n{policy_text}\n\n\n{LEAD_IN}{content}"


def render(tokenizer: Tokenizer, policy_text: str, content: str) -> str:
    """The chat template's own render of the card's message, generation prompt on."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(policy_text, content)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    return str(rendered)


def neutralize_markers(content: str) -> str:
    return _RULE_LINE.sub(lambda m: m.group(1) + "-" * len(m.group(2)) + m.group(3), content)


@dataclass(frozen=True)
class PolicyPrompt:
    policy: Policy
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    # Room for the ids of ``tokenize_contents`` (lead-in and content) within max_model_len.
    max_content_tokens: int
    lead_in: int = 0  # of that room, what the lead-in takes on its own

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
    before, after = split_render(tokenizer, policy.text)
    prefix = tokenizer.encode(before, add_special_tokens=False)
    suffix = tokenizer.encode(after, add_special_tokens=False)
    lead_in = lead_in_tokens(tokenizer)
    return fit_prompt(policy, tuple(prefix), tuple(suffix), max_model_len, lead_in)


def lead_in_tokens(tokenizer: Tokenizer) -> int:
    """How many tokens the lead-in takes on its own."""
    return len(tokenizer.encode(LEAD_IN, add_special_tokens=False))


def fit_prompt(
    policy: Policy,
    prefix: tuple[int, ...],
    suffix: tuple[int, ...],
    max_model_len: int,
    lead_in: int,
) -> PolicyPrompt:
    """The policy's prompt halves within ``max_model_len``; PromptError when the policy
    leaves no room for content (``lead_in``: the lead-in's own tokens)."""
    budget = max_model_len - len(prefix) - len(suffix) - 1  # one position for the answer
    if budget < lead_in + 1:
        raise PromptError(
            "policy_too_long",
            f"policy {policy.id!r} takes {len(prefix) + len(suffix) + lead_in} tokens with the "
            f"template; max_model_len is {max_model_len}",
        )
    return PolicyPrompt(policy, prefix, suffix, budget, lead_in)


def split_render(tokenizer: Tokenizer, policy_text: str) -> tuple[str, str]:
    """The render's text before the lead-in and after the content."""
    before, sep, after = render(tokenizer, policy_text, _SLOT).partition(_SLOT)
    if not sep or not before.endswith(LEAD_IN):
        what = "changed the CONTENT heading" if sep else "dropped the content"
        raise PromptError(
            "template",
            f"model {model_name(tokenizer)!r}: its chat template {what}; the worker cannot "
            "build exact prompts for this model's template",
        )
    return before[: -len(LEAD_IN)], after


def model_name(tokenizer: Tokenizer) -> str:
    """The tokenizer's model, for messages: the path or hub id it was loaded from."""
    return str(getattr(tokenizer, "name_or_path", None) or "this model")


def tokenize_contents(tokenizer: Tokenizer, contents: Sequence[str]) -> list[list[int]]:
    """Each content's ids as they stand in the prompt, lead-in first.

    Special-token text stays plain text.
    """
    if not contents:
        return []
    trims = _template_trims(tokenizer)
    texts = [_content_text(c, trims) for c in contents]
    backend = backend_copy(tokenizer, split_special=True)
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


def _content_text(content: str, trims: bool) -> str:
    """The text from the lead-in to the end of the message, as the template renders it."""
    text = LEAD_IN + neutralize_markers(content)
    # Jinja's trim is str.strip(); only the end matters, the content ends the message.
    return text.rstrip() if trims else text


# Per tokenizer, whether its chat template trims the message; asked once.
_trims: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _template_trims(tokenizer: Tokenizer) -> bool:
    try:
        return _trims[tokenizer]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable
        pass
    rendered = render(tokenizer, "", _SLOT + _TRIM_PROBE)
    trims = _SLOT + _TRIM_PROBE not in rendered
    try:
        _trims[tokenizer] = trims
    except TypeError:
        pass
    return trims


# Private copies of each fast tokenizer's Rust backend, one per way of reading special-token
# text: split like any text (content) or read as the special tokens it names (the policy
# prompts the chat template writes). The Hugging Face call flips ``encode_special_tokens``
# on the shared backend for each call, so a compile on another thread could flip it back
# mid-batch; a copy cannot.
_backends: weakref.WeakKeyDictionary[Any, dict[bool, tokenizers.Tokenizer]] = (
    weakref.WeakKeyDictionary()
)
_backends_lock = threading.Lock()


def backend_copy(tokenizer: Tokenizer, *, split_special: bool) -> tokenizers.Tokenizer | None:
    """A private copy of ``tokenizer``'s backend that splits special-token text like any
    text (``split_special``) or reads it as special tokens, with no truncation (content
    length is assemble()'s decision) and no padding; None for a tokenizer without one."""
    with _backends_lock:
        try:
            copies = _backends.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable: a copy per call would cost more than it saves
            return None
        backend = copies.get(split_special)
        if backend is None:
            shared = getattr(tokenizer, "backend_tokenizer", None)
            if not isinstance(shared, tokenizers.Tokenizer):
                return None
            backend = copy.deepcopy(shared)
            backend.encode_special_tokens = split_special
            backend.no_truncation()
            backend.no_padding()
            copies[split_special] = backend
        return backend


def media_message(policy_text: str, content: str, images: int) -> list[dict[str, Any]]:
    """The card's message with ``images`` images attached after its text."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": user_message(policy_text, content)}]
    return [{"role": "user", "content": parts + [{"type": "image"}] * images}]


# Per tokenizer and image count, the ids after the content when images follow it.
_media_suffixes: weakref.WeakKeyDictionary[Any, dict[int, tuple[int, ...]]] = (
    weakref.WeakKeyDictionary()
)


def media_suffix(tokenizer: Tokenizer, images: int) -> tuple[int, ...]:
    """The ids that end a prompt whose content is followed by ``images`` images: each image's
    placeholder as the model's own template writes it (the engine's processor expands it),
    then the end of the turn and the generation prompt. The policy prefix is the text-only
    prompt's, so media items meet the same cached prefix; a template that renders the text
    before the images differently is refused."""
    known = _media_suffixes.setdefault(tokenizer, {})
    if images in known:
        return known[images]
    rendered = str(
        tokenizer.apply_chat_template(
            media_message("P", _SLOT, images), tokenize=False, add_generation_prompt=True
        )
    )
    before, sep, after = rendered.partition(_SLOT)
    if not sep or before != split_render(tokenizer, "P")[0] + LEAD_IN:
        raise PromptError(
            "template",
            f"model {model_name(tokenizer)!r}: its chat template renders a message with images "
            "differently before the content; the worker cannot attach media to its prompts",
        )
    known[images] = tuple(tokenizer.encode(after, add_special_tokens=False))
    return known[images]


Overlong = Literal["truncate", "dead_letter"]


@dataclass(frozen=True)
class Images:
    """The images attached to one prompt: how many, and the prompt positions each takes in
    the engine once its processor has expanded the placeholder (an upper bound per image)."""

    count: int
    tokens_each: int

    @property
    def tokens(self) -> int:
        return self.count * self.tokens_each

    def described(self) -> str:
        return f"{self.count} image{'s' * (self.count != 1)} of {self.tokens_each} tokens each"


def content_room(
    prompt: PolicyPrompt, suffix: Sequence[int] | None = None, images: Images | None = None
) -> int:
    """Room for an item's ``tokenize_contents`` ids (lead-in and content) within
    max_model_len: what the policy leaves, less what the media ``suffix`` adds beyond the
    text suffix, less the images' tokens in the engine. The suffix's placeholders are
    counted beside the images' full expansion, a token per image to spare."""
    extra = len(suffix) - len(prompt.suffix) if suffix is not None else 0
    return prompt.max_content_tokens - extra - (images.tokens if images else 0)


def assemble(
    prompt: PolicyPrompt,
    content_ids: Sequence[int],
    overlong: Overlong,
    suffix: Sequence[int] | None = None,
    images: Images | None = None,
) -> list[int]:
    """The full prompt for one item and one policy; ``content_ids`` from tokenize_contents,
    ``suffix`` from media_suffix when images follow the content, ``images`` what they cost
    in the engine (their tokens are taken from the content's room).

    Content past its room is truncated or refused (``content_too_long``), as ``overlong``
    says; images that leave no room for the lead-in and a token of content are refused
    (``media_rejected``) whatever ``overlong`` says, as no cut of the text makes them fit."""
    room = content_room(prompt, suffix, images)
    if images is not None and images.count and room <= prompt.lead_in:
        reason = _no_room_for_images(prompt, images, room + images.tokens)
        raise PromptError(DeadLetterKind.MEDIA_REJECTED, reason)
    if len(content_ids) > room:
        if overlong == "dead_letter":
            raise PromptError(
                DeadLetterKind.CONTENT_TOO_LONG, _too_long(prompt, len(content_ids), room, images)
            )
        content_ids = content_ids[:room]
    return [*prompt.prefix, *content_ids, *(prompt.suffix if suffix is None else suffix)]


def _too_long(prompt: PolicyPrompt, length: int, room: int, images: Images | None) -> str:
    where = f"policy {prompt.policy.id!r} leaves room for {room}"
    if images is not None and images.count:
        where += f" beside its {images.described()}"
    return (
        f"content is {length} tokens with its heading; {where}: set engine.overlong to "
        "truncate, or raise engine.max_model_len"
    )


def _no_room_for_images(prompt: PolicyPrompt, images: Images, room: int) -> str:
    # A video's or an animated image's frames are one prompt: fewer frames make it fit.
    fewer = "lower media.max_frames or " if images.count > 1 else ""
    # The same line a MediaRejected makes: the rule, then why.
    return (
        f"too_many_image_tokens: {images.described()} take {images.tokens} tokens in the "
        f"engine; policy {prompt.policy.id!r} leaves {room} for content and images within "
        f"engine.max_model_len: {fewer}raise engine.max_model_len"
    )
