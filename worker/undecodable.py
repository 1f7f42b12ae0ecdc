"""Records the Kafka client cannot decode: which offsets they cover, and why.

aiokafka refuses a whole record batch when its CRC does not match or its attributes name a
codec it cannot read, and a record whose header key is not UTF-8. Each failure repeats at
the same offset on every fetch, so the pipeline dead-letters what cannot be read by its
coordinates and steps past it. A batch is stepped over whole: its extent comes from its
header, which is readable even when its records are not.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import CorruptRecordException, KafkaError, UnsupportedCodecError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from .config import KafkaSettings
from .kafka import client_options

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
    kind: str
    reason: str


def describe(exc: BaseException, first: int, last: int) -> Undecodable:
    """What the dead letter says about offsets the client could not decode."""
    if isinstance(exc, BATCH_ERRORS):
        kind = "undecodable_batch"
        where = f"offset {first}" if first == last else f"offsets {first} to {last}"
        what = f"the record batch at {where}"
    else:
        kind, what = "undecodable_record", "this record"
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
