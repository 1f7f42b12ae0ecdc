"""``python -m worker.tools.bench.child KIND CONFIG SPEC STATS READY``: one phase, own process.

``engine-limit``, ``image-engine-limit`` and ``cold-batch`` measure and write their result
to STATS. The systems start, touch READY once they consume, run until SIGTERM, then write
what they measured to STATS.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

import orjson

from ...config import LogSettings
from ...observability.telemetry import configure_logging
from .config import BenchConfig
from .launch import build_system, child_files
from .systems import Spec


def _engine_limit(config: BenchConfig) -> dict:
    from .engine_limit import run_engine_limit

    return run_engine_limit(config)


def _cold_batches(config: BenchConfig) -> dict:
    from .cold import run_cold_batches

    return asyncio.run(run_cold_batches(config))


def _image_engine_limit(config: BenchConfig) -> dict:
    from .image_limit import run_image_engine_limit

    return asyncio.run(run_image_engine_limit(config))


# Kinds that measure themselves and exit: what each runs.
ONE_SHOT: dict[str, Callable[[BenchConfig], dict]] = {
    "engine-limit": _engine_limit,
    "cold-batch": _cold_batches,
    "image-engine-limit": _image_engine_limit,
}


def main(argv: list[str]) -> int:
    kind, files = argv[0], child_files(argv[1:])
    config = BenchConfig.from_json(files["config.json"].read_bytes())
    configure_logging(LogSettings(level="WARNING"))
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    if kind in ONE_SHOT:
        # Exit through Python on SIGTERM, so that vLLM shuts its engine processes down
        # instead of leaving them behind.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        files["stats.json"].write_bytes(orjson.dumps(ONE_SHOT[kind](config)))
        return 0
    spec = Spec(**orjson.loads(files["spec.json"].read_bytes()))
    stats = asyncio.run(_serve(kind, config, spec, files["ready"]))
    files["stats.json"].write_bytes(orjson.dumps(stats))
    return 0


async def _serve(kind: str, config: BenchConfig, spec: Spec, ready) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    system = await build_system(kind, config, spec)
    await system.start()
    ready.touch()
    started = tree_cpu_seconds()
    await stop.wait()
    used = tree_cpu_seconds()
    stats = await system.stop()
    if started is not None and used is not None:
        stats["cpu_s"] = used[0] - started[0]
        stats["cpu_own_s"] = used[1] - started[1]
    return stats


def tree_cpu_seconds() -> tuple[float, float] | None:
    """CPU time of this process and its children (engine processes, a server): the cost of
    a system, whatever else the machine is doing at the time; and of this process alone."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    total = own = 0.0
    for process in (me, *me.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
        if process is me:
            own = times.user + times.system
    return total, own


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
