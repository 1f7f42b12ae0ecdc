"""The policy set compiled for serving: each policy's prompt halves and thresholds.

A catalog is immutable; a reload compiles a new one and the worker swaps it in whole. Given
the catalog in use, a compile reuses the prompt halves of every policy whose text did not
change (``prefixes.py``), so a reload's cost grows with what changed, not with the pack; a
reload with many changes compiles them in a process of its own (``compile_process.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .compile_process import compile_changed
from .config import RoutingSettings, env_spelling
from .policies import Policy, PolicyError, PolicyRegistry
from .prefixes import Halves, compile_halves, same_tokenizer
from .prompt_check import check_splice
from .prompts import PolicyPrompt, Tokenizer, fit_prompt, lead_in_tokens
from .routing import Thresholds, thresholds_for


@dataclass(frozen=True)
class Entry:
    policy: Policy
    prompt: PolicyPrompt
    thresholds: Thresholds


@dataclass(frozen=True)
class Catalog:
    registry: PolicyRegistry
    entries: dict[str, Entry]
    shadows: dict[str, tuple[Entry, ...]] = field(default_factory=dict)  # by production id
    # The tokenizer the prompts were compiled with: a reload with it reuses their halves.
    tokenizer: Any = field(default=None, compare=False, repr=False)

    def halves(self, tokenizer: Tokenizer) -> dict[str, Halves]:
        """Compiled halves by policy version, for a compile with ``tokenizer``."""
        if not same_tokenizer(tokenizer, self.tokenizer):
            return {}
        prompts = (entry.prompt for entry in self.entries.values())
        return {p.policy.version: Halves(p.prefix, p.suffix) for p in prompts}

    def resolve(self, requested: list[str] | None) -> list[Entry]:
        """Entries for one event's policies; raises PolicyError for unknown ids."""
        return [self.entries[p.id] for p in self.registry.resolve(requested)]


def compile_catalog(
    registry: PolicyRegistry,
    tokenizer: Tokenizer,
    max_model_len: int,
    routing: RoutingSettings,
    previous: Catalog | None = None,
) -> Catalog:
    """Raises PolicyError, or PromptError (a policy too long for the model, or a model whose
    chat template the worker's prompts do not match). ``previous``: the catalog in use, whose
    halves are reused for unchanged policy texts; with it, CompileProcessError too."""
    check_routing(registry, routing)
    check_splice(tokenizer)  # the probe contents; each policy is proven as it compiles
    if previous is None:  # start-up: the backend's batch call, over every core
        halves = compile_halves(tokenizer, registry)
    else:  # a reload, beside serving: many changes compile in a process of their own
        halves = compile_changed(tokenizer, registry, previous.halves(tokenizer))
    lead_in = lead_in_tokens(tokenizer)
    entries = {}
    for policy in registry:
        half = halves[policy.version]
        prompt = fit_prompt(policy, half.prefix, half.suffix, max_model_len, lead_in)
        entries[policy.id] = Entry(policy, prompt, thresholds_for(policy, routing))
    shadows: dict[str, tuple[Entry, ...]] = {}
    for shadow, production in sorted(registry.shadows.items()):
        shadows[production] = (*shadows.get(production, ()), entries[shadow])
    return Catalog(registry, entries, shadows, tokenizer)


def check_routing(registry: PolicyRegistry, routing: RoutingSettings) -> None:
    """Per-policy overrides must name loaded policies and leave every band ordered."""
    ids = {policy.id for policy in registry}
    reached = ids | {env_spelling(policy_id) for policy_id in ids}
    unknown = sorted(set(routing.policies) - reached)
    if unknown:
        raise PolicyError(
            f"routing.policies names policies that are not loaded: {', '.join(unknown)}"
        )
    for policy in registry:
        try:
            thresholds_for(policy, routing)
        except ValueError as exc:  # names the policy and the inverted band
            raise PolicyError(
                f"{exc}: put review_low below review_high (in the policy front matter, "
                "routing.policies or routing)"
            ) from None
