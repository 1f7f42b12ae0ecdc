"""Micro-batches: items gathered until ``batch.max_items`` or ``batch.linger_ms`` passes."""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

T = TypeVar("T")


async def next_batch(queue: asyncio.Queue[T], max_items: int, linger_s: float) -> list[T]:
    """Wait for one item, then take more until the batch is full or has lingered enough."""
    batch = [await queue.get()]
    deadline = time.monotonic() + linger_s
    while len(batch) < max_items:
        if not queue.empty():
            batch.append(queue.get_nowait())
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), remaining))
        except TimeoutError:
            break
    return batch
