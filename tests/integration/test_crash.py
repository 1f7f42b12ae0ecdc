"""SIGKILL the worker process mid-stream, again and again: nothing may be lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from .harness import (
    create_topics,
    event,
    produce,
    read_topic,
    topic_names,
    verdicts,
    worker_settings,
)
from .procs import WorkerProcess

pytestmark = pytest.mark.integration

KILLS = 3
TOTAL = 1200
RATE = 60  # events per second: slower than the worker, so work is always in flight


async def _stream(bootstrap: str, topic: str) -> None:
    """Produce TOTAL events at a steady rate, in small batches."""
    step = 20
    for start in range(0, TOTAL, step):
        records = [
            (
                f"c-{n}".encode(),
                event(
                    f"c-{n}",
                    f"message {n} with an apple" if n % 2 else f"message {n} about nothing",
                    policies=["fruit"],
                ),
                [],
            )
            for n in range(start, min(start + step, TOTAL))
        ]
        await produce(bootstrap, topic, records)
        await asyncio.sleep(step / RATE)


async def test_sigkill_loop_loses_nothing(broker, test_model, tmp_path):
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
    streaming = asyncio.create_task(_stream(bootstrap, topics["content"]))
    worker = WorkerProcess(settings, tmp_path, "crash")
    try:
        for _ in range(KILLS):
            mark = worker.log_size()
            worker.start()
            await asyncio.to_thread(worker.wait_log, "partitions assigned", 240, mark)
            before = len(await read_topic(bootstrap, topics["results"], settle=0.2))
            await _wait_for_more(bootstrap, topics["results"], before + 40, timeout=120)
            worker.kill()
        await streaming
        mark = worker.log_size()
        worker.start()
        await asyncio.to_thread(worker.wait_log, "partitions assigned", 240, mark)
        results = await read_topic(
            bootstrap, topics["results"], at_least=TOTAL, timeout=300, settle=3
        )
        assert await asyncio.to_thread(worker.terminate) == 0
    finally:
        streaming.cancel()
        if worker.process and worker.process.poll() is None:
            worker.kill()

    ids = [v["id"] for v in verdicts(results)]
    assert set(ids) == {f"c-{n}" for n in range(TOTAL)}, worker.tail()
    duplicates = len(ids) - len(set(ids))
    print(f"{KILLS} kills: {len(ids)} verdicts for {TOTAL} events, {duplicates} duplicates")
    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert all(labels[f"c-{n}"] == n % 2 for n in range(TOTAL))


async def _wait_for_more(bootstrap: str, topic: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(await read_topic(bootstrap, topic, settle=0.2, timeout=10)) >= count:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"fewer than {count} verdicts on {topic} after {timeout}s")
