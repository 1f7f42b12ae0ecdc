"""A second worker joins the group mid-stream and leaves again: nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from .harness import (
    RunningWorker,
    committed,
    create_topics,
    event,
    produce_at_rate,
    read_topic,
    topic_names,
    verdicts,
    worker_settings,
)

pytestmark = pytest.mark.integration

TOTAL = 900
IDS = {f"r-{n}" for n in range(TOTAL)}


async def _stream(bootstrap: str, topic: str, start: int, stop: int, rate: float) -> None:
    records = [
        (
            f"r-{n}".encode(),
            event(
                f"r-{n}", f"note {n}" + (" about a mango" if n % 3 == 0 else ""), policies=["fruit"]
            ),
            [],
        )
        for n in range(start, stop)
    ]
    await produce_at_rate(bootstrap, topic, records, rate, step=15)


async def test_worker_joining_and_leaving_loses_nothing(broker, engine, test_model):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("rebalance")
    settings = worker_settings(
        bootstrap,
        test_model,
        topics,
        partitions=4,
        batch={"max_items": 8, "linger_ms": 5, "max_in_flight": 48},
    )
    await create_topics(bootstrap, list(topics.values()), 4)
    streaming = asyncio.create_task(_stream(bootstrap, topics["content"], 0, TOTAL, rate=90))
    async with RunningWorker(settings, engine) as first:
        await first.wait_assigned()
        await asyncio.sleep(2)
        second = RunningWorker(settings, engine)
        async with second:
            await second.wait_assigned(timeout=60)  # the group rebalanced onto both
            await asyncio.sleep(3)
            assert second.worker.held_partitions(), "the joiner got no partitions"
        # The second worker left: its partitions go back to the first.
        await streaming
        results = await read_topic(
            bootstrap,
            topics["results"],
            ids=IDS,
            timeout=180,
            settle=2,
        )
        for _ in range(100):  # the group settles onto the one member left
            if len(first.worker.held_partitions()) == 4:
                break
            await asyncio.sleep(0.3)
        assert len(first.worker.held_partitions()) == 4

    ids = [v["id"] for v in verdicts(results)]
    assert set(ids) == IDS
    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert all(labels[f"r-{n}"] == (1 if n % 3 == 0 else 0) for n in range(TOTAL))
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    assert sum(p or 0 for p in positions.values()) == TOTAL
    print(
        f"rebalance: {len(ids)} verdicts for {TOTAL} events, {len(ids) - len(set(ids))} duplicates"
    )
