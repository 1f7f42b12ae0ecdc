"""Engine trouble: failed requests are retried, then dead-lettered; a dead engine stops the worker.

The first test wraps the real session engine in a fault injector that fails chosen requests
(a non-fatal EngineError, what vLLM raises for one bad request). The second kills the
engine process of a worker process outright.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import pytest

from worker.engine import EngineError, Score

from .harness import (
    RunningWorker,
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

CPU_ARGS = {"extra_args": {"enforce_eager": True, "block_size": 32}}


class FlakyEngine:
    """The session engine, failing requests whose content says so.

    "glitch-once" fails the first attempt of each of its prompts; "glitch-always" fails
    every attempt. ``attempts`` counts calls per prompt.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.model_name = inner.model_name
        self.max_model_len = inner.max_model_len
        self.attempts: Counter[tuple[int, ...]] = Counter()

    async def score(self, prompt_token_ids: list[int]) -> Score:
        key = tuple(prompt_token_ids)
        self.attempts[key] += 1
        text = self.tokenizer.decode(prompt_token_ids)
        if "glitch-always" in text or ("glitch-once" in text and self.attempts[key] == 1):
            raise EngineError("injected fault: request failed")
        return await self.inner.score(prompt_token_ids)

    def close(self) -> None:  # the session engine outlives this test
        pass


async def test_failed_requests_are_retried_then_dead_lettered(broker, engine, test_model):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("flaky")
    max_retries = 2
    settings = worker_settings(
        bootstrap, test_model, topics, engine={**CPU_ARGS, "max_retries": max_retries}
    )
    await create_topics(bootstrap, list(topics.values()), 3)
    kinds = ["fine", "glitch-once", "glitch-always"]
    records = [
        (
            f"f-{n}".encode(),
            event(
                f"f-{n}",
                f"item {n} {kinds[n % 3]}" + (" with an apple" if n % 2 else ""),
                policies=["fruit", "tools"],
            ),
            [],
        )
        for n in range(90)
    ]
    await produce(bootstrap, topics["content"], records)
    flaky = FlakyEngine(engine)
    async with RunningWorker(settings, flaky):
        results = await read_topic(bootstrap, topics["results"], at_least=60, timeout=180)
        dead = await read_topic(bootstrap, topics["dead_letter"], at_least=30, timeout=60)

    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert set(labels) == {f"f-{n}" for n in range(90) if n % 3 != 2}
    assert all(labels[f"f-{n}"] == n % 2 for n in range(90) if n % 3 != 2)
    assert {r.key for r in dead} == {f"f-{n}".encode() for n in range(90) if n % 3 == 2}
    for record in dead:
        headers = dict(record.headers)
        assert headers["x-dead-letter-error-type"] == b"engine_error"
        assert b"injected fault" in headers["x-dead-letter-reason"]
    # Two policies per event: each prompt is tried 1 + max_retries times, then given up.
    per_kind = {kind: Counter() for kind in kinds}
    for prompt, count in flaky.attempts.items():
        text = engine.tokenizer.decode(list(prompt))
        kind = next((k for k in kinds[1:] if k in text), "fine")
        per_kind[kind][count] += 1
    assert per_kind == {
        "fine": Counter({1: 60}),
        "glitch-once": Counter({2: 60}),
        "glitch-always": Counter({1 + max_retries: 60}),
    }
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    assert sum(p or 0 for p in positions.values()) == 90


def _outputs_by_offset(results, dead) -> dict[int, set[int]]:
    """Source offsets per partition that have an output (verdict or dead letter)."""
    done: dict[int, set[int]] = {}
    for verdict in verdicts(results):
        done.setdefault(verdict["source"]["partition"], set()).add(verdict["source"]["offset"])
    for record in dead:
        headers = dict(record.headers)
        partition = int(headers["x-dead-letter-source-partition"])
        done.setdefault(partition, set()).add(int(headers["x-dead-letter-source-offset"]))
    return done


async def test_dead_engine_stops_the_worker_without_committing_unpublished(
    broker, test_model, tmp_path
):
    total = 1500
    expected = {f"e-{n}" for n in range(total)}
    bootstrap = broker.bootstrap_servers
    topics = topic_names("enginedeath")
    settings = worker_settings(bootstrap, test_model, topics, engine=CPU_ARGS)
    await create_topics(bootstrap, list(topics.values()), 3)
    records = [
        (
            f"e-{n}".encode(),
            event(f"e-{n}", f"entry {n}" + (" mango" if n % 4 == 0 else ""), policies=["fruit"]),
            [],
        )
        for n in range(total)
    ]
    await produce(bootstrap, topics["content"], records)
    worker = WorkerProcess(settings, tmp_path, "enginedeath").start()
    try:
        await asyncio.to_thread(worker.wait_log, "partitions assigned", 300)
        await read_topic(bootstrap, topics["results"], at_least=100, timeout=120, settle=0)
        engine_pid = worker.descendant("EngineCore")
        os.kill(engine_pid, signal.SIGKILL)
        killed = time.monotonic()
        code = await asyncio.to_thread(worker.process.wait, 120)
        print(f"engine killed: worker exited {code} after {time.monotonic() - killed:.1f}s")
        assert code != 0, worker.tail()
    finally:
        if worker.process.poll() is None:
            worker.kill()

    # Whatever was committed had been published: no committed offset lacks an output.
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    results = await read_topic(bootstrap, topics["results"], settle=1)
    dead = await read_topic(bootstrap, topics["dead_letter"], settle=0.5)
    done = _outputs_by_offset(results, dead)
    for partition, position in positions.items():
        missing = set(range(position or 0)) - done.get(partition, set())
        assert not missing, (
            f"partition {partition} committed {position} without outputs for {sorted(missing)[:10]}"
        )
    assert sum(p or 0 for p in positions.values()) < total, "the engine died after the stream ended"

    mark = worker.log_size()
    worker.start()  # the next start finishes the stream
    try:
        await asyncio.to_thread(worker.wait_log, "partitions assigned", 300, mark)
        results = await read_topic(
            bootstrap,
            topics["results"],
            ids=expected,
            timeout=240,
            settle=2,
        )
        assert await asyncio.to_thread(worker.terminate) == 0
    finally:
        if worker.process.poll() is None:
            worker.kill()
    ids = [v["id"] for v in verdicts(results)]
    assert set(ids) == expected
    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert all(labels[f"e-{n}"] == (n % 4 == 0) for n in range(total))
    print(
        f"engine death: committed {dict(positions)} at the crash; "
        f"{len(ids)} verdicts for {total} events, {len(ids) - len(set(ids))} duplicates"
    )
