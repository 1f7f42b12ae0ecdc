"""What one image costs the worker's CPU before the engine: decode alone, and fetch + decode.

    PYTHONPATH=. .venv/bin/python scripts/media_cost.py [--size 1024] [--runs 40]

A photo-like JPEG (gradients and noise, quality 85) is decoded with the worker's own
decoder, then fetched from a local HTTP server on 127.0.0.1 and decoded through the media
step, as the worker does it. Medians of wall time and of process CPU time are printed; the
server runs in the same process, so its CPU is counted too (an over-estimate).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def photo(size: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack([(x / 4) % 256, (y / 4) % 256, ((x + y) / 8) % 256], -1)
    pixels = np.clip(pixels + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


async def timed(step: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    for _ in range(3):
        await step()
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        await step()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


async def main(size: int, runs: int) -> None:
    from tests.media_server import MediaServer
    from worker.config import MediaSettings
    from worker.media.decode import decode
    from worker.media.refs import MediaRef
    from worker.media.step import MediaStep

    data = photo(size)
    settings = MediaSettings(
        allowed_schemes=["http"], allowed_hosts=["127.0.0.1"], allow_loopback=True
    )

    async def decode_only() -> object:
        return decode("image", data, settings)

    server = await MediaServer().start()
    step = MediaStep(settings)
    refs = [MediaRef(type="image", url=server.add("p.jpg", data, "image/jpeg"))]

    async def fetch_and_decode() -> object:
        items = await step.prepare(refs)
        step.release(items)
        return items

    try:
        print(f"{size}x{size} JPEG, {len(data)} bytes, {runs} runs (medians)")
        for name, call in (("decode", decode_only), ("fetch + decode", fetch_and_decode)):
            wall, cpu = await timed(call, runs)
            print(f"  {name:15s} wall {wall:6.1f} ms   cpu {cpu:6.1f} ms")
    finally:
        step.close()
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.size, args.runs))
