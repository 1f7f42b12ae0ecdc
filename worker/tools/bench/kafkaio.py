"""The benchmark's own Kafka side: topic names, a producer that offers load, a result collector.

Arrival times are wall-clock (``time.time()``) so that they compare with stamps taken in
other processes on the same machine.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ...events import DEAD_LETTER_PREFIX
from .workload import Event


def topic_names(system: str) -> dict[str, str]:
    tag = f"bench-{system}-{uuid.uuid4().hex[:8]}"
    return {
        "content": f"{tag}-content",
        "results": f"{tag}-verdicts",
        "review": f"{tag}-review",
        "dead_letter": f"{tag}-dead",
        "shadow": f"{tag}-shadow",
    }


async def produce_backlog(bootstrap: str, topic: str, events: Sequence[Event]) -> None:
    """Put every event on the topic as fast as the broker takes them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, e.value, key=e.id.encode()) for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_open_loop(
    bootstrap: str,
    topic: str,
    events: Sequence[Event],
    offsets: Sequence[float],
    stop: asyncio.Event | None = None,
) -> dict[str, float]:
    """Send event n at start + offsets[n], never waiting on the system; return due times
    (of the events sent before ``stop`` was set, when given).

    Latency is measured from the due time, not the actual send, so a producer that falls
    behind does not hide queueing from the measurement.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    due: dict[str, float] = {}
    try:
        start = time.time() + 0.2
        futures = []
        for event, offset in zip(events, offsets, strict=True):
            at = start + offset
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if stop is not None and stop.is_set():
                break
            due[event.id] = at
            futures.append(await producer.send(topic, event.value, key=event.id.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return due


def _label_and_version(value: bytes | None) -> tuple[object, object]:
    """A verdict's label, and its first policy's version (which a reload changes)."""
    try:
        verdict = orjson.loads(value or b"")
        versions = [v.get("policy_version") for v in verdict.get("verdicts") or []]
        return verdict.get("label"), versions[0] if versions else None
    except (orjson.JSONDecodeError, AttributeError):
        return None, None


def _reason(headers: Sequence[tuple[str, bytes]]) -> str:
    """A dead letter's reason, as the worker's dead-letter headers give it."""
    found = dict(headers).get(DEAD_LETTER_PREFIX + "reason", b"")
    return found.decode(errors="replace")


class ResultCollector:
    """Reads the results and dead-letter topics from the start; first arrival per item id.

    ``arrivals`` is when this reader got a result (what a downstream consumer sees);
    ``produced`` is the result record's own timestamp, when the system under test sent it,
    which does not depend on how often this reader polls.
    """

    def __init__(self, bootstrap: str, results: str, dead_letter: str) -> None:
        self._bootstrap = bootstrap
        self._results = results
        self._dead = dead_letter
        self.arrivals: dict[str, float] = {}
        self.produced: dict[str, float] = {}
        self.dead: dict[str, float] = {}
        self.reasons: dict[str, str] = {}  # each dead letter's reason header
        self.labels: dict[str, object] = {}  # each result's label, checked against the expected
        self.versions: dict[str, object] = {}  # each result's first policy version
        self.duplicates = 0
        self._awaited: set[str] = set()  # ids wait_for still waits for
        self._all_in = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> ResultCollector:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        await consumer.start()
        parts = []
        for topic in (self._results, self._dead):
            ids = consumer.partitions_for_topic(topic)
            while not ids:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                ids = consumer.partitions_for_topic(topic)
            parts += [TopicPartition(topic, p) for p in ids]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        self._consumer = consumer
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    seen = self.dead if record.topic == self._dead else self.arrivals
                    if key in self.arrivals or key in self.dead:
                        self.duplicates += 1
                    else:
                        seen[key] = now
                        self.produced[key] = record.timestamp / 1000
                        if seen is self.arrivals:
                            label, version = _label_and_version(record.value)
                            self.labels[key], self.versions[key] = label, version
                        else:
                            self.reasons[key] = _reason(record.headers)
                        self._awaited.discard(key)
            if not self._awaited:
                self._all_in.set()

    async def wait_for(self, ids: Sequence[str], timeout_s: float) -> int:
        """Wait until every id has a result or a dead letter; return how many are missing."""
        self._awaited = {i for i in ids if i not in self.arrivals and i not in self.dead}
        self._all_in.clear()
        if self._awaited:
            reader = self._task
            assert reader is not None
            waiter = asyncio.ensure_future(self._all_in.wait())
            await asyncio.wait({waiter, reader}, timeout=timeout_s, return_when="FIRST_COMPLETED")
            waiter.cancel()
            if reader.done():
                reader.result()  # re-raise what stopped the reader
        missing, self._awaited = len(self._awaited), set()
        return missing

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
