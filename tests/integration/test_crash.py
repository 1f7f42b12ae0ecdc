"""SIGKILL the worker process at random moments while events stream in: nothing may be lost.

The whole process family (worker and engine) is killed, as losing a pod would, at moments
drawn from a seeded generator, then restarted; after the last restart every event must have
its verdict (with the right label), and the group's commits must cover the stream. The
duplicates that redelivery produced are printed and recorded as a test property.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from .harness import (
    committed,
    create_topics,
    read_topic,
    stream_around_kills,
    topic_names,
    verdicts,
    worker_settings,
)
from .procs import WorkerProcess

pytestmark = pytest.mark.integration

SEED = 7  # draws kill moments of 4.2, 2.2, 8.0, 1.3 and 6.7 s
KILLS = 5
TOTAL = 5000
IDS = {f"c-{n}" for n in range(TOTAL)}
RATE = 30  # events per second: slower than the worker, so work is in flight at each kill
KILL_WINDOW_S = (0.5, 12.0)  # a kill comes this long after the worker took its partitions
# Restarts take as long as the engine takes to load, which varies with the machine; holding
# the stream's last events back until the kills are done keeps every kill mid-stream.
HELD_BACK = 1000


async def test_sigkill_loop_loses_nothing(broker, test_model, tmp_path, record_property):
    rng = random.Random(SEED)
    bootstrap = broker.bootstrap_servers
    topics = topic_names("crash")
    settings = worker_settings(
        bootstrap,
        test_model,
        topics,
        engine={"extra_args": {"enforce_eager": True, "block_size": 32}},
        batch={"max_items": 16, "linger_ms": 5, "max_in_flight": 64},
    )
    await create_topics(bootstrap, list(topics.values()), 3)
    kills_done = asyncio.Event()
    streaming = asyncio.create_task(
        stream_around_kills(bootstrap, topics["content"], "c", TOTAL, HELD_BACK, RATE, kills_done)
    )
    worker = WorkerProcess(settings, tmp_path, "crash")
    kills: list[str] = []
    try:
        for _ in range(KILLS):
            mark = worker.log_size()
            worker.start()
            await asyncio.to_thread(worker.wait_log, "partitions assigned", 300, mark)
            delay = rng.uniform(*KILL_WINDOW_S)
            await asyncio.sleep(delay)
            assert worker.process.poll() is None, worker.tail()
            worker.kill()
            done = verdicts(await read_topic(bootstrap, topics["results"], settle=0.2))
            seen = len({v["id"] for v in done})
            assert seen < TOTAL, "a kill came after the work was done"
            kills.append(f"+{delay:.1f}s ({seen} classified)")
        kills_done.set()
        await streaming
        mark = worker.log_size()
        worker.start()
        await asyncio.to_thread(worker.wait_log, "partitions assigned", 300, mark)
        results = await read_topic(
            bootstrap,
            topics["results"],
            ids=IDS,
            timeout=300,
            settle=3,
        )
        assert await asyncio.to_thread(worker.terminate) == 0
    finally:
        streaming.cancel()
        if worker.process and worker.process.poll() is None:
            worker.kill()

    ids = [v["id"] for v in verdicts(results)]
    assert set(ids) == IDS, worker.tail()
    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert all(labels[f"c-{n}"] == n % 2 for n in range(TOTAL))
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    assert sum(p or 0 for p in positions.values()) == TOTAL
    duplicates = len(ids) - len(set(ids))
    record_property("kills", len(kills))
    record_property("duplicates", duplicates)
    print(
        f"{len(kills)} kills at {', '.join(kills)}: "
        f"{len(ids)} verdicts for {TOTAL} events, {duplicates} duplicates"
    )
