"""A pipeline loop that breaks ends the worker: exit 1, one line, nothing lost.

The worker process runs through a small script that breaks its batch loop on the Nth batch,
mid-stream, on the real broker and engine (and writes down the ids of the batch it held).
The process must exit 1 with one error line naming the loop, commit nothing it did not
publish, and, once restarted as it is, finish the stream: the batch that was in hand when
the loop broke is redelivered and every event gets its verdict.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import pytest

from .harness import (
    committed,
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

BREAK_ON_BATCH = 5
FIRST, LATER = 300, 300  # events before the break, and more that arrive while it is down

# The fault, injected from outside the package: next_batch raises on its Nth batch.
BREAKER = """
import sys
from pathlib import Path

import orjson


async def breaking(queue, max_items, linger_s):
    global count
    batch = await real(queue, max_items, linger_s)
    count += 1
    if count == {n}:
        Path({out!r}).write_bytes(orjson.dumps([item.job.event.id for item in batch]))
        raise RuntimeError("injected: the batch loop broke")
    return batch


if __name__ == "__main__":  # the engine's processes import this module too
    from worker.cli import app
    from worker.pipeline import worker as pipeline

    real, count = pipeline.next_batch, 0
    pipeline.next_batch = breaking
    sys.argv[0] = "moderation-worker"
    app()
"""


def _fruit(n: int) -> tuple[bytes, bytes, list]:
    content = f"note {n} with an apple" if n % 2 else f"note {n} about nothing"
    return (f"s-{n}".encode(), event(f"s-{n}", content, policies=["fruit"]), [])


def _error_lines(log: str) -> list[dict]:
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("level") == "error"]


async def test_a_broken_batch_loop_exits_1_and_loses_nothing(broker, test_model, tmp_path):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("supervised")
    settings = worker_settings(
        bootstrap,
        test_model,
        topics,
        engine={"extra_args": {"enforce_eager": True, "block_size": 32}},
        batch={"max_items": 16, "linger_ms": 5, "max_in_flight": 64},
    )
    await create_topics(bootstrap, list(topics.values()), 3)
    await produce(bootstrap, topics["content"], [_fruit(n) for n in range(FIRST)])
    held = tmp_path / "held.json"
    script = tmp_path / "breaker.py"
    script.write_text(BREAKER.format(n=BREAK_ON_BATCH, out=str(held)))
    worker = WorkerProcess(settings, tmp_path, "supervised")
    worker.program = [sys.executable, str(script)]
    try:
        code = await asyncio.to_thread(worker.start().process.wait, 300)
        log = worker.log.read_text()
        assert code == 1, worker.tail()
        [line] = _error_lines(log)
        assert line["loop"] == "batch loop", line
        assert line["error"] == "batch loop failed: RuntimeError: injected: the batch loop broke"
        assert "Traceback" not in log
    finally:
        if worker.process.poll() is None:
            worker.kill()
    in_hand = set(orjson.loads(held.read_bytes()))
    assert in_hand, "the loop broke on an empty batch"

    # Nothing committed lacks its output, and the break came mid-stream.
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    results = await read_topic(bootstrap, topics["results"], settle=1)
    out = {(r["source"]["partition"], r["source"]["offset"]) for r in verdicts(results)}
    for partition, position in positions.items():
        assert {(partition, o) for o in range(position or 0)} <= out, partition
    assert sum(p or 0 for p in positions.values()) < FIRST
    assert not in_hand & {v["id"] for v in verdicts(results)}

    # More arrives while it is down; the restarted worker (no fault) finishes everything.
    total = FIRST + LATER
    await produce(bootstrap, topics["content"], [_fruit(n) for n in range(FIRST, total)])
    worker.program = [sys.executable, "-m", "worker.cli"]
    mark = worker.log_size()
    worker.start()
    try:
        await asyncio.to_thread(worker.wait_log, "partitions assigned", 300, mark)
        expected = {f"s-{n}" for n in range(total)}
        results = await read_topic(
            bootstrap, topics["results"], ids=expected, timeout=240, settle=2
        )
        assert await asyncio.to_thread(worker.terminate) == 0
    finally:
        if worker.process.poll() is None:
            worker.kill()
    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert set(labels) == expected
    assert all(labels[f"s-{n}"] == n % 2 for n in range(total))
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    assert sum(p or 0 for p in positions.values()) == total
    print(f"the batch in hand ({len(in_hand)} events) was redelivered; {len(results)} verdicts")
