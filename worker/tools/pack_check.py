"""``moderation-worker policies check``: the pack that will be deployed, file by file.

For every file of the pack: loaded (id, where the id came from, title, prompt tokens, the
room left for content in ``max_model_len``, for a model that takes images the room left
beside one image and beside ``media.max_frames`` frames, and, when the model's config can
be read, the KV cache its cached prefix holds) or why not (an error, or the reason it is not a
policy); then the warnings ``policy_lint`` finds. The pack-wide checks the worker makes at
start-up (ids unique, default set, shadow pairs, routing overrides, the model's chat
template) follow. Exit code: 1 when anything would stop the worker, or with ``strict``
when there is any warning; else 0. Needs only the tokenizer. The prompts are compiled in
batches (``prefixes.compile_each``), as the worker compiles them: each policy's halves, or
its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..catalog import check_routing
from ..config import Settings
from ..engine.image_tokens import ImageTokensUnknown, model_tokens_per_image
from ..kv_footprint import KvShape, kv_bytes
from ..model_files import pretrained_config
from ..policies import PackResult, Policy, PolicyError, PolicyRegistry, read_pack
from ..policy_lint import Finding, lint
from ..prefixes import Halves, compile_each, raise_first_error
from ..prompt_check import check_splice
from ..prompts import (
    Images,
    PolicyPrompt,
    PromptError,
    Tokenizer,
    build_policy_prompt,
    content_room,
    fit_prompt,
    lead_in_tokens,
    media_suffix,
)

Echo = Callable[[str], None]
KvLayout = tuple[KvShape, int]  # the model's KV shape and the engine's cache block size


@dataclass(frozen=True)
class ImageLayout:
    """What images take in this model's prompts: each one's tokens in the engine, and the
    image counts reported (one, and the most frames of one item)."""

    tokens_each: int
    counts: tuple[int, ...]

    def line(self) -> str:
        return (
            f"images: {self.tokens_each} tokens each in the engine; room for content shown "
            f"beside {' and '.join(str(n) for n in self.counts)} (media.max_frames)"
        )


@dataclass(frozen=True)
class _Fit:
    """What a policy's halves are measured against."""

    tokenizer: Tokenizer
    max_model_len: int
    kv: KvLayout | None
    images: ImageLayout | None
    lead_in: int  # the lead-in's own tokens


@dataclass
class Tally:
    loaded: int = 0
    errors: int = 0
    skipped: int = 0
    warnings: int = 0

    def line(self) -> str:
        return (
            f"{self.loaded} loaded, {self.errors} error{'s' * (self.errors != 1)}, "
            f"{self.skipped} not policies, {self.warnings} warning{'s' * (self.warnings != 1)}"
        )


def image_layout(settings: Settings, model: str) -> ImageLayout | str | None:
    """What images take for ``model`` (its files), or why that is not known; None for a
    model without a vision part or without a config to say, or with media off."""
    if not settings.media.enabled or pretrained_config(model) is None:
        return None  # a tokenizer alone does not say whether its model takes images
    try:
        tokens_each = model_tokens_per_image(model)
    except ImageTokensUnknown as exc:
        return str(exc)
    if tokens_each is None:
        return None
    return ImageLayout(tokens_each, tuple(sorted({1, settings.media.max_frames})))


def check_pack(
    settings: Settings,
    tokenizer: Tokenizer,
    max_model_len: int,
    echo: Echo,
    kv: KvLayout | None = None,
    images: ImageLayout | str | None = None,
) -> Tally:
    """Print the report on ``settings.policies.dir``; the tally it ends with. ``images``:
    what images take for a model that takes them, or why that is not known. Raises
    PolicyError when the pack cannot be read at all (no directory, a broken pack.yaml)."""
    directory = settings.policies.dir
    results = read_pack(directory)
    echo(f"policy pack {directory} (max_model_len {max_model_len})")
    if images is not None:
        echo(images.line() if isinstance(images, ImageLayout) else f"images: {images}")
    layout = images if isinstance(images, ImageLayout) else None
    policies = [r.policy for r in results if r.policy is not None]
    try:
        compiled = compile_each(tokenizer, policies)  # in batches, as the worker compiles
    except PromptError as exc:  # a tokenizer the worker cannot compile policies for at all
        compiled = dict.fromkeys((p.version for p in policies), exc)
    fit = _Fit(tokenizer, max_model_len, kv, layout, lead_in_tokens(tokenizer))
    tally = Tally()
    for result in results:
        _report_file(result, compiled, fit, echo, tally)
    for problem in pack_problems(settings, policies, tokenizer, compiled):
        echo(f"error    pack: {problem}")
        tally.errors += 1
    echo(tally.line())
    return tally


def _report_file(
    result: PackResult,
    compiled: Mapping[str, Halves | PromptError],
    fit: _Fit,
    echo: Echo,
    tally: Tally,
) -> None:
    name = result.file.name
    if result.file.skipped is not None:
        echo(f"skipped  {name}: {result.file.skipped}")
        tally.skipped += 1
        return
    if result.policy is None:
        echo(f"error    {name}: {_without_path(result.error or '', result.file.path)}")
        tally.errors += 1
        return
    policy = result.policy
    length = _length(policy, compiled[policy.version], fit)
    status = "error   " if length.startswith("too long") else "loaded  "
    tally.errors += status == "error   "
    tally.loaded += status == "loaded  "
    echo(f"{status} {name}: id {policy.id} ({policy.id_from}), title {policy.title!r}, {length}")
    for finding in lint(policy):
        _finding(finding, echo, tally)


def _length(policy: Policy, halves: Halves | PromptError, fit: _Fit) -> str:
    try:
        prompt = _prompt(policy, halves, fit)
    except PromptError as exc:
        if exc.kind != "policy_too_long":
            return f"not compiled: {exc.reason}"
        return f"too long: {exc.reason}; raise engine.max_model_len or shorten the policy"
    room = f"{prompt.overhead} prompt tokens, {prompt.max_content_tokens} left for content"
    if fit.images is not None:
        tokens_each = fit.images.tokens_each
        room += "".join(_beside(fit.tokenizer, prompt, tokens_each, n) for n in fit.images.counts)
    if fit.kv is None:
        return room
    mib = kv_bytes(fit.kv[0], len(prompt.prefix), fit.kv[1]) / 2**20
    return f"{room}, {mib:.1f} MiB of KV cache"


def _prompt(policy: Policy, halves: Halves | PromptError, fit: _Fit) -> PolicyPrompt:
    """The policy's prompt within the context; PromptError when it cannot be built."""
    if isinstance(halves, PromptError):
        # Compiled, but its splice not proven: the halves the render gives are still
        # measured (the proof's error is the pack's, below); a render that fails raises.
        return build_policy_prompt(fit.tokenizer, policy, fit.max_model_len)
    return fit_prompt(policy, halves.prefix, halves.suffix, fit.max_model_len, fit.lead_in)


def _beside(tokenizer: Tokenizer, prompt: PolicyPrompt, tokens_each: int, count: int) -> str:
    """The room left for content beside ``count`` images, as assemble() counts it."""
    try:
        suffix = media_suffix(tokenizer, count)
    except PromptError as exc:
        return f", no images: {exc.reason}"
    room = content_room(prompt, suffix, Images(count, tokens_each))
    left = f"{room} left" if room > prompt.lead_in else "no room left"
    return f", beside {count} image{'s' * (count != 1)} {left}"


def _finding(finding: Finding, echo: Echo, tally: Tally) -> None:
    echo(f"         {finding.level}: {finding.message}")
    tally.warnings += finding.level == "warning"


def pack_problems(
    settings: Settings,
    policies: Iterable[Policy],
    tokenizer: Tokenizer,
    compiled: Mapping[str, Halves | PromptError],
) -> list[str]:
    """What the worker would refuse about the pack as a whole. ``compiled``: the policies'
    halves, or why not (``compile_each``)."""
    policies = list(policies)
    try:
        registry = PolicyRegistry(policies, settings.policies.default, settings.shadow.pairs)
        check_routing(registry, settings.routing)
        check_splice(tokenizer)  # the probe contents; each policy was proven compiling
        raise_first_error(registry, compiled)
    except (PolicyError, PromptError) as exc:
        return [str(exc)]
    return []


def _without_path(error: str, path: Path) -> str:
    """Errors name their file; the report's line already does."""
    return error.removeprefix(f"{path}: ")
