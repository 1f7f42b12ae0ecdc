"""Prompt halves for a whole policy pack at once; on reload, only for policies that changed.

``prompts.build_policy_prompt`` with ``prompt_check`` compiles one policy at a time (three
renders and seven tokenizer calls each), which made ten thousand policies take minutes.
Here each policy is rendered once around the content slot, and the prompt its probe content
(``POLICY_PROBE``) makes is tokenized in batches by a private copy of the fast tokenizer's
Rust backend. The policy's prefix is that prompt's tokens up to where the lead-in starts;
the tokens after it must be, id for id, the probe's own (``tokenize_contents``) and the
template's tail. That is the proof ``check_splice`` makes per policy: the spliced prompt
equals the tokenized render. Each compile also checks that the backend copy tokenizes the
probe policy's prompt as the tokenizer's own call does. A tokenizer without a Rust backend
compiles one policy at a time, as before.

Halves depend only on the policy text and the tokenizer, so they are keyed by the text's
version: a reload passes the halves in use and tokenizes only new texts, and the old and new
catalogs share the rest. Token ids are held as one shared int object per vocabulary id: a
compiled catalog costs a pointer per token, not an int object per token.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import tokenizers

from .policies import Policy
from .prompt_check import POLICY_PROBE, PROBE_POLICY, check_policy, first_difference, splice_error
from .prompts import (
    LEAD_IN,
    PromptError,
    Tokenizer,
    backend_copy,
    build_policy_prompt,
    model_name,
    split_render,
    tokenize_contents,
)

CHUNK = 64  # policies per backend call: bounds the memory its encodings take at once
_UNBOUNDED = 2**62
_start = itemgetter(0)


@dataclass(frozen=True)
class Halves:
    """A policy's prompt around the content: template, instruction and policy; the tail."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]


def compile_halves(
    tokenizer: Tokenizer,
    policies: Iterable[Policy],
    known: Mapping[str, Halves] | None = None,
    alone: bool = False,
) -> dict[str, Halves]:
    """Halves by policy version for every policy: taken from ``known`` (versions compiled
    before with this tokenizer) or compiled and proven. Raises PromptError ("template"), the
    first policy's that cannot compile.

    ``alone``: tokenize in the calling thread only. The backend's batch call spreads over
    every core, which suits start-up; a reload runs beside the engine and must not take
    its cores."""
    policies = list(policies)
    outcomes = compile_each(tokenizer, policies, known, alone)
    raise_first_error(policies, outcomes)
    return outcomes  # type: ignore[return-value] (no PromptError left)


def raise_first_error(
    policies: Iterable[Policy], outcomes: Mapping[str, Halves | PromptError]
) -> None:
    """Raise the PromptError of the first of ``policies`` that ``compile_each`` could not
    compile, as a compile of the whole pack would."""
    for policy in policies:
        failed = outcomes[policy.version]
        if isinstance(failed, PromptError):
            raise failed


def compile_each(
    tokenizer: Tokenizer,
    policies: Iterable[Policy],
    known: Mapping[str, Halves] | None = None,
    alone: bool = False,
) -> dict[str, Halves | PromptError]:
    """As ``compile_halves``, but each policy that cannot compile has its PromptError in
    place of its halves (``policies check`` reports every one). Raises PromptError
    ("tokenizer") only for a backend that tokenizes differently from its tokenizer."""
    known = known or {}
    halves: dict[str, Halves | PromptError] = {}
    todo: dict[str, Policy] = {}
    for policy in policies:
        if policy.version in known:
            halves[policy.version] = known[policy.version]
        else:
            todo.setdefault(policy.version, policy)
    backend = backend_copy(tokenizer, split_special=False)
    if backend is None:
        for version, policy in todo.items():
            halves[version] = _one(tokenizer, policy)
        return halves
    if todo:
        _check_backend(tokenizer, backend)
    pending = list(todo.values())
    for start in range(0, len(pending), CHUNK):
        halves.update(_batch(tokenizer, backend, pending[start : start + CHUNK], alone))
    return halves


def _one(tokenizer: Tokenizer, policy: Policy) -> Halves | PromptError:
    """A policy compiled the general (slower) way, for a tokenizer without a Rust backend."""
    try:
        check_policy(tokenizer, policy)
        prompt = build_policy_prompt(tokenizer, policy, _UNBOUNDED)
    except PromptError as exc:
        return exc
    return Halves(shared_ids(prompt.prefix), shared_ids(prompt.suffix))


def _batch(
    tokenizer: Tokenizer,
    backend: tokenizers.Tokenizer,
    policies: Sequence[Policy],
    alone: bool = False,
) -> dict[str, Halves | PromptError]:
    """One backend call for ``policies`` (a call per policy when ``alone``): their halves,
    each proven on the probe content, or why not."""
    [probe] = tokenize_contents(tokenizer, [POLICY_PROBE])
    out: dict[str, Halves | PromptError] = {}
    rendered, cuts, tails, texts = [], [], [], []
    for policy in policies:
        try:
            before, after = split_render(tokenizer, policy.text)
        except PromptError as exc:
            out[policy.version] = exc
            continue
        rendered.append(policy)
        cuts.append(len(before))
        tails.append(after)
        texts.append(f"{before}{LEAD_IN}{POLICY_PROBE}{after}")
    unique = sorted(set(tails))  # the template's tail: one text, whatever the policy
    encoded = backend.encode_batch(unique, add_special_tokens=False)
    suffixes = {tail: shared_ids(e.ids) for tail, e in zip(unique, encoded, strict=True)}
    if alone:
        encodings = [backend.encode(text, add_special_tokens=False) for text in texts]
    else:
        encodings = backend.encode_batch(texts, add_special_tokens=False)
    for policy, cut, tail, encoding in zip(rendered, cuts, tails, encodings, strict=True):
        try:
            prefix = _prefix(tokenizer, policy, encoding, cut, [*probe, *suffixes[tail]])
        except PromptError as exc:
            out[policy.version] = exc
        else:
            out[policy.version] = Halves(prefix, suffixes[tail])
    return out


def _prefix(
    tokenizer: Tokenizer, policy: Policy, encoding: Any, cut: int, rest: list[int]
) -> tuple[int, ...]:
    """The tokens before character ``cut``; PromptError unless a token ends exactly there
    and the tokens after it are ``rest``."""
    ids, offsets = encoding.ids, encoding.offsets
    at = bisect_left(offsets, cut, key=_start)
    clean = at == 0 or offsets[at - 1][1] <= cut
    if not clean or ids[at:] != rest:
        raise splice_error(tokenizer, policy, POLICY_PROBE, at + first_difference(ids[at:], rest))
    return shared_ids(ids[:at])


def _check_backend(tokenizer: Tokenizer, backend: tokenizers.Tokenizer) -> None:
    """The backend copy must tokenize a policy prompt as the tokenizer's own call does."""
    before, after = split_render(tokenizer, PROBE_POLICY.text)
    text = f"{before}{LEAD_IN}{POLICY_PROBE}{after}"
    own = tokenizer.encode(text, add_special_tokens=False, verbose=False)
    if backend.encode(text, add_special_tokens=False).ids != own:
        raise PromptError(
            "tokenizer",
            f"model {model_name(tokenizer)!r}: its fast tokenizer's backend tokenizes a policy "
            "prompt differently from the tokenizer itself; the worker cannot compile policies "
            "for this tokenizer",
        )


def same_tokenizer(a: Tokenizer, b: Tokenizer | None) -> bool:
    """Whether prompts compiled with ``a`` are those ``b`` compiles: the same object, or two
    fast tokenizers with the same backend, chat template and special tokens (the engine's
    tokenizer and the one start-up checks loaded, say)."""
    if a is b:
        return True
    if b is None:
        return False
    mine, theirs = fingerprint(a), fingerprint(b)
    return mine is not None and mine == theirs


# Per tokenizer, a digest of its backend (vocabulary, merges, normalizers: fixed once loaded).
_backend_digests: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def fingerprint(tokenizer: Tokenizer) -> tuple[str, str, str] | None:
    """What makes two tokenizers compile the same prompts: a digest of the backend, the chat
    template and the special tokens; None for a tokenizer without a Rust backend."""
    backend = backend_copy(tokenizer, split_special=False)
    if backend is None:
        return None
    digest = _backend_digests.get(tokenizer)
    if digest is None:
        digest = hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()
        _backend_digests[tokenizer] = digest
    special = sorted(getattr(tokenizer, "special_tokens_map", {}).items())
    return digest, repr(getattr(tokenizer, "chat_template", None)), repr(special)


# One int object per token id, shared by every compiled prompt (ids below 257 are shared by
# Python itself); only ever grown, under its lock.
_ids: list[int] = []
_ids_lock = threading.Lock()


def shared_ids(ids: Iterable[int]) -> tuple[int, ...]:
    """``ids`` as a tuple of the shared int objects."""
    ids = ids if isinstance(ids, list | tuple) else list(ids)
    top = max(ids, default=-1)
    if top >= len(_ids):
        with _ids_lock:
            _ids.extend(range(len(_ids), top + 1))
    return tuple(map(_ids.__getitem__, ids))
