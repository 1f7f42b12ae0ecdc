"""The benchmark's verdict on its phases: ratios, targets, and the machine it ran on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from typing import Any

from .stats import ratio, saturated_rate

TARGETS = {
    "worker_over_engine": 0.9,
    "worker_over_naive": 3.0,
    "remote_over_worker": 0.9,
    # On a GPU server; a CPU server saturates on compute long before batching pays off.
    "remote_over_naive": 10.0,
    # Against the DIY peer at its best in-flight bound, on the same server (CPU figure).
    "worker_over_diy": 2.5,
    "instant_worker_over_raw_loop": 0.7,
    "min_policy_prefix_cached": 0.9,
    "cache_duplicates_over_unique": 1.3,
    # Zipf traffic over 1,000 distinct policies against one policy, same engine.
    "policies_1000_over_1": 0.7,
    # Images/s through the worker against the engine's limit on the same image prompts.
    "images_worker_over_engine": 0.9,
}
# Costs, at most: CPU ms to fetch (over HTTP) and decode one 1024x1024 photo-like JPEG.
TARGETS_AT_MOST = {"image_fetch_decode_cpu_ms": 10.0}


def ratios(phases: dict[str, Any]) -> dict[str, float | None]:
    def rate(name: str) -> float | None:
        phase = phases.get(name)
        if not phase or "error" in phase or phase.get("labels", {}).get("wrong"):
            return None  # a failed run, or one with wrong labels, has no rate to compare
        return saturated_rate(phase)

    return {
        "worker_over_engine": ratio(rate("worker"), rate("engine_limit")),
        "worker_over_naive": ratio(rate("worker"), rate("naive")),
        "remote_over_worker": ratio(rate("worker-remote"), rate("worker")),
        "remote_over_naive": ratio(rate("worker-remote"), rate("naive")),
        "worker_over_diy": ratio(rate("worker"), rate("diy")),
        "remote_over_diy": ratio(rate("worker-remote"), rate("diy")),
        "instant_worker_over_raw_loop": ratio(rate("worker-instant"), rate("raw-loop")),
    }


def targets(phases: dict[str, Any]) -> dict[str, dict[str, Any]]:
    measured: dict[str, float | None] = dict(ratios(phases))
    measured["cache_duplicates_over_unique"] = phases.get("cache", {}).get("duplicates_over_unique")
    many = phases.get("policies", {})
    fewest = next(iter(many.get("runs", {})), None)
    measured["policies_1000_over_1"] = many["over_fewest"].get("1000") if fewest == "1" else None
    cache = phases.get("worker", {}).get("cache")  # absent when the phase failed
    measured["min_policy_prefix_cached"] = (
        min(p["cached_share_of_policy"] for p in cache.values()) if cache else None
    )
    images = phases.get("images", {})
    measured["images_worker_over_engine"] = images.get("worker_over_engine")
    cost = images.get("fetch_decode", {}).get("fetch_decode_cpu_ms")
    rows = {name: _row(goal, measured[name], at_most=False) for name, goal in TARGETS.items()}
    # The cost target is for 1024-pixel images; at another size there is nothing to compare.
    size_ok = images.get("image_size") == 1024
    for name, goal in TARGETS_AT_MOST.items():
        rows[name] = _row(goal, cost if size_ok else None, at_most=True)
    return rows


def _row(goal: float, measured: float | None, *, at_most: bool) -> dict[str, Any]:
    met = None if measured is None else (measured <= goal if at_most else measured >= goal)
    row: dict[str, Any] = {"target": goal, "measured": measured, "met": met}
    if at_most:
        row["at_most"] = True
    return row


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpu": _gpus(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]
