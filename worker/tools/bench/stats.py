"""Pure arithmetic of the benchmark: percentiles, rates, ratios and the open-loop schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds; empty when nothing was measured."""
    if not seconds:
        return {}
    return {
        "p50": round(percentile(seconds, 50) * 1000, 1),
        "p95": round(percentile(seconds, 95) * 1000, 1),
        "p99": round(percentile(seconds, 99) * 1000, 1),
        "max": round(max(seconds) * 1000, 1),
    }


def steady_rate(arrivals: Sequence[float], skip: int) -> float:
    """Items per second over the arrivals after the first ``skip`` (the warm-up).

    The slope of a least-squares line through (arrival time, count): results come in
    bursts (a micro-batch publishes together), and a slope weighs every burst, where first
    and last arrival alone would be off by up to one burst.
    """
    kept = sorted(arrivals)[skip:]
    if len(kept) < 2:
        raise ValueError(f"need at least 2 arrivals after the first {skip}, got {len(kept)}")
    mean_t = sum(kept) / len(kept)
    mean_n = (len(kept) - 1) / 2
    spread = sum((t - mean_t) ** 2 for t in kept)
    if spread <= 0:
        raise ValueError("all kept arrivals happened at the same instant")
    return sum((t - mean_t) * (n - mean_n) for n, t in enumerate(kept)) / spread


def saturated_rate(phase: dict) -> float:
    """Items per second of a phase result: the engine limit's, or a system's saturated run."""
    return phase["items_per_s"] if "items_per_s" in phase else phase["saturation"]["items_per_s"]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either side was not measured."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def open_loop_schedule(rate: float, duration_s: float) -> list[float]:
    """Send offsets (seconds from the start) for a fixed-rate open-loop producer.

    Open loop: the n-th item is due at n / rate whatever happened to earlier ones, so a slow
    system sees its queue grow instead of the producer slowing down to match it.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    count = max(1, math.floor(rate * duration_s))
    return [n / rate for n in range(count)]


def cache_summary(
    usage: Sequence[tuple[str, int, int]], prefix_tokens: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Per policy, from (policy, prompt tokens, cached tokens) per prompt: mean tokens
    computed and cached per prompt, and the cached share of the prompt and of the policy
    prefix (the template, instruction and policy that every prompt of the policy shares)."""
    by_policy: dict[str, list[tuple[int, int]]] = {}
    for policy, prompt, cached in usage:
        by_policy.setdefault(policy, []).append((prompt, cached))
    out = {}
    for policy, rows in sorted(by_policy.items()):
        prompt_sum = sum(p for p, _ in rows)
        cached_sum = sum(c for _, c in rows)
        prefix = prefix_tokens.get(policy)
        out[policy] = {
            "prompts": len(rows),
            "prefix_tokens": prefix or 0,
            "prompt_tokens_mean": round(prompt_sum / len(rows), 1),
            "cached_tokens_mean": round(cached_sum / len(rows), 1),
            "computed_tokens_mean": round((prompt_sum - cached_sum) / len(rows), 1),
            "cached_share_of_prompt": round(cached_sum / prompt_sum, 4) if prompt_sum else 0.0,
            "cached_share_of_policy": (
                round(sum(min(c, prefix) for _, c in rows) / (prefix * len(rows)), 4)
                if prefix
                else 0.0
            ),
        }
    return out


def prefill_summary(usage: Sequence[tuple[str, int, int]]) -> dict[str, float]:
    """Over every prompt of a steady window, from the engine's own per-request counts: the
    share of prompt tokens read from the prefix cache, and tokens computed per prompt (per
    item, with one policy per event)."""
    prompt = sum(p for _, p, _ in usage)
    cached = sum(c for _, _, c in usage)
    return {
        "prompts": len(usage),
        "hit_ratio": round(cached / prompt, 4) if prompt else 0.0,
        "computed_tokens_per_prompt": round((prompt - cached) / len(usage), 1),
    }
