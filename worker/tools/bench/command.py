"""The ``bench`` command's work: options to a BenchConfig, run, print, write JSON."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from rich.console import Console

from .config import CPU_ENGINE_ARGS, DEFAULT_PHASES, BenchConfig
from .report import print_report, write_json

T = TypeVar("T")


def parse_engine_args(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value that parses as JSON is taken as JSON, else as text."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"engine argument {pair!r} is not KEY=VALUE")
        try:
            args[key.replace("-", "_")] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            args[key.replace("-", "_")] = raw
    return args


def parse_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    return (int(low), int(high)) if sep else (int(low), int(low))


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_levels(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``0.5`` is half the measured maximum; ``210/s`` is a fixed 210 items per second."""
    parts = parse_list(text)
    rates = tuple(float(p.removesuffix("/s")) for p in parts if p.endswith("/s"))
    return tuple(float(p) for p in parts if not p.endswith("/s")), rates


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def default_model(images: bool, console: Console) -> str:
    """The test model, built on first use: the seeing one when images are measured (its
    text path is the trigger-word model's, so every phase's labels are still known)."""
    if images:
        from ...testing.seeing import DEFAULT_DIR, build_seeing_model

        console.print(f"no --model: using the tiny seeing test model built in {DEFAULT_DIR}")
        return str(build_seeing_model(DEFAULT_DIR))
    from ...testing.devmodel import DEFAULT_DIR as TEXT_DIR
    from ...testing.devmodel import build_test_model

    console.print(f"no --model: using the tiny test model built in {TEXT_DIR}")
    return str(build_test_model(TEXT_DIR))


def build_config(options: dict[str, Any], console: Console) -> BenchConfig:
    model = options.pop("model") or default_model("images" in options["phases"], console)
    engine_args = parse_engine_args(options.pop("engine_arg") or [])
    if on_cpu():
        engine_args = {**CPU_ENGINE_ARGS, **engine_args}
        # The CPU engine sizes its KV cache from this (GiB): room for every policy prefix.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    batch = {
        key: value
        for key in ("max_items", "linger_ms", "max_in_flight")
        if (value := options.pop(key)) is not None
    }
    phases = tuple(parse_list(options.pop("phases")))
    diy_in_flight = tuple(int(n) for n in parse_list(options.pop("diy_in_flight")))
    policy_counts = tuple(int(n) for n in parse_list(options.pop("policy_counts")))
    levels, rates = parse_levels(options.pop("levels"))
    return BenchConfig(
        model=model,
        engine_args=engine_args,
        batch=batch,
        content_tokens=parse_range(options.pop("content_tokens")),
        levels=levels,
        level_rates=rates,
        phases=phases or DEFAULT_PHASES,
        diy_in_flight=diy_in_flight,
        policy_counts=policy_counts,
        many_policy_words=parse_range(options.pop("many_policy_words")),
        **options,
    )


def run_command(options: dict[str, Any]) -> int:
    from transformers import AutoTokenizer

    from .runner import run_bench

    # Wide enough for the tables when the output goes to a file or a CI log.
    console = Console(width=None if sys.stdout.isatty() else 132)
    bootstrap = options.pop("bootstrap")
    out: Path | None = options.pop("out")
    config = build_config(options, console)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    bench = run_bench(
        config,
        tokenizer,
        bootstrap=bootstrap,
        progress=lambda line: console.print(f"[dim]{line}[/dim]"),
    )
    try:
        result = asyncio.run(_stoppable(bench))
    except (asyncio.CancelledError, KeyboardInterrupt) as stopped:
        console.print("[red]bench stopped: its phases and broker are stopped, no results[/red]")
        by = signal.SIGINT if isinstance(stopped, KeyboardInterrupt) else signal.SIGTERM
        return 128 + by
    result["command"] = " ".join(["moderation-worker", *sys.argv[1:]])
    print_report(result, console)
    if out is not None:
        write_json(result, out)
        console.print(f"wrote {out}")
        if "runs" in result["phases"].get("policies", {}):
            from .chart import policies_svg

            chart = out.with_suffix(".policies.svg")
            chart.write_text(policies_svg(result["phases"]["policies"]["runs"]), encoding="utf-8")
            console.print(f"wrote {chart}")
    return 0


async def _stoppable(work: Awaitable[T]) -> T:
    """Run ``work``; SIGTERM cancels it as Ctrl-C would, so every phase stops its processes."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
