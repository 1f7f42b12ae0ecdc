"""The start-up proof that spliced prompts are the model's own: probe contents, both ways.

The worker builds each prompt from a cached policy prefix and the content's own ids
(``prompts.py``). That equals the chat template's full render only if the template treats
the message the way ``tokenize_contents`` assumes (Gemma's: trim, then tokenize). A model
family whose template does anything else would silently get prompts it was never trained
on, so each model is checked here before it serves, and refused when any probe differs.
"""

from __future__ import annotations

from collections.abc import Iterable

from .policies import Policy, policy_version
from .prompts import (
    PromptError,
    Tokenizer,
    assemble,
    build_policy_prompt,
    model_name,
    render,
    tokenize_contents,
)

_PROBE_POLICY = "Flag content that mentions any of: apple, river.\n\nLABELS: 1 = flagged."
_LONG = " ".join(f"line {n}: the quick brown fox, 42 times; naïve café." for n in range(120))
# Contents whose edges and scripts a template or tokenizer treats specially.
PROBES: tuple[str, ...] = (
    "hello",
    "  leading spaces",
    "\nleading newline",
    "\n\n\nleading newlines",
    "\n \n\tmixed leading whitespace",
    "trailing spaces   ",
    "trailing newlines\n\n",
    "\n both ends \t\n",
    "emoji 🙂👍🏽 and a family 👨‍👩‍👧 ✨",
    "中文内容，日本語のテキスト、한국어 문장。",
    "line one\r\nline two\r\n\r\nline three",
    "tabs\tand\u00a0non-breaking\u2003spaces\u3000",
    "",
    " \n\t ",
    _LONG,
    _LONG + "\n\n",
)
# The probe each real policy gets: a newline that merges with the heading's.
POLICY_PROBE = "\nleading newline"
_NO_LIMIT = 10**9


def check_splice(tokenizer: Tokenizer, policies: Iterable[Policy] = ()) -> None:
    """Raise PromptError naming the model when a spliced prompt differs from the render.

    Every probe runs on a probe policy; each given policy gets one probe, so that its own
    prefix is proven too.
    """
    for content in PROBES:
        _compare(tokenizer, PROBE_POLICY, content)
    for policy in policies:
        check_policy(tokenizer, policy)


def check_policy(tokenizer: Tokenizer, policy: Policy) -> None:
    """Raise PromptError when the policy's own prompt, spliced, differs from the render."""
    _compare(tokenizer, policy, POLICY_PROBE)


PROBE_POLICY = Policy("probe", "probe", _PROBE_POLICY, policy_version(_PROBE_POLICY))


def _compare(tokenizer: Tokenizer, policy: Policy, content: str) -> None:
    spliced = spliced_ids(tokenizer, policy, content)
    rendered = render(tokenizer, policy.text, content)
    full = tokenizer.encode(rendered, add_special_tokens=False, verbose=False)
    if spliced != full:
        raise splice_error(tokenizer, policy, content, first_difference(spliced, full))


def splice_error(tokenizer: Tokenizer, policy: Policy, content: str, at: int) -> PromptError:
    """The start-up error for a spliced prompt that differs from the render at token ``at``."""
    return PromptError(
        "template",
        f"model {model_name(tokenizer)!r}: its chat template renders content "
        f"{content[:40]!r} (policy {policy.id!r}) differently from the worker's prompt "
        f"(first difference at token {at}); the worker cannot build exact prompts for "
        "this model's template",
    )


def first_difference(a: list[int], b: list[int]) -> int:
    same = (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return next(same, min(len(a), len(b)))


def spliced_ids(tokenizer: Tokenizer, policy: Policy, content: str) -> list[int]:
    """One prompt built the way the worker builds it, with no length limit."""
    prompt = build_policy_prompt(tokenizer, policy, _NO_LIMIT)
    [content_ids] = tokenize_contents(tokenizer, [content])
    return assemble(prompt, content_ids, "dead_letter")
