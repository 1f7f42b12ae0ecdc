"""The images phase: images/s through the worker against the engine's limit on the same
prompts, and the CPU one image costs the worker before the engine (fetch + decode).

The images are files served over real HTTP by a static file server in a process of its own
(``python -m http.server`` on 127.0.0.1), so its CPU is never counted as the worker's. The
worker fetches them through its guarded fetcher with loopback allowed, as tests do. The
cost figure is the bench process's own CPU time (every thread: the event loop that fetches
and the pool that decodes) over sequential fetches and decodes of a photo-like JPEG, by the
worker's own media step; decode alone is measured beside it.
"""

from __future__ import annotations

import dataclasses
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from ...config import MediaSettings
from ...media.decode import decode
from ...media.refs import MediaRef
from ...media.step import MediaStep
from ...prompts import Tokenizer
from ...subprocesses import bound_to_parent
from ..broker import free_port
from .config import BenchConfig
from .images import (
    accepts_images,
    image_colours,
    image_workload,
    images_dir,
    photo_jpeg,
    write_images,
)
from .launch import ChildSystem
from .stats import ratio, saturated_rate

PHOTO = "photo.jpg"
WARM_UP_RUNS = 3


class SystemBench(Protocol):
    async def measure(self, kind: str, count: int, **options: Any) -> dict[str, Any]: ...


def media_settings(size: int) -> dict[str, Any]:
    """The worker's media section for the run: the local file server, nothing else."""
    return {
        "allowed_schemes": ["http"],
        "allowed_hosts": ["127.0.0.1"],
        "allow_loopback": True,
        "max_pixels": max(size * size, MediaSettings().max_pixels),
    }


def image_config(config: BenchConfig) -> BenchConfig:
    """The run's config with one image allowed per prompt, unless its engine args say."""
    args = {"limit_mm_per_prompt": {"image": 1}, **config.engine_args}
    return dataclasses.replace(config, engine_args=args)


async def images_phase(
    bench: SystemBench, config: BenchConfig, tokenizer: Tokenizer
) -> dict[str, Any]:
    if not accepts_images(config.model):
        raise ValueError(f"model {config.model} has no vision tower: the images phase needs one")
    config = image_config(config)
    folder = images_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    with FileServer(folder, config.workdir / "logs" / "image-server.log") as server:
        workload = image_workload(config, tokenizer, server.url)
        write_images(config, image_colours(workload))
        (folder / PHOTO).write_bytes(photo_jpeg(config.image_size))
        limit = await ChildSystem("image-engine-limit", config, None).run_to_end()
        settings = {
            "media": media_settings(config.image_size),
            "engine": {"extra_args": config.engine_settings().extra_args},
        }
        worker = await bench.measure(
            "worker", config.image_events, name="images", settings=settings, workload=workload
        )
        photo = (folder / PHOTO).read_bytes()
        cost = await fetch_decode_cost(config, f"{server.url}/{PHOTO}", photo)
    return {
        "image_size": config.image_size,
        "engine_limit": limit,
        "worker": worker,
        "worker_over_engine": _ratio(worker, limit),
        "fetch_decode": cost,
    }


def _ratio(worker: dict[str, Any], limit: dict[str, Any]) -> float | None:
    """Images/s of the worker over the engine's; none when either got a label wrong."""
    if any(run.get("labels", {}).get("wrong") for run in (worker, limit)):
        return None
    return ratio(saturated_rate(worker), saturated_rate(limit))


async def fetch_decode_cost(config: BenchConfig, url: str, data: bytes) -> dict[str, Any]:
    """CPU and wall time per image (``data``, served at ``url``): decode alone, then fetch
    over HTTP + decode."""
    settings = MediaSettings(**media_settings(config.image_size))
    step = MediaStep(settings)
    refs = [MediaRef(type="image", url=url)]

    async def decode_only() -> None:
        decode("image", data, settings)

    async def fetch_and_decode() -> None:
        step.release(await step.prepare(refs))

    try:
        decoded = await _timed(decode_only, config.image_cost_runs)
        fetched = await _timed(fetch_and_decode, config.image_cost_runs)
    finally:
        step.close()
    return {
        "jpeg_bytes": len(data),
        "runs": config.image_cost_runs,
        "decode_cpu_ms": decoded[0],
        "decode_wall_ms": decoded[1],
        "fetch_decode_cpu_ms": fetched[0],
        "fetch_decode_wall_ms": fetched[1],
    }


async def _timed(step: Any, runs: int) -> tuple[float, float]:
    """(mean CPU ms of this process, median wall ms) per call, after a few warm-up calls."""
    for _ in range(WARM_UP_RUNS):
        await step()
    walls = []
    cpu = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        await step()
        walls.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    return round(cpu * 1000 / runs, 2), round(statistics.median(walls) * 1000, 2)


class FileServer:
    """``python -m http.server`` on 127.0.0.1, serving ``folder``; a context manager."""

    def __init__(self, folder: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "http.server", str(self.port)]
        command += ["--bind", "127.0.0.1", "--directory", str(folder)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                bound_to_parent(command), stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_listening()

    def _wait_listening(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the image file server exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("the image file server did not listen within 30 s")

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
