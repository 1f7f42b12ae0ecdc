"""Group churn: three workers, one joining and one leaving mid-stream, partitions moving.

The workers run in this process on the session engine, each with its own consumer and
producer in one consumer group. While events stream in, a third worker joins and one of
the first two leaves. Nothing may be lost, commits must advance during the run (not only
at the end), and every partition's committed offset must reach its end offset.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from .harness import (
    RunningWorker,
    committed,
    create_topics,
    event,
    read_topic,
    topic_names,
    verdicts,
    worker_settings,
)

pytestmark = pytest.mark.integration

TOTAL = 3600
IDS = {f"ch-{n}" for n in range(TOTAL)}
PARTITIONS = 6
RATE = 120  # events per second


async def _stream(bootstrap: str, topic: str, ends: dict[int, int]) -> None:
    """Produce TOTAL events at RATE; ``ends`` gets each partition's end offset as acked."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        step = 40
        for first in range(0, TOTAL, step):
            futures = [
                await producer.send(
                    topic,
                    event(
                        f"ch-{n}",
                        f"post {n}" + (" near a compass" if n % 5 == 0 else ""),
                        policies=["tools"],
                    ),
                    key=f"ch-{n}".encode(),
                )
                for n in range(first, min(first + step, TOTAL))
            ]
            for meta in await asyncio.gather(*futures):
                ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
            await asyncio.sleep(step / RATE)
    finally:
        await producer.stop()


class _Sampler:
    """Committed offsets and who holds what, every second, while the test runs."""

    def __init__(self, bootstrap: str, group: str, topic: str, workers: dict) -> None:
        self.args = (bootstrap, group, topic)
        self.workers = workers
        self.commits: list[tuple[float, int]] = []
        self.holders: list[dict[str, int]] = []
        self.live: set[str] = set()  # workers running now

    async def run(self) -> None:
        start = time.monotonic()
        while True:
            positions = await committed(*self.args)
            self.commits.append((time.monotonic() - start, sum(p or 0 for p in positions.values())))
            self.holders.append(
                {
                    name: len(w.worker.held_partitions())
                    for name, w in self.workers.items()
                    if name in self.live
                }
            )
            await asyncio.sleep(1)


async def test_join_and_leave_mid_stream(broker, engine, test_model):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("churn")
    settings = worker_settings(
        bootstrap,
        test_model,
        topics,
        partitions=PARTITIONS,
        batch={"max_items": 16, "linger_ms": 5, "max_in_flight": 64},
    )
    await create_topics(bootstrap, list(topics.values()), PARTITIONS)
    a, b, c = (RunningWorker(settings, engine) for _ in range(3))
    workers = {"a": a, "b": b, "c": c}
    sampler = _Sampler(bootstrap, settings.kafka.group_id, topics["content"], workers)
    sampling = asyncio.create_task(sampler.run())
    streaming = None
    try:
        async with a, b:
            await asyncio.gather(a.wait_assigned(60), b.wait_assigned(60))
            sampler.live |= {"a", "b"}
            ends: dict[int, int] = {}
            streaming = asyncio.create_task(_stream(bootstrap, topics["content"], ends))
            await asyncio.sleep(5)
            async with c:  # joins mid-stream
                await c.wait_assigned(60)
                sampler.live.add("c")
                await asyncio.sleep(4)
                assert c.worker.held_partitions(), "the joiner got no partitions"
                sampler.live.discard("a")
                assert await a.stop() == 0  # one of the first two leaves mid-stream
                assert not streaming.done(), "the stream ended before the churn"
                await streaming
                results = await read_topic(
                    bootstrap,
                    topics["results"],
                    ids=IDS,
                    timeout=240,
                    settle=3,
                )
                await _wait_for_commits(bootstrap, settings.kafka.group_id, topics["content"], ends)
    finally:
        sampling.cancel()
        if streaming is not None:
            streaming.cancel()

    ids = [v["id"] for v in verdicts(results)]
    assert set(ids) == IDS
    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert all(labels[f"ch-{n}"] == (1 if n % 5 == 0 else 0) for n in range(TOTAL))
    # Commits moved while the stream ran, not just at the end.
    during = [total for t, total in sampler.commits if 0 < total < TOTAL]
    assert len(set(during)) >= 5, sampler.commits
    assert all(x <= y for x, y in zip(during, during[1:], strict=False)), sampler.commits
    shapes = {tuple(sorted(h.items())) for h in sampler.holders}
    print(
        f"churn: {len(ids)} verdicts for {TOTAL} events, {len(ids) - len(set(ids))} duplicates; "
        f"{len(set(during))} distinct commit totals mid-run; assignments seen: {sorted(shapes)}"
    )


async def _wait_for_commits(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> None:
    """Every partition's committed offset reaches its end offset: none is stuck."""
    deadline = time.monotonic() + 60
    while True:
        positions = await committed(bootstrap, group, topic)
        if positions == ends:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"committed {positions}, end offsets {ends}: a partition is stuck")
        await asyncio.sleep(0.5)
