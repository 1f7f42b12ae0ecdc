"""Records the Kafka client cannot decode: which offsets they cover, why, and getting past
them losing nothing around them.

aiokafka refuses a whole record batch when its CRC does not match or its attributes name a
codec it cannot read, and a record whose header key is not UTF-8. Each failure repeats at
the same offset on every fetch, which would stop that partition for good, so the intake
dead-letters what cannot be read by its coordinates and steps past it. A batch is stepped
over whole: its extent comes from its header, which is readable even when its records are
not.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import CorruptRecordException, KafkaError, UnsupportedCodecError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from ..config import KafkaSettings, Settings
from ..errors import DeadLetterKind
from ..kafka import client_options
from .offsets import OffsetTracker

# Errors a fetch raises for stored data that will never decode: retrying cannot help.
BATCH_ERRORS = (CorruptRecordException, UnsupportedCodecError)
UNDECODABLE_ERRORS = (UnicodeDecodeError, *BATCH_ERRORS)

_SPAN_FETCH_BYTES = 1 << 20  # the broker returns the first batch whole even when larger
# The batch is there, so the answer comes at once; a wait of 0 got an empty answer from the
# embedded broker (Tansu), a wait as the consumer's own fetches use works on every broker.
_SPAN_FETCH_WAIT_MS = 500


@dataclass(frozen=True)
class Undecodable:
    """Offsets ``first`` to ``last`` of one partition cannot be read: the dead letter's
    error type (``kind``) and ``reason``."""

    first: int
    last: int
    kind: DeadLetterKind
    reason: str


def describe(exc: BaseException, first: int, last: int) -> Undecodable:
    """What the dead letter says about offsets the client could not decode."""
    if isinstance(exc, BATCH_ERRORS):
        kind = DeadLetterKind.UNDECODABLE_BATCH
        where = f"offset {first}" if first == last else f"offsets {first} to {last}"
        what = f"the record batch at {where}"
    else:
        kind, what = DeadLetterKind.UNDECODABLE_RECORD, "this record"
    reason = f"the Kafka client cannot decode {what}: {type(exc).__name__}: {exc}"
    return Undecodable(first, last, kind, reason)


def batch_span(data: bytes, offset: int) -> tuple[int, int] | None:
    """First and last offset of the batch holding ``offset`` in a fetch's record bytes.

    Only batch headers are read: no CRC check, no decompression.
    """
    try:
        records = MemoryRecords(data)
        while records.has_next():
            batch = records.next_batch()
            if batch is None:
                return None
            if batch.next_offset > offset:
                # A legacy (v0/v1) wrapper message knows only its last offset.
                first = getattr(batch, "base_offset", offset)
                return max(first, offset), batch.next_offset - 1
    except (CorruptRecordException, struct.error):
        return None  # a header too short or garbled to trust
    return None


async def fetch_batch_span(
    kafka: KafkaSettings, tp: TopicPartition, offset: int
) -> tuple[int, int] | None:
    """Ask the partition's leader for the raw batch at ``offset``; None when it cannot tell.

    A short-lived client of its own: the consumer's decodes every record it fetches, which
    is exactly what fails here.
    """
    client = AIOKafkaClient(**client_options(kafka))
    try:
        await client.bootstrap()
        client.add_topic(tp.topic)
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            return None
        request = FetchRequest(
            _SPAN_FETCH_WAIT_MS,
            1,
            _SPAN_FETCH_BYTES,
            0,
            [(tp.topic, [(tp.partition, offset, _SPAN_FETCH_BYTES)])],
        )
        response = await client.send(leader, request)
    except (KafkaError, OSError, TimeoutError):
        return None
    finally:
        await client.close()
    for _topic, partitions in response.topics:
        for partition, error_code, _highwater, *part_data in partitions:
            if partition == tp.partition and error_code == 0:
                return batch_span(bytes(part_data[-1]), offset)
    return None


# ---- stepping over them ---------------------------------------------------------------

Take = Callable[[dict[TopicPartition, list[ConsumerRecord]]], None]
Letter = Callable[[ConsumerRecord, Undecodable], None]


class StepOver:
    """After a fetch failed to decode: take what decodes, dead-letter what does not.

    The failed call has also dropped what it had already taken from other partitions, after
    moving their positions on: every partition is first put back after the last record this
    worker took. Then each is fetched alone (a failure then moves nothing); in the failing
    one, records are taken one by one up to the undecodable one, which is dead-lettered by
    its coordinates (its contents cannot be read) and stepped over. Records after it in the
    same producer batch fail with it and are dead-lettered the same way, in turn; a batch
    that cannot be read at all is dead-lettered and stepped over whole.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        tracker: OffsetTracker,
        settings: Settings,
        take: Take,
        letter: Letter,
    ) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._settings = settings
        self._take = take
        self._letter = letter

    async def skip(self) -> None:
        consumer = self._consumer
        for tp in consumer.assignment():
            start = await self._next_to_take(tp)
            if start is not None:
                consumer.seek(tp, start)
        for tp in consumer.assignment() - consumer.paused():
            room = max(self._settings.batch.max_in_flight - self._tracker.in_flight(), 1)
            try:
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=room)
            except UNDECODABLE_ERRORS:
                await self._step_to_undecodable(tp)
                continue
            self._take(batches)

    async def _step_to_undecodable(self, tp: TopicPartition) -> None:
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
            except UNDECODABLE_ERRORS as exc:
                offset = await consumer.position(tp)
                bad = await self._span(tp, offset, exc)
                self._letter(_coordinates(tp, bad.first), bad)
                consumer.seek(tp, bad.last + 1)
                return
            if not batches:
                return
            self._take(batches)

    async def _span(self, tp: TopicPartition, offset: int, exc: Exception) -> Undecodable:
        """The offsets one failure covers: a whole batch for batch errors, else one record."""
        span = None
        if isinstance(exc, BATCH_ERRORS):
            span = await fetch_batch_span(self._settings.kafka, tp, offset)
        first, last = span or (offset, offset)  # unknown extent: step one offset at a time
        return describe(exc, first, last)

    async def _next_to_take(self, tp: TopicPartition) -> int | None:
        """The offset after the last record taken from ``tp`` (None when not knowable)."""
        consumer = self._consumer
        part = self._tracker.partition(tp)
        if part.pending:
            return part.pending[-1] + 1
        if part.position is not None:
            return part.position
        committed = await consumer.committed(tp)  # nothing taken yet: it started here
        if committed is not None:
            return committed
        if self._settings.kafka.auto_offset_reset == "earliest":
            return (await consumer.beginning_offsets([tp]))[tp]
        return None


def _coordinates(tp: TopicPartition, offset: int) -> ConsumerRecord:
    """A stand-in record for what could not be read: only its coordinates are known."""
    return ConsumerRecord(
        topic=tp.topic, partition=tp.partition, offset=offset, timestamp=-1,
        timestamp_type=0, key=None, value=b"", checksum=None,
        serialized_key_size=-1, serialized_value_size=-1, headers=[],
    )  # fmt: skip
