"""Helpers for tests against the real broker: unique topics, producing, reading back."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Collection
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from worker.config import Settings, load_settings
from worker.kafka import create_topics as create_topics  # the tests create topics through harness

TEST_POLICIES = Path(__file__).resolve().parents[1] / "policies"
_counter = itertools.count()


def topic_names(prefix: str) -> dict[str, str]:
    tag = f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
    return {
        "content": f"{tag}-content",
        "results": f"{tag}-verdicts",
        "review": f"{tag}-review",
        "dead_letter": f"{tag}-dead",
        "shadow": f"{tag}-shadow",
    }


def worker_settings(
    bootstrap: str, model: Path, topics: dict[str, str], *, partitions: int = 3, **sections
) -> Settings:
    base: dict = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "enable_idempotence": False,
            "group_id": f"g-{topics['content']}",
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 1_000,
        },
        "topics": {**topics, "create": True, "partitions": partitions},
        "engine": {"model": str(model), "max_model_len": 4096},
        "policies": {"dir": str(TEST_POLICIES), "watch": False},
        "health": {"enabled": False},
        "batch": {"max_items": 32, "linger_ms": 5, "max_in_flight": 256},
        "drain_deadline_s": 20,
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return load_settings(**base)


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def event(item_id: str, content: str, **fields) -> bytes:
    return orjson.dumps({"id": item_id, "content": content, **fields})


async def produce(
    bootstrap: str, topic: str, records: list[Record], client: dict | None = None
) -> None:
    """``client``: extra aiokafka options (TLS for the security tests)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **(client or {}))
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, headers=headers)
            for key, value, headers in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_at_rate(
    bootstrap: str, topic: str, records: list[Record], rate: float, step: int
) -> None:
    """Produce ``records`` at about ``rate`` a second, ``step`` at a time."""
    for first in range(0, len(records), step):
        await produce(bootstrap, topic, records[first : first + step])
        await asyncio.sleep(step / rate)


async def stream_around_kills(
    bootstrap: str,
    topic: str,
    prefix: str,
    total: int,
    held_back: int,
    rate: float,
    kills_done: asyncio.Event,
) -> None:
    """Produce ``total`` fruit events at a steady rate, the last ``held_back`` once the kills
    are done, so that every kill of a crash test lands mid-stream whatever a restart costs.
    Odd-numbered events name an apple: their fruit label is 1."""
    records = [
        (
            f"{prefix}-{n}".encode(),
            event(
                f"{prefix}-{n}",
                f"message {n} with an apple" if n % 2 else f"message {n} about nothing",
                policies=["fruit"],
            ),
            [],
        )
        for n in range(total)
    ]
    await produce_at_rate(bootstrap, topic, records[:-held_back], rate, step=25)
    await kills_done.wait()
    await produce_at_rate(bootstrap, topic, records[-held_back:], rate, step=25)


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    at_least: int = 0,
    ids: Collection[str] = (),
    timeout: float = 60.0,
    settle: float = 1.0,
    client: dict | None = None,
) -> list[ConsumerRecord]:
    """Everything on ``topic``: wait until ``at_least`` records and a verdict for each of
    ``ids``, then ``settle`` seconds more.

    Wait on ``ids`` wherever outputs may repeat (redelivery after a kill, a rebalance or a
    broker outage): a count of records can be reached by duplicates while some ids are
    still in flight.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **(client or {})
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic, timeout)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        missing = set(ids)
        deadline = last_new = time.monotonic()
        deadline += timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
                if missing:
                    missing.difference_update(v["id"] for v in verdicts(part))
                last_new = time.monotonic()
            done = len(records) >= at_least and not missing
            if done and time.monotonic() - last_new >= settle:
                break
        return records
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await consumer._client.force_metadata_update()  # noqa: SLF001
        await asyncio.sleep(0.2)
    raise TimeoutError(f"topic {topic} has no partitions")


async def committed(
    bootstrap: str, group: str, topic: str, client: dict | None = None
) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **(client or {}))
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic, 10)
        return {tp.partition: await consumer.committed(tp) for tp in parts}
    finally:
        await consumer.stop()


def verdicts(records: list[ConsumerRecord]) -> list[dict]:
    return [orjson.loads(r.value) for r in records]


def labels_and_scores(records: list[ConsumerRecord]) -> dict[str, dict[str, tuple[int, float]]]:
    """Per item id, per policy: the verdict's (label, score)."""
    return {
        v["id"]: {p["policy"]: (p["label"], p["score"]) for p in v["verdicts"]}
        for v in verdicts(records)
    }


class RunningWorker:
    """A Worker running in this process on the session's engine; stop() drains it."""

    def __init__(self, settings: Settings, engine) -> None:
        self.settings = settings
        self.engine = engine
        self.worker = None
        self._task: asyncio.Task[int] | None = None
        self._context = None

    async def __aenter__(self) -> RunningWorker:
        from worker.app import open_worker

        self._context = open_worker(self.settings, self.engine)
        self.worker = await self._context.__aenter__()
        self._task = asyncio.create_task(self.worker.run())
        return self

    async def wait_assigned(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.worker.assigned.wait(), timeout)

    async def stop(self) -> int:
        if self._task is None:
            raise RuntimeError("worker not running")
        self.worker.stop()
        code = await asyncio.wait_for(self._task, 60)
        await self._context.__aexit__(None, None, None)
        self._task = None
        return code

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            await self.stop()
