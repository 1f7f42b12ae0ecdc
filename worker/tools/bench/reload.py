"""Loading and reloading a large policy pack: time, memory, and whether the stream stalls.

The pack of the policies phase's largest size is compiled here as the worker compiles it
(time and the memory the compiled catalog holds). Then the worker runs on it with file
watching on, under open-loop load; a few seconds in, one policy file is edited, which makes
the worker recompile the whole pack. The longest gap between two verdicts (their own
timestamps) while the pack reloads says whether verdicts kept flowing; verdicts carrying
the edited policy's new version say when the reload took effect.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from pathlib import Path
from typing import Any

from ...catalog import compile_catalog
from ...config import RoutingSettings
from ...kafka import create_topics
from ...policies import load_policies
from ...prompts import Tokenizer
from .config import BenchConfig
from .kafkaio import ResultCollector, produce_open_loop, topic_names
from .many import many_workload, write_many_policies
from .phases import SystemBench
from .stats import open_loop_schedule
from .systems import Spec
from .workload import Event

RATE = 20.0  # items per second offered during the reload run
SECONDS = 20.0
EDIT_AT = 5.0  # seconds into the run


def compile_cost(directory: Path, tokenizer: Tokenizer, max_model_len: int) -> dict[str, float]:
    """Seconds to load and compile the pack, and the MiB the compiled catalog holds."""
    gc.collect()
    started = time.perf_counter()
    registry = load_policies(directory)
    loaded = time.perf_counter()
    catalog = compile_catalog(registry, tokenizer, max_model_len, RoutingSettings())
    compiled = time.perf_counter()
    gc.collect()
    tracemalloc.start()  # a second compile, traced: what the catalog keeps alive
    again = compile_catalog(registry, tokenizer, max_model_len, RoutingSettings())
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del again, catalog
    return {
        "policies": len(registry),
        "load_s": round(loaded - started, 2),
        "compile_s": round(compiled - loaded, 2),
        "catalog_mib": round(held / 2**20, 1),
    }


async def reload_phase(
    bench: SystemBench, config: BenchConfig, tokenizer: Tokenizer
) -> dict[str, Any]:
    count = max(config.policy_counts)
    low, high = config.many_policy_words
    source = write_many_policies(
        config.workdir / f"policies-{count}", count, low, high, str(config.seed)
    )
    cost = await asyncio.to_thread(compile_cost, source, tokenizer, config.max_model_len)
    # A copy the run may edit, so the policies phase's pack stays as written.
    directory = config.workdir / f"reload-{count}"
    write_many_policies(directory, count, low, high, str(config.seed))
    edited = directory / "p00000.md"
    original = await asyncio.to_thread(edited.read_text)
    try:
        new = original + "\nEdited during the run.\n"
        run = await _run_with_edit(bench, config, tokenizer, directory, (edited, new))
    finally:
        await asyncio.to_thread(edited.write_text, original)
    return {**cost, **run}


async def _run_with_edit(
    bench: SystemBench,
    config: BenchConfig,
    tokenizer: Tokenizer,
    directory: Path,
    edit: tuple[Path, str],
) -> dict[str, Any]:
    edited, new_text = edit
    offsets = open_loop_schedule(RATE, SECONDS)
    # Traffic on the ten most popular policies: the engine stays fast, so a gap in the
    # verdicts is the reload's doing, not cold prefixes'.
    workload = many_workload(config, tokenizer, directory, len(offsets), "reload", top=10)
    topics = topic_names("reload")
    await create_topics(bench.bootstrap, list(topics.values()), config.partitions)
    collector = await ResultCollector(
        bench.bootstrap, topics["results"], topics["dead_letter"]
    ).start()
    settings = {"policies": {"dir": str(directory), "watch": True}}
    spec = Spec(bench.bootstrap, topics, f"bench-{topics['content']}", 50, settings)
    system = await bench.launch("worker", spec)
    try:
        await system.start()
        sending = asyncio.create_task(
            produce_open_loop(bench.bootstrap, topics["content"], workload.events, offsets)
        )
        await asyncio.sleep(EDIT_AT)
        edit_at = time.time()
        await asyncio.to_thread(edited.write_text, new_text)
        await sending
        missing = await collector.wait_for([e.id for e in workload.events], config.wait_timeout_s)
    finally:
        await system.stop()
        await collector.stop()
    old = workload.catalog.entries[edited.stem].policy.version
    return _gaps(collector, workload.events, edited.stem, old, edit_at, missing)


def _gaps(
    collector: ResultCollector,
    events: list[Event],
    edited: str,
    old: str,
    edit_at: float,
    missing: int,
) -> dict[str, Any]:
    ids = [e.id for e in events]
    produced = sorted(collector.produced[i] for i in ids if i in collector.produced)
    changed = [
        collector.produced[e.id]
        for e in events
        if e.policies == [edited] and collector.versions.get(e.id) not in (None, old)
    ]
    after = [t for t in produced if t >= edit_at - 1.0]
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    return {
        "offered_per_s": RATE,
        "verdicts": len(produced),
        "missing": missing,
        "reload_visible_after_s": round(min(changed) - edit_at, 2) if changed else None,
        "longest_gap_s": round(max(gaps), 3) if gaps else None,
        "longest_gap_before_edit_s": _longest([t for t in produced if t < edit_at]),
    }


def _longest(times: list[float]) -> float | None:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return round(max(gaps), 3) if gaps else None
