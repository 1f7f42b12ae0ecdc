"""In-memory stand-ins for aiokafka's consumer and producer, for unit tests of the pipeline.

They keep only what the pipeline uses: a scripted list of fetches, a producer whose sends
fail as told, and a record of what was sent, paused and committed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from worker.catalog import Catalog, compile_catalog
from worker.config import Settings, load_settings
from worker.observability.tracing import MessageTrace, start_process
from worker.policies import load_policies

POLICIES = Path(__file__).resolve().parents[1] / "policies"
TP0 = TopicPartition("content", 0)


def settings(**overrides: dict[str, Any]) -> Settings:
    sections: dict[str, dict[str, Any]] = {
        "kafka": {"connect_retry_s": 0.2, "connect_backoff_max_s": 0.05},
        "topics": {"content": "content", "results": "results", "review": "review"},
        "batch": {"max_items": 8, "linger_ms": 1, "max_in_flight": 16},
    }
    sections["topics"]["dead_letter"] = "dlq"
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values}
    return load_settings(**sections)


def catalog(tokenizer: Any, routing: Settings | None = None) -> Catalog:
    registry = load_policies(POLICIES)
    return compile_catalog(registry, tokenizer, 4096, (routing or settings()).routing)


def record(
    value: bytes | None,
    offset: int = 0,
    key: bytes | None = b"k",
    headers: list[tuple[str, bytes]] | None = None,
    tp: TopicPartition = TP0,
) -> ConsumerRecord:
    return ConsumerRecord(
        topic=tp.topic, partition=tp.partition, offset=offset, timestamp=0, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=-1, serialized_value_size=-1,
        headers=headers or [],
    )  # fmt: skip


def event(item_id: str, content: str, **fields: Any) -> bytes:
    return orjson.dumps({"id": item_id, "content": content, **fields})


def trace(source: ConsumerRecord) -> MessageTrace:
    return start_process(source, "group")


class FakeProducer:
    """Acks every send, unless ``fail`` returns an exception for it (raised from the ack)."""

    def __init__(self, fail: Callable[[str, bytes | None], BaseException | None] = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.attempts = 0
        self._fail = fail or (lambda topic, value: None)

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[None]:
        self.attempts += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        error = self._fail(topic, value)
        if error is not None:
            future.set_exception(error)
        else:
            self.sent.append((topic, key, value, list(headers or [])))
            future.set_result(None)
        return future

    def on(self, topic: str) -> list[tuple[str, bytes | None, bytes | None, list]]:
        return [sent for sent in self.sent if sent[0] == topic]


class FakeConsumer:
    """Hands out the scripted fetches in turn, then nothing; records commits and pauses."""

    def __init__(
        self, fetches: list[list[ConsumerRecord]], tps: set[TopicPartition] = None
    ) -> None:
        self._fetches = deque(fetches)
        self._assigned = set(tps or {TP0})
        self._paused: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        self.pauses = 0
        self.stopped = False

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int = 0):
        await asyncio.sleep(0)
        if not self._fetches or self._paused:
            await asyncio.sleep(timeout_ms / 1000 / 10)
            return {}
        records = self._fetches.popleft()
        taken, rest = records[:max_records], records[max_records:]
        if rest:
            self._fetches.appendleft(rest)
        batches: dict[TopicPartition, list[ConsumerRecord]] = {}
        for one in taken:
            batches.setdefault(TopicPartition(one.topic, one.partition), []).append(one)
        return batches

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, *tps: TopicPartition) -> None:
        self.pauses += 1
        self._paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return None

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    @property
    def drained(self) -> bool:
        return not self._fetches


class LogConsumer(FakeConsumer):
    """One partition's log with a fetch position; fetching at an offset in ``bad`` raises
    UnicodeDecodeError there, as aiokafka does for a header key that is not UTF-8."""

    def __init__(self, records: list[ConsumerRecord], bad: set[int]) -> None:
        super().__init__([])
        self._log = {r.offset: r for r in records}
        self._end = max(self._log) + 1
        self._bad = bad
        self._position = 0

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int = 0):
        await asyncio.sleep(0)
        if self._position in self._bad:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        taken = []
        while len(taken) < max_records and self._position < self._end:
            if self._position in self._bad:
                break
            taken.append(self._log[self._position])
            self._position += 1
        return {TP0: taken} if taken else {}

    async def position(self, tp: TopicPartition) -> int:
        return self._position

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._position = offset

    async def committed(self, tp: TopicPartition) -> int | None:
        return None

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    @property
    def drained(self) -> bool:
        return self._position >= self._end
