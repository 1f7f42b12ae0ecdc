"""The policy set compiled for serving: each policy's prompt halves and thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import RoutingSettings, env_spelling
from .policies import Policy, PolicyError, PolicyRegistry
from .prompt_check import check_splice
from .prompts import PolicyPrompt, Tokenizer, build_policy_prompt
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

    def resolve(self, requested: list[str] | None) -> list[Entry]:
        """Entries for one event's policies; raises PolicyError for unknown ids."""
        return [self.entries[p.id] for p in self.registry.resolve(requested)]


def compile_catalog(
    registry: PolicyRegistry, tokenizer: Tokenizer, max_model_len: int, routing: RoutingSettings
) -> Catalog:
    """Raises PolicyError, or PromptError (a policy too long for the model, or a model whose
    chat template the worker's prompts do not match)."""
    check_routing(registry, routing)
    check_splice(tokenizer, registry)
    entries = {
        policy.id: Entry(
            policy,
            build_policy_prompt(tokenizer, policy, max_model_len),
            thresholds_for(policy, routing),
        )
        for policy in registry
    }
    shadows: dict[str, tuple[Entry, ...]] = {}
    for shadow, production in sorted(registry.shadows.items()):
        shadows[production] = (*shadows.get(production, ()), entries[shadow])
    return Catalog(registry, entries, shadows)


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
