"""A backlog of 100,000 small events: the worker holds a bounded number, not the backlog.

The events wait on the topic before the worker starts. It then works through them for a
while: what it holds in flight never passes ``batch.max_in_flight`` (partitions are paused
instead), and its memory grows by a few MiB, not by the backlog's size: aiokafka's fetch
buffer is bounded too (``kafka.fetch_max_bytes`` / ``kafka.max_partition_fetch_bytes``).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from .harness import RunningWorker, committed, create_topics, event, topic_names, worker_settings

pytestmark = pytest.mark.integration

BACKLOG = 100_000
MAX_IN_FLIGHT = 256
WORK_S = 20
# Holding the backlog would take hundreds of MiB (a decoded event, its job and its trace
# span are a few KiB each); the bound leaves room for allocator noise and warm caches.
MAX_RSS_GROWTH_MIB = 64


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _produce_backlog(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        futures = []
        for n in range(BACKLOG):
            text = f"backlog item {n}" + (" with a mango" if n % 7 == 0 else "")
            futures.append(await producer.send(topic, event(f"b-{n}", text, policies=["fruit"])))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_backlog_is_not_buffered(broker, engine, test_model):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("backlog")
    settings = worker_settings(
        bootstrap,
        test_model,
        topics,
        batch={"max_items": 32, "linger_ms": 5, "max_in_flight": MAX_IN_FLIGHT},
        kafka={"fetch_max_bytes": 1 << 20, "max_partition_fetch_bytes": 256 << 10},
    )
    await create_topics(bootstrap, list(topics.values()), 3)
    await _produce_backlog(bootstrap, topics["content"])

    before = _rss_mib()
    peak_rss, peak_in_flight, samples = before, 0, 0
    async with RunningWorker(settings, engine) as running:
        await running.wait_assigned(60)
        deadline = time.monotonic() + WORK_S
        while time.monotonic() < deadline:
            peak_in_flight = max(peak_in_flight, running.worker.in_flight())
            peak_rss = max(peak_rss, _rss_mib())
            samples += 1
            await asyncio.sleep(0.02)
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    done = sum(p or 0 for p in positions.values())
    growth = peak_rss - before
    print(
        f"backlog {BACKLOG}: {done} done in {WORK_S}s; peak in flight {peak_in_flight} "
        f"(bound {MAX_IN_FLIGHT}); RSS {before:.0f} MiB, peak +{growth:.1f} MiB; {samples} samples"
    )
    assert 0 < done < BACKLOG  # it worked, and a backlog was left to tempt it
    assert peak_in_flight <= MAX_IN_FLIGHT
    assert peak_in_flight >= MAX_IN_FLIGHT // 2, "the bound was never approached: no backlog?"
    assert growth < MAX_RSS_GROWTH_MIB
