"""Refilling the adapter's report index from the review topic when it starts.

The index (reports.py) lives in memory, and Coop's Ignore callback names no policy: without
the index, an Ignore on an item reported before a restart cannot become decisions. So before
the callback server listens, the adapter reads the newest records of the review topic (at
most the index's size, shared between the partitions) and indexes the reports they stand
for, as ``forward`` does when it sends them. Records past the consumer group's committed
offsets are sent again by ``forward`` afterwards; indexing them early changes nothing.
Best effort: a broker that does not answer leaves the index as far as it got, with a warning.
"""

from __future__ import annotations

import asyncio

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ..config import Settings
from ..errors import WorkerError
from ..kafka import client_options, translated
from .reports import NotAReviewRecord, ReportedIndex, reports_for

log = structlog.get_logger("worker.coop")


async def refill_index(settings: Settings, index: ReportedIndex, timeout_s: float) -> int:
    """Index the reports of the review topic's newest records; returns how many."""
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    try:
        with translated("reading the review topic"):
            await consumer.start()
            return await asyncio.wait_for(_read(consumer, settings, index), timeout_s)
    except (WorkerError, TimeoutError) as exc:
        error = str(exc) if isinstance(exc, WorkerError) else f"{type(exc).__name__}: {exc}"
        log.warning("report index not refilled in full", error=error)
        return 0
    finally:
        await consumer.stop()


async def _read(consumer: AIOKafkaConsumer, settings: Settings, index: ReportedIndex) -> int:
    topic = settings.topics.review
    await consumer.topics()  # loads the metadata partitions_for_topic reads
    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return 0
    consumer.assign(partitions)
    starts = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    share = max(1, index.size // len(partitions))
    for tp in partitions:
        consumer.seek(tp, max(starts[tp], ends[tp] - share))
    pending = {tp for tp in partitions if ends[tp] > starts[tp]}
    indexed = 0
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=500)
        for records in batches.values():
            indexed += sum(_index(record, settings, index) for record in records)
        pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    return indexed


def _index(record: ConsumerRecord, settings: Settings, index: ReportedIndex) -> int:
    try:
        reports = reports_for(orjson.loads(record.value or b"null"), settings.coop)
    except (orjson.JSONDecodeError, NotAReviewRecord):
        return 0  # forward dead-lettered it: nothing was reported
    for report in reports:
        index.add(report.item, report.policy, report.reported)
    return len(reports)
