"""Reading review records and decisions for ``eval decisions``: from a JSONL file or a topic.

A source is a file when such a file exists, otherwise a topic on the configured brokers, read
from its beginning to the end it had when reading began. Bad decisions read from a topic are
dead-lettered with their reason, like every other input; from a file they are listed in the
report by line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ...config import Settings
from ...errors import WorkerError
from ...events import BadEvent
from ...kafka import BrokersRefused, BrokersTrouble, client_options, start_producer, translated
from ...pipeline import outcomes
from .dataset import DatasetError, read_lines


class SourceError(WorkerError):
    """A source that cannot be read at all; the message says which and why."""


@dataclass(frozen=True)
class Raw:
    """One record's value and where it came from (``record`` is set for topic records)."""

    value: bytes | None
    where: str
    record: ConsumerRecord | None = None


async def read_source(settings: Settings, source: str, timeout_s: float = 30.0) -> list[Raw]:
    path = Path(source)
    if await asyncio.to_thread(path.is_file):
        return await asyncio.to_thread(_read_file, path)
    try:
        with translated(f"reading topic {source}"):
            return await asyncio.wait_for(_read_topic(settings, source), timeout_s)
    except TimeoutError:
        raise SourceError(
            f"{source} is not a file, and reading it as a topic from "
            f"{settings.kafka.bootstrap_servers} took longer than {timeout_s:g} s"
        ) from None
    except (BrokersTrouble, BrokersRefused) as exc:
        raise SourceError(str(exc)) from None


def _read_file(path: Path) -> list[Raw]:
    try:
        lines = read_lines(path)
    except DatasetError as exc:
        raise SourceError(str(exc)) from None
    return [Raw(line, f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]


async def _read_topic(settings: Settings, topic: str, idle_s: float = 1.0) -> list[Raw]:
    """Every record up to the end offsets seen at the start, then until a fetch finds none.

    The idle fetch is there because a broker's end offset can lag what it serves: the
    embedded test broker reports one past the last batch's first offset.
    """
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        numbers = await _partitions(consumer, topic, settings.kafka.bootstrap_servers)
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[Raw] = []
        while True:
            batch = await consumer.getmany(timeout_ms=round(idle_s * 1000))
            out.extend(
                Raw(r.value, f"{r.topic}[{r.partition}]@{r.offset}", r)
                for records in batch.values()
                for r in records
            )
            behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not batch and not behind:
                return out
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, bootstrap: str) -> set[int]:
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        topics = await consumer.topics()  # refreshes metadata
        numbers = consumer.partitions_for_topic(topic) if topic in topics else None
    if not numbers:
        raise SourceError(f"{topic} is neither a file nor a topic on {bootstrap}")
    return numbers


async def dead_letter(settings: Settings, bad: Sequence[tuple[Raw, BadEvent]]) -> int:
    """Publish topic records that failed to decode to the dead-letter topic; how many."""
    from_topics = [(raw.record, error) for raw, error in bad if raw.record is not None]
    if not from_topics:
        return 0
    producer = await start_producer(settings.kafka)
    try:
        futures = []
        for record, error in from_topics:
            letter = outcomes.dead_letter(record, error, settings.topics.dead_letter)
            for topic, key, value, headers in letter.records:
                futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(from_topics)
