"""Routing decisions: from P("1") per policy to labels and a route. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import RoutingSettings
from .policies import Policy

Route = Literal["auto", "review"]


@dataclass(frozen=True)
class Thresholds:
    threshold: float
    review_low: float
    review_high: float

    def label(self, score: float) -> Literal[0, 1]:
        return 1 if score >= self.threshold else 0

    def uncertain(self, score: float) -> bool:
        return self.review_low <= score < self.review_high


def thresholds_for(policy: Policy, settings: RoutingSettings) -> Thresholds:
    """Config override for the policy, then its front matter, then the global values."""
    override = settings.override(policy.id)

    def pick(name: str) -> float:
        candidates = (getattr(override, name, None), getattr(policy, name), getattr(settings, name))
        for value in candidates:
            if value is not None:
                return float(value)
        raise AssertionError(name)  # settings always has a value

    result = Thresholds(pick("threshold"), pick("review_low"), pick("review_high"))
    if result.review_low > result.review_high:
        raise ValueError(
            f"policy {policy.id!r}: review_low {result.review_low} exceeds "
            f"review_high {result.review_high}"
        )
    return result


def confidence(score: float, label: int) -> float:
    """Probability of the emitted label."""
    return score if label == 1 else 1.0 - score


def route(uncertain: list[bool]) -> Route:
    """An item goes to review when any of its policies is uncertain."""
    return "review" if any(uncertain) else "auto"
