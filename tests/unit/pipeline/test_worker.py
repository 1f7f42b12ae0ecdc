"""The worker's parts wired together, on fake Kafka clients and the instant engine.

Each test runs in milliseconds: every record ends as a verdict or a dead letter, offsets are
committed only behind published outputs, and a fatal publish error stops without committing.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from worker.engine import EngineDead, EngineError, Score
from worker.engine.instant import InstantClassifier
from worker.pipeline import Worker
from worker.pipeline.intake import Flow, flow

from ..fakes import TP0, FakeConsumer, FakeProducer, catalog, event, record, settings


@pytest.mark.parametrize(
    ("room", "paused", "decision"),
    [
        (0, False, Flow.PAUSE),
        (-3, True, Flow.PAUSE),  # again: partitions assigned meanwhile are paused too
        (4, True, Flow.KEEP),  # less than half the bound free: stay paused
        (8, True, Flow.RESUME),
        (16, False, Flow.KEEP),
    ],
)
def test_backpressure_decisions(room, paused, decision) -> None:
    assert flow(room, paused, max_in_flight=16) is decision


async def _run(worker: Worker, consumer: FakeConsumer, timeout: float = 10) -> int:
    task = asyncio.create_task(worker.run())
    deadline = asyncio.get_running_loop().time() + timeout
    while not (consumer.drained and worker.in_flight() == 0) and not task.done():
        assert asyncio.get_running_loop().time() < deadline, "the worker did not finish"
        await asyncio.sleep(0.01)
    worker.stop()
    return await asyncio.wait_for(task, timeout)


def _worker(tokenizer, consumer, producer, classifier=None, **overrides) -> Worker:
    config = settings(**overrides)
    engine = classifier or InstantClassifier(tokenizer, 4096)
    return Worker(config, engine, catalog(tokenizer, config), consumer, producer)


def _error_types(producer: FakeProducer) -> list[bytes]:
    return [dict(headers)["x-dead-letter-error-type"] for *_, headers in producer.on("dlq")]


async def test_every_record_ends_as_a_verdict_or_a_dead_letter(tokenizer) -> None:
    records = [
        record(event("a", "an apple", policies=["fruit"]), offset=0),
        record(b"{not json", offset=1),
        record(event("b", "a river", policies=["nope"]), offset=2),
        record(None, offset=3),
        record(orjson.dumps([1, 2]), offset=4),
        record(event("c", "   "), offset=5),
        record(event("d", "word " * 5000, policies=["fruit"]), offset=6),
        record(event("e", "a compass", policies=["tools", "nature"]), offset=7),
    ]
    consumer, producer = FakeConsumer([records[:3], records[3:]]), FakeProducer()
    assert await _run(_worker(tokenizer, consumer, producer), consumer) == 0
    assert sorted(orjson.loads(v)["id"] for _, _, v, _ in producer.on("results")) == ["a", "e"]
    assert _error_types(producer) == [
        b"invalid_json",
        b"unknown_policy",
        b"empty_value",
        b"not_an_object",
        b"invalid_event",
        b"content_too_long",
    ]
    assert consumer.commits[-1] == {TP0: 8}  # all eight, contiguous
    assert consumer.stopped


async def test_a_full_in_flight_bound_pauses_the_partition(tokenizer) -> None:
    records = [record(event(f"i{n}", f"item {n}"), offset=n) for n in range(40)]
    consumer, producer = FakeConsumer([records]), FakeProducer()
    worker = _worker(tokenizer, consumer, producer, batch={"max_in_flight": 4, "max_items": 2})
    assert await _run(worker, consumer) == 0
    assert consumer.pauses > 0  # and resumed, or the forty would not all be through
    assert len(producer.on("results")) == 40
    assert consumer.commits[-1] == {TP0: 40}


async def test_a_fatal_publish_error_stops_without_committing_it(tokenizer) -> None:
    def refuse_results(topic, value):
        return TopicAuthorizationFailedError() if topic == "results" else None

    consumer = FakeConsumer([[record(event("a", "an apple"), offset=0)]])
    producer = FakeProducer(refuse_results)
    task = asyncio.create_task(_worker(tokenizer, consumer, producer).run())
    assert await asyncio.wait_for(task, 10) == 1
    assert not consumer.commits


class _Failing(InstantClassifier):
    def __init__(self, tokenizer, error: Exception) -> None:
        super().__init__(tokenizer, 4096)
        self.error = error
        self.calls = 0

    async def score(self, prompt_token_ids: list[int]) -> Score:
        self.calls += 1
        raise self.error


async def test_an_engine_request_failing_every_retry_is_dead_lettered(tokenizer) -> None:
    consumer, producer = FakeConsumer([[record(event("a", "an apple"), offset=0)]]), FakeProducer()
    engine = _Failing(tokenizer, EngineError("request failed"))
    worker = _worker(tokenizer, consumer, producer, engine, engine={"max_retries": 2})
    assert await _run(worker, consumer) == 0
    assert _error_types(producer) == [b"engine_error"]
    assert engine.calls == 3 * len(worker.catalog.resolve(None))  # each prompt, 1 + 2 retries
    assert consumer.commits[-1] == {TP0: 1}


async def test_a_dead_engine_stops_the_worker(tokenizer) -> None:
    consumer, producer = FakeConsumer([[record(event("a", "an apple"), offset=0)]]), FakeProducer()
    worker = _worker(tokenizer, consumer, producer, _Failing(tokenizer, EngineDead("gone")))
    assert await asyncio.wait_for(worker.run(), 10) == 1
    assert not producer.sent and not consumer.commits


async def test_records_the_client_cannot_decode_are_stepped_over_by_coordinates(tokenizer) -> None:
    from ..fakes import LogConsumer

    records = [record(event(f"i{n}", f"item {n}"), offset=n) for n in range(6)]
    consumer, producer = LogConsumer(records, bad={2, 3}), FakeProducer()
    assert await _run(_worker(tokenizer, consumer, producer), consumer) == 0
    ids = sorted(orjson.loads(v)["id"] for _, _, v, _ in producer.on("results"))
    assert ids == ["i0", "i1", "i4", "i5"]
    letters = producer.on("dlq")
    assert [dict(h)["x-dead-letter-source-offset"] for *_, h in letters] == [b"2", b"3"]
    assert _error_types(producer) == [b"undecodable_record"] * 2
    assert all(value == b"" for _, _, value, _ in letters)
    assert consumer.commits[-1] == {TP0: 6}
