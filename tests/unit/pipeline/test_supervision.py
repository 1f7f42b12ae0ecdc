"""Every loop of the worker is supervised: one that fails ends the worker with exit 1 and
one error line naming it, and nothing unpublished is committed.

On fake Kafka clients and the instant engine; each loop is made to raise in turn.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from structlog.testing import capture_logs

from worker.engine import Score
from worker.engine.instant import InstantClassifier
from worker.pipeline import Worker
from worker.pipeline import worker as worker_module

from ..fakes import TP0, FakeConsumer, FakeProducer, catalog, event, record, settings

RECORDS = [record(event(f"i{n}", f"item {n}"), offset=n) for n in range(12)]


def _worker(tokenizer, consumer, producer, classifier=None, **overrides) -> Worker:
    config = settings(**overrides)
    engine = classifier or InstantClassifier(tokenizer, 4096)
    return Worker(config, engine, catalog(tokenizer, config), consumer, producer)


async def _fails(worker: Worker) -> dict:
    """Run the worker until it stops on its own; return its one error line."""
    with capture_logs() as logs:
        assert await asyncio.wait_for(worker.run(), 10) == 1
    errors = [line for line in logs if line["log_level"] == "error"]
    assert len(errors) == 1, errors
    return errors[0]


def _published_prefix(producer: FakeProducer) -> int:
    """How many offsets from 0 have a verdict out: all a commit may cover."""
    done = {orjson.loads(v)["source"]["offset"] for _, _, v, _ in producer.on("results")}
    n = 0
    while n in done:
        n += 1
    return n


def _committed_only_published(consumer: FakeConsumer, producer: FakeProducer) -> None:
    prefix = _published_prefix(producer)
    assert all(positions[TP0] <= prefix for positions in consumer.commits)


class _FetchFails(FakeConsumer):
    def __init__(self, fetches, after: int) -> None:
        super().__init__(fetches)
        self._left = after

    async def getmany(self, *tps, timeout_ms: int = 0, max_records: int = 0):
        if self._left == 0:
            raise RuntimeError("fetch exploded")
        self._left -= 1
        return await super().getmany(*tps, timeout_ms=timeout_ms, max_records=max_records)


async def test_a_failing_intake_loop_stops_the_worker(tokenizer) -> None:
    consumer, producer = _FetchFails([RECORDS[:4], RECORDS[4:]], after=3), FakeProducer()
    line = await _fails(_worker(tokenizer, consumer, producer))
    assert line["loop"] == "intake loop"
    assert line["error"] == "intake loop failed: RuntimeError: fetch exploded"
    assert line["at"].endswith("test_supervision.py:" + line["at"].rsplit(":", 1)[1])
    assert consumer.stopped
    _committed_only_published(consumer, producer)


class _Counting(FakeProducer):
    def __init__(self) -> None:
        super().__init__()
        self.four_out = asyncio.Event()

    async def send(self, topic: str, **kwargs) -> asyncio.Future[None]:
        future = await super().send(topic, **kwargs)
        if len(self.on("results")) >= 4:
            self.four_out.set()
        return future


async def test_a_failing_batch_loop_stops_the_worker_mid_stream(tokenizer, monkeypatch) -> None:
    real = worker_module.next_batch
    calls = 0

    async def breaks_on_the_third(queue, max_items, linger_s):
        nonlocal calls
        calls += 1
        if calls == 3:
            await producer.four_out.wait()  # the first two batches are out
            raise ValueError("batching broke")
        return await real(queue, max_items, linger_s)

    monkeypatch.setattr(worker_module, "next_batch", breaks_on_the_third)
    consumer, producer = FakeConsumer([RECORDS]), _Counting()
    worker = _worker(tokenizer, consumer, producer, batch={"max_items": 2})
    line = await _fails(worker)
    assert line["loop"] == "batch loop" and "ValueError: batching broke" in line["error"]
    assert 4 <= len(producer.on("results")) < len(RECORDS)  # it broke mid-stream
    assert consumer.commits[-1] == {TP0: 4}  # what was published, and only that
    _committed_only_published(consumer, producer)


class _CommitFails(FakeConsumer):
    async def commit(self, offsets) -> None:
        raise RuntimeError("commit exploded")


async def test_a_failing_commit_loop_stops_the_worker(tokenizer) -> None:
    consumer, producer = _CommitFails([RECORDS]), FakeProducer()
    line = await _fails(_worker(tokenizer, consumer, producer))
    assert line["loop"] == "commit loop" and "commit exploded" in line["error"]


async def test_a_failing_extra_loop_stops_the_worker(tokenizer) -> None:
    consumer, producer = FakeConsumer([RECORDS]), FakeProducer()
    worker = _worker(tokenizer, consumer, producer)

    async def watch() -> None:
        await asyncio.sleep(0.05)
        raise OSError("policy directory vanished")

    worker.also_run("policy watch loop", watch)
    line = await _fails(worker)
    assert line["loop"] == "policy watch loop"
    assert line["error"] == "policy watch loop failed: OSError: policy directory vanished"
    _committed_only_published(consumer, producer)


async def test_a_loop_that_ends_on_its_own_stops_the_worker(tokenizer) -> None:
    consumer, producer = FakeConsumer([RECORDS]), FakeProducer()
    worker = _worker(tokenizer, consumer, producer)

    async def gives_up() -> None:
        await asyncio.sleep(0.05)

    worker.also_run("policy watch loop", gives_up)
    line = await _fails(worker)
    assert line["error"] == "policy watch loop failed: it ended on its own"


class _Broken(InstantClassifier):
    async def score(self, prompt_token_ids: list[int]) -> Score:
        raise KeyError("a bug in the engine adapter")


async def test_a_failing_classify_task_stops_the_worker_without_committing(tokenizer) -> None:
    consumer, producer = FakeConsumer([RECORDS]), FakeProducer()
    line = await _fails(_worker(tokenizer, consumer, producer, _Broken(tokenizer, 4096)))
    assert line["loop"] == "classify task" and "KeyError" in line["error"]
    assert not producer.on("results") and not consumer.commits


class _Hangs(InstantClassifier):
    async def score(self, prompt_token_ids: list[int]) -> Score:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_work_that_does_not_move_is_reported_as_stalled(tokenizer) -> None:
    consumer, producer = FakeConsumer([RECORDS[:3]]), FakeProducer()
    worker = _worker(
        tokenizer, consumer, producer, _Hangs(tokenizer, 4096), health={"no_progress_after_s": 0.2}
    )
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.1)
    assert worker.in_flight() == 3 and worker.stalled() is None  # not yet
    await asyncio.sleep(0.3)
    assert "while 3 items wait (limit 0.2s" in worker.stalled()
    worker.stop()
    with capture_logs():
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_idle_worker_is_not_stalled(tokenizer) -> None:
    consumer, producer = FakeConsumer([RECORDS[:2]]), FakeProducer()
    worker = _worker(tokenizer, consumer, producer, health={"no_progress_after_s": 0.1})
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.4)  # done with its two items long ago, waiting for more
    assert worker.in_flight() == 0 and worker.stalled() is None
    worker.stop()
    assert await asyncio.wait_for(task, 10) == 0
