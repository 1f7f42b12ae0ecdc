"""The benchmark from start to finish: phases one after another, then ratios and targets."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ...kafka import create_topics
from ...prompts import Tokenizer
from ..broker import EmbeddedBroker
from .config import BenchConfig
from .hashed import hash_phase
from .image_phase import images_phase
from .kafkaio import ResultCollector, produce_backlog, produce_open_loop, topic_names
from .launch import ChildSystem
from .phases import cache_phase, diy_phase, policies_phase, shadow_phase
from .reload import reload_phase
from .served import SharedServer
from .stats import (
    cache_summary,
    latency_summary,
    open_loop_schedule,
    prefill_summary,
    steady_rate,
)
from .summary import machine, ratios, targets
from .systems import Spec, System
from .workload import (
    Workload,
    expected_labels,
    is_test_model,
    load_workload,
    tokenizer_cost,
    write_policies,
)

Launcher = Callable[[str, Spec], Awaitable[System]]

# Systems that measure the pipeline around no real model: their labels are not the model's,
# so they are not checked (their rates are overheads, never classification speed).
UNCLASSIFIED = ("worker-instant", "raw-loop")
# The raw loop is some twenty times faster than the instant-engine worker: with the same
# backlog it finishes in a fraction of a second and its fitted rate swings several-fold.
# A larger backlog gives it a steady window of comparable length.
RAW_LOOP_SCALE = 10


def child_launcher(config: BenchConfig) -> Launcher:
    async def launch(kind: str, spec: Spec) -> System:
        return ChildSystem(kind, config, spec)

    return launch


async def run_bench(
    config: BenchConfig,
    tokenizer: Tokenizer,
    *,
    bootstrap: str | None = None,
    launcher: Launcher | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run the configured phases; ``launcher`` starts systems (default: one subprocess each)."""
    write_policies(config, tokenizer)
    launch = launcher or child_launcher(config)
    broker = None if bootstrap else EmbeddedBroker().start()
    servers = bootstrap or broker.bootstrap_servers  # type: ignore[union-attr]
    phases: dict[str, Any] = {}
    bench = SystemBench(config, tokenizer, servers, launch, progress)
    runs = _phase_runs(bench, config, tokenizer, phases, progress)
    try:
        for phase, name, run in runs:
            if phase in config.phases:
                phases[name] = await _guarded(name, run, progress)
    finally:
        bench.server.stop()
        if broker is not None:
            broker.stop()
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
        "config": _jsonable(config),
        "workload": _describe_workload(config, tokenizer),
        "phases": phases,
        "ratios": ratios(phases),
        "targets": targets(phases),
    }


def _phase_runs(
    bench: SystemBench,
    config: BenchConfig,
    tokenizer: Tokenizer,
    phases: dict[str, Any],
    progress: Callable[[str], None],
) -> list[tuple[str, str, Callable[[], Awaitable[dict[str, Any]]]]]:
    """(phase, result name, measurement) in the order they run; the shadow phase reads
    earlier phases' results."""
    return [
        ("engine", "engine_limit", lambda: _engine_limit(config, progress)),
        ("worker", "worker", lambda: bench.measure("worker", config.events, with_levels=True)),
        (
            "remote",
            "worker-remote",
            lambda: bench.measure("worker-remote", config.events, with_levels=True, served=True),
        ),
        ("diy", "diy", lambda: diy_phase(bench, config)),
        ("naive", "naive", lambda: bench.measure("naive", config.events, with_levels=True)),
        (
            "overhead",
            "worker-instant",
            lambda: bench.measure("worker-instant", config.overhead_events),
        ),
        (
            "overhead",
            "raw-loop",
            lambda: bench.measure("raw-loop", config.overhead_events * RAW_LOOP_SCALE),
        ),
        ("overhead", "tokenizer", lambda: _tokenizer(config, tokenizer)),
        ("cache", "cache", lambda: cache_phase(bench, config, tokenizer)),
        ("shadow", "shadow", lambda: shadow_phase(bench, config, phases)),
        ("policies", "policies", lambda: policies_phase(bench, config, tokenizer)),
        ("reload", "reload", lambda: reload_phase(bench, config, tokenizer)),
        ("hash", "hash", lambda: hash_phase(bench, config, tokenizer)),
        ("cold", "cold", lambda: ChildSystem("cold-batch", config, None).run_to_end()),
        ("images", "images", lambda: images_phase(bench, config, tokenizer)),
    ]


async def _guarded(
    name: str, run: Callable[[], Awaitable[dict[str, Any]]], progress: Callable[[str], None]
) -> dict[str, Any]:
    """A phase's result, or its error: one failed phase leaves the others' figures."""
    try:
        return await run()
    except Exception as exc:  # the run goes on; the report and JSON show the error
        progress(f"{name} failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


async def _engine_limit(config: BenchConfig, progress: Callable[[str], None]) -> dict[str, Any]:
    progress("engine limit: offline LLM.generate, one batch")
    load = os.getloadavg()[0]
    result = await ChildSystem("engine-limit", config, None).run_to_end()
    result["load_average"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return result


async def _tokenizer(config: BenchConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    return tokenizer_cost(config, tokenizer, min(config.overhead_events, 2000))


class SystemBench:
    """Drives one system: a backlog for its saturated rate, then open-loop load levels."""

    def __init__(
        self,
        config: BenchConfig,
        tokenizer: Tokenizer,
        bootstrap: str,
        launch: Launcher,
        progress: Callable[[str], None],
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.bootstrap = bootstrap
        self.launch = launch
        self.progress = progress
        self.server = SharedServer(config)

    async def measure(
        self,
        kind: str,
        count: int,
        with_levels: bool = False,
        *,
        name: str | None = None,
        duplicate_share: float = 0.0,
        settings: dict[str, Any] | None = None,
        served: bool = False,
        in_flight: int = 0,
        workload: Workload | None = None,
    ) -> dict[str, Any]:
        """``name`` tells runs of one system apart; ``settings`` change its worker sections;
        ``served`` systems use the run's shared OpenAI server (its CPU is reported too)."""
        config = self.config
        load = os.getloadavg()[0]
        name = name or kind
        workload = workload or load_workload(
            config, self.tokenizer, count, f"{name}-sat", duplicate_share=duplicate_share
        )
        topics, collector = await self._queue(name, workload)
        group = f"bench-{topics['content']}"
        url = await self.server.url() if served else None
        spec = Spec(
            self.bootstrap, topics, group, config.fetch_max_wait_ms, settings or {}, url, in_flight
        )
        system = await self.launch(kind, spec)
        levels: list[dict[str, Any]] = []
        server_cpu = None
        try:
            await system.start()
            server_cpu = self.server.cpu() if served else None
            self.progress(f"{name}: consuming; measuring the saturated rate")
            skip = config.warmup_events if with_levels else count // 10
            saturation = await self._saturation(collector, workload, skip)
            if with_levels:
                levels = await self._levels(collector, topics, kind, saturation["items_per_s"])
        finally:
            if server_cpu is not None:
                server_cpu = self.server.cpu() - server_cpu
            own = await system.stop()
            await collector.stop()
        result = self._result(own, collector, workload, saturation, levels, load, with_levels)
        if server_cpu is not None:
            handled = saturation["items"] + sum(level.get("sent", 0) for level in levels)
            result.update(server_cpu.per_item(handled))
        if is_test_model(config.model) and kind not in UNCLASSIFIED:
            result["labels"] = self._labels(collector, workload)
        return result

    async def _queue(self, name: str, workload: Workload) -> tuple[dict[str, str], ResultCollector]:
        """The run's topics, its backlog produced, and a collector reading its outcomes."""
        topics = topic_names(name)
        await create_topics(self.bootstrap, list(topics.values()), self.config.partitions)
        self.progress(f"{name}: {len(workload.events)} events queued, starting the system")
        await produce_backlog(self.bootstrap, topics["content"], workload.events)
        collector = ResultCollector(self.bootstrap, topics["results"], topics["dead_letter"])
        return topics, await collector.start()

    def _labels(self, collector: ResultCollector, workload: Workload) -> dict[str, int]:
        """Verdicts checked against the test model's known labels: a wrong system's speed
        does not count (see summary.ratios)."""
        expected = expected_labels(workload, self.tokenizer)
        got = {i: collector.labels.get(i) for i in expected if i in collector.arrivals}
        wrong = sum(1 for i, label in got.items() if label != expected[i])
        positive = sum(1 for i in got if expected[i] == 1)
        return {"checked": len(got), "wrong": wrong, "expected_1": positive}

    def _result(
        self,
        own: dict[str, Any],
        collector: ResultCollector,
        workload: Workload,
        saturation: dict[str, Any],
        levels: list[dict[str, Any]],
        load: float,
        with_levels: bool,
    ) -> dict[str, Any]:
        """One system's figures; ``own`` is what the system measured about itself."""
        result: dict[str, Any] = {
            "saturation": saturation,
            "duplicates": collector.duplicates,
            # Other work on the machine skews every figure; this says how busy it was.
            "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
        }
        if with_levels:
            result["levels"] = levels
        usage = [
            (u["policy"], u["prompt_tokens"], u["cached_tokens"])
            for u in own.get("usage", [])
            if u["done_at"] >= saturation["steady_from"]
        ]
        if usage:
            result["cache"] = cache_summary(usage, workload.prefix_tokens())
        # Prompts in the order they finished, the warm-up's left out: the engine's clock
        # and the broker's do not compare when a whole backlog finishes in one burst.
        done = sorted(own.get("usage", []), key=lambda u: u["done_at"])
        steady = [
            (u["policy"], u["prompt_tokens"], u["cached_tokens"])
            for u in done[saturation["warmup_items"] :]
        ]
        if steady:
            result["prefill"] = prefill_summary(steady)
        if "usage" in own:  # every engine request of the run, warm-up included
            result["engine_prompts"] = len(own["usage"])
        if "exit_code" in own:
            result["exit_code"] = own["exit_code"]
        if "cpu_s" in own:
            handled = saturation["items"] + sum(level["sent"] for level in levels)
            result["cpu_ms_per_item"] = round(own["cpu_s"] * 1000 / handled, 3)
            if "cpu_own_s" in own:  # the system's own process, without its engine processes
                result["process_cpu_ms_per_item"] = round(own["cpu_own_s"] * 1000 / handled, 3)
        return result

    async def _levels(
        self, collector: ResultCollector, topics: dict[str, str], kind: str, most: float
    ) -> list[dict[str, Any]]:
        offered = [(f, f * most) for f in self.config.levels]
        offered += [(None, rate) for rate in self.config.level_rates]
        levels = []
        for index, (fraction, rate) in enumerate(offered):
            if fraction is None and rate > most:
                # Its queue would only grow: minutes of backlog and no latency figure.
                levels.append(_skipped(rate, most))
                continue
            self.progress(f"{kind}: open loop at {rate:.1f}/s")
            levels.append(await self._level(collector, topics, kind, index, fraction, rate))
        return levels

    async def _saturation(
        self, collector: ResultCollector, workload: Workload, skip: int
    ) -> dict[str, Any]:
        ids = [e.id for e in workload.events]
        missing = await collector.wait_for(ids, self.config.wait_timeout_s)
        produced = sorted(collector.produced[i] for i in ids if i in collector.arrivals)
        return {
            "items": len(ids),
            "verdicts": len(produced),
            "dead_letters": sum(1 for i in ids if i in collector.dead),
            "dead_letter_reasons": _reasons(collector, ids),
            "missing": missing,
            "warmup_items": skip,
            "items_per_s": steady_rate(produced, skip),
            "steady_from": produced[min(skip, len(produced) - 1)],
        }

    async def _level(
        self,
        collector: ResultCollector,
        topics: dict[str, str],
        kind: str,
        index: int,
        fraction: float | None,
        rate: float,
    ) -> dict[str, Any]:
        config = self.config
        offsets = open_loop_schedule(rate, config.level_warmup_seconds + config.level_seconds)
        workload = load_workload(
            config, self.tokenizer, len(offsets), f"{kind}-l{index}", stream=index + 1
        )
        due = await produce_open_loop(self.bootstrap, topics["content"], workload.events, offsets)
        ids = [e.id for e in workload.events]
        missing = await collector.wait_for(ids, config.wait_timeout_s)
        start = min(due.values())
        measured = [i for i in ids if due[i] - start >= config.level_warmup_seconds]
        done = [i for i in measured if i in collector.arrivals]
        latencies = [collector.arrivals[i] - due[i] for i in done]
        span = max((collector.arrivals[i] for i in done), default=0) - min(due[i] for i in measured)
        return {
            "offered_fraction": fraction,
            "offered_per_s": round(rate, 2),
            "sent": len(ids),
            "measured": len(measured),
            "verdicts": sum(1 for i in ids if i in collector.arrivals),
            "dead_letters": sum(1 for i in ids if i in collector.dead),
            "missing": missing,
            "achieved_per_s": round(len(done) / span, 2) if span > 0 else None,
            "latency_ms": latency_summary(latencies),
        }


def _reasons(collector: ResultCollector, ids: list[str], most: int = 5) -> dict[str, int]:
    """The commonest dead-letter reasons of a run and how many items each ended."""
    counts = Counter(collector.reasons[i][:160] for i in ids if i in collector.reasons)
    return dict(counts.most_common(most))


def _skipped(rate: float, most: float) -> dict[str, Any]:
    return {
        "offered_fraction": None,
        "offered_per_s": rate,
        "skipped": f"above this system's saturated rate ({most:.1f}/s)",
        "sent": 0,
        "latency_ms": {},
    }


def _describe_workload(config: BenchConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    workload = load_workload(config, tokenizer, min(config.events, 500), "info")
    lengths = [len(tokenizer.encode(c, add_special_tokens=False)) for c in workload.contents]
    return {
        "policies": {
            pid: {
                "policy_tokens": len(tokenizer.encode(e.policy.text, add_special_tokens=False)),
                "prefix_tokens": len(e.prompt.prefix),
                "suffix_tokens": len(e.prompt.suffix),
                "shadow_of": e.policy.shadow_of,
            }
            for pid, e in sorted(workload.catalog.entries.items())
        },
        "content_tokens": {
            "min": min(lengths),
            "mean": round(sum(lengths) / len(lengths), 1),
            "max": max(lengths),
        },
        "policies_per_event": config.policies_per_event,
    }


def _jsonable(config: BenchConfig) -> dict[str, Any]:
    import orjson

    return orjson.loads(config.to_json())
