"""Loading and reloading a large policy pack: time, memory, and whether the stream stalls.

The pack of the policies phase's largest size is first measured in a process of its own
(``pack_cost``: seconds and resident memory to load it, and to reload it after ten files
were edited, one added and one removed). Then the worker runs on it with file watching on,
under open-loop load on the ten most popular policies, and the pack changes twice: a few
seconds in, one policy file is edited (a reload that compiles one policy); once that edit
shows in verdicts, every file is edited (a reload that compiles the whole pack again). The
longest gap between two verdicts (their own timestamps) in each reload's window says
whether verdicts kept flowing; the first verdict carrying the edited policy's new version
says when each reload took effect. Load stops a few seconds after the second one did. The
pack is put back as it was once the worker stopped.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from ...kafka import create_topics
from ...policies import parse_policy
from ...prompts import Tokenizer
from .config import BenchConfig
from .kafkaio import ResultCollector, produce_open_loop, topic_names
from .many import many_workload, write_many_policies
from .phases import SystemBench
from .stats import open_loop_schedule
from .systems import Spec

RATE = 20.0  # items per second offered during the reload run
EDIT_AT = 5.0  # seconds into the run, the first edit
SETTLE_S = 3.0  # load kept on after an edit showed, before the next step
LONGEST_S = 300.0  # the most the run offers load for
EDITED = "p00000"  # the most popular policy: its verdicts show an edit soonest


async def reload_phase(
    bench: SystemBench, config: BenchConfig, tokenizer: Tokenizer
) -> dict[str, Any]:
    count = max(config.policy_counts)
    low, high = config.many_policy_words
    directory = config.workdir / f"reload-{count}"
    await asyncio.to_thread(write_many_policies, directory, count, low, high, str(config.seed))
    cost = await pack_cost(config, directory)
    run = await _run_with_edits(bench, config, tokenizer, directory)
    return {**cost, **run}


async def pack_cost(config: BenchConfig, directory: Path) -> dict[str, Any]:
    """``pack_cost``'s figures for the pack, from a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker.tools.bench.pack_cost", "--model", config.model,
        "--dir", str(directory), "--max-model-len", str(config.max_model_len),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        tail = " ".join(err.decode(errors="replace").split()[-60:])
        raise RuntimeError(f"pack_cost exited {process.returncode}: {tail}")
    return orjson.loads(out.splitlines()[-1])


async def _run_with_edits(
    bench: SystemBench, config: BenchConfig, tokenizer: Tokenizer, directory: Path
) -> dict[str, Any]:
    offsets = open_loop_schedule(RATE, LONGEST_S)
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
    stop = asyncio.Event()
    # The pack is put back after the worker stopped: putting 10,000 files back is a reload
    # of its own, and the writes held this process's event loop, pausing the load it offers.
    with _restored(directory):
        try:
            await system.start()
            started = time.time()
            sending = asyncio.create_task(
                produce_open_loop(
                    bench.bootstrap, topics["content"], workload.events, offsets, stop
                )
            )
            marks = await _edit_twice(directory, collector, config.wait_timeout_s)
            await asyncio.sleep(SETTLE_S)
            stop.set()
            due = await sending
            missing = await collector.wait_for(list(due), config.wait_timeout_s)
        finally:
            stop.set()
            await system.stop()
            await collector.stop()
    return {**_gaps(collector, list(due), marks), "missing": missing, "run_s": _since(started)}


async def _edit_twice(
    directory: Path, collector: ResultCollector, timeout_s: float
) -> dict[str, float | None]:
    """Edit one file, wait for it in verdicts; then every file, and wait again. Times."""
    edited = directory / f"{EDITED}.md"
    await asyncio.sleep(EDIT_AT)
    one_at = time.time()
    version = await asyncio.to_thread(_append, [edited], "Edited during the run.")
    one_seen = await _first_verdict_with(collector, version, timeout_s)
    await asyncio.sleep(SETTLE_S)
    all_at = time.time()
    version = await asyncio.to_thread(_append_all, directory, edited, "Edited again, all files.")
    all_seen = await _first_verdict_with(collector, version, timeout_s)
    return {"one_at": one_at, "one_seen": one_seen, "all_at": all_at, "all_seen": all_seen}


def _append_all(directory: Path, last: Path, line: str) -> str:
    """Append ``line`` to every file, ``last`` last: its new version shows the last batch."""
    return _append([p for p in sorted(directory.glob("*.md")) if p != last] + [last], line)


def _append(paths: list[Path], line: str) -> str:
    """Append ``line`` to each file; the new version of the last one."""
    for path in paths:
        text = path.read_text(encoding="utf-8") + f"\n{line}\n"
        path.write_text(text, encoding="utf-8")
    return parse_policy(text, paths[-1]).version


async def _first_verdict_with(
    collector: ResultCollector, version: str, timeout_s: float
) -> float | None:
    """When the first verdict carrying ``version`` was produced; None if none came."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        times = [
            collector.produced[item]
            for item, seen in list(collector.versions.items())
            if seen == version and item in collector.produced
        ]
        if times:
            return min(times)
        await asyncio.sleep(0.2)
    return None


@contextmanager
def _restored(directory: Path) -> Iterator[None]:
    """The pack's files put back as they were, whatever happens meanwhile."""
    originals = {path: path.read_bytes() for path in directory.glob("*.md")}
    try:
        yield
    finally:
        for path, text in originals.items():
            path.write_bytes(text)


def _gaps(collector: ResultCollector, ids: list[str], marks: dict[str, Any]) -> dict[str, Any]:
    produced = sorted(collector.produced[i] for i in ids if i in collector.produced)
    one_at, all_at = marks["one_at"], marks["all_at"]
    one_file = _longest([t for t in produced if one_at - 1.0 <= t < all_at])
    all_files = _longest([t for t in produced if t >= all_at - 1.0])
    return {
        "offered_per_s": RATE,
        "verdicts": len(produced),
        "sent": len(ids),
        "reload_visible_after_s": _after(marks["one_seen"], one_at),
        "full_reload_visible_after_s": _after(marks["all_seen"], all_at),
        "longest_gap_before_edit_s": _longest([t for t in produced if t < one_at]),
        "longest_gap_one_file_s": one_file,
        "longest_gap_all_files_s": all_files,
        "longest_gap_s": max((g for g in (one_file, all_files) if g is not None), default=None),
    }


def _after(seen: float | None, at: float) -> float | None:
    return round(seen - at, 2) if seen is not None else None


def _since(started: float) -> float:
    return round(time.time() - started, 1)


def _longest(times: list[float]) -> float | None:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return round(max(gaps), 3) if gaps else None
