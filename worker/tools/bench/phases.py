"""Phases made of several runs of a system: the DIY peer's in-flight bounds, the verdict
cache with and without copies, shadow scoring on and off, many policies."""

from __future__ import annotations

import time
from typing import Any, Protocol

from ...prompts import Tokenizer
from .config import BenchConfig
from .many import many_workload, write_many_policies
from .stats import ratio, saturated_rate
from .workload import cache_hit_cost


class SystemBench(Protocol):
    """What the phases use of the runner's system bench (runner.SystemBench)."""

    bootstrap: str
    launch: Any

    async def measure(self, kind: str, count: int, **options: Any) -> dict[str, Any]: ...


async def diy_phase(bench: SystemBench, config: BenchConfig) -> dict[str, Any]:
    """The DIY peer at each in-flight bound, on the server the remote phase uses."""
    runs = {}
    for bound in config.diy_in_flight:
        runs[str(bound)] = await bench.measure(
            "diy", config.events, name=f"diy-{bound}", served=True, in_flight=bound
        )
    best = max(runs, key=lambda b: _valid_rate(runs[b]) or 0.0)
    return {"runs": runs, "best_in_flight": int(best), **runs[best]}


def _valid_rate(run: dict[str, Any]) -> float | None:
    if "error" in run or run.get("labels", {}).get("wrong"):
        return None
    return saturated_rate(run)


async def cache_phase(
    bench: SystemBench, config: BenchConfig, tokenizer: Tokenizer
) -> dict[str, Any]:
    """The worker on unique content, then on content with copies with and without the cache.

    The run without the cache tells the cache's own part from the engine's: vLLM's prefix
    cache already spares most of a copy's prefill when the copy's blocks are still cached.
    """
    share = config.duplicate_share
    unique = await bench.measure("worker", config.events, name="cache-unique")
    copies = await bench.measure(
        "worker", config.events, name="cache-duplicates", duplicate_share=share
    )
    uncached = await bench.measure(
        "worker",
        config.events,
        name="cache-duplicates-off",
        duplicate_share=share,
        settings={"cache": {"enabled": False}},
    )
    return {
        "duplicate_share": share,
        "unique": unique,
        "duplicates": copies,
        "duplicates_without_cache": uncached,
        "duplicates_over_unique": ratio(saturated_rate(copies), saturated_rate(unique)),
        "cache_on_over_off": ratio(saturated_rate(copies), saturated_rate(uncached)),
        "hit_cost": await cache_hit_cost(config, tokenizer),
    }


async def shadow_phase(
    bench: SystemBench, config: BenchConfig, phases: dict[str, Any]
) -> dict[str, Any]:
    """The worker on unique content with every event shadowed, against it without."""
    base = phases.get("cache", {}).get("unique") or await bench.measure(
        "worker", config.events, name="shadow-off", settings={"shadow": {"sample": 0.0}}
    )
    shadowed = await bench.measure(
        "worker", config.events, name="shadow-on", settings={"shadow": {"sample": 1.0}}
    )
    cpu = [p.get("cpu_ms_per_item") for p in (base, shadowed)]
    return {
        "without": base,
        "with": shadowed,
        "with_over_without": ratio(saturated_rate(shadowed), saturated_rate(base)),
        "cpu_ms_per_shadowed_event": (round(cpu[1] - cpu[0], 3) if None not in cpu else None),
    }


async def policies_phase(
    bench: SystemBench, config: BenchConfig, tokenizer: Tokenizer
) -> dict[str, Any]:
    """The worker on N distinct policies with Zipf popularity, for each N of the config."""
    runs: dict[str, dict[str, Any]] = {}
    low, high = config.many_policy_words
    for count in config.policy_counts:
        where = config.workdir / f"policies-{count}"
        directory = write_many_policies(where, count, low, high, str(config.seed))
        started = time.perf_counter()
        workload = many_workload(config, tokenizer, directory, config.events, f"pol{count}")
        compiled_s = time.perf_counter() - started
        run = await bench.measure(
            "worker",
            config.events,
            name=f"policies-{count}",
            settings={"policies": {"dir": str(directory)}},
            workload=workload,
        )
        run.pop("cache", None)  # a row per policy, thousands of them: "prefill" sums them
        run["compile_s"] = round(compiled_s, 2)
        run["policy_tokens_mean"] = round(
            sum(len(e.prompt.prefix) for e in workload.catalog.entries.values()) / count, 1
        )
        runs[str(count)] = run
    first = runs[str(config.policy_counts[0])]
    return {
        "runs": runs,
        "over_fewest": {n: ratio(_valid_rate(run), _valid_rate(first)) for n, run in runs.items()},
    }
