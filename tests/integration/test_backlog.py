"""A backlog of 100,000 small events: the worker holds a bounded number, not the backlog.

The events wait on the topic before the worker starts. It then works through them for a
while: what it holds in flight never passes ``batch.max_in_flight`` (partitions are paused
instead), and the memory it allocates meanwhile stays at a few MiB, not the backlog's size:
aiokafka's fetch buffer is bounded too (``kafka.fetch_max_bytes`` and
``kafka.max_partition_fetch_bytes``). Allocations are counted with tracemalloc, which, unlike
RSS, does not depend on what earlier tests in the session left in the heap.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import pytest
from aiokafka import AIOKafkaProducer

from .harness import RunningWorker, committed, create_topics, event, topic_names, worker_settings

pytestmark = pytest.mark.integration

BACKLOG = 100_000
MAX_IN_FLIGHT = 256
WORK_S = 20
# Holding the backlog would take hundreds of MiB (a decoded event, its job and its trace
# span are a few KiB each; measured with no bound: 154 MiB for 13,444 events in flight).
MAX_PEAK_ALLOCATED_MIB = 64


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

    peak_in_flight, samples = 0, 0
    async with RunningWorker(settings, engine) as running:
        await running.wait_assigned(60)
        tracemalloc.start()
        try:
            deadline = time.monotonic() + WORK_S
            while time.monotonic() < deadline:
                peak_in_flight = max(peak_in_flight, running.worker.in_flight())
                samples += 1
                await asyncio.sleep(0.02)
            _, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    done = sum(p or 0 for p in positions.values())
    peak_mib = peak_bytes / 2**20
    print(
        f"backlog {BACKLOG}: {done} done in {WORK_S}s; peak in flight {peak_in_flight} "
        f"(bound {MAX_IN_FLIGHT}); peak allocated {peak_mib:.1f} MiB; {samples} samples"
    )
    assert 0 < done < BACKLOG  # it worked, and a backlog was left to tempt it
    assert peak_in_flight <= MAX_IN_FLIGHT
    assert peak_in_flight >= MAX_IN_FLIGHT // 2, "the bound was never approached: no backlog?"
    assert peak_mib < MAX_PEAK_ALLOCATED_MIB
