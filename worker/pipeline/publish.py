"""Publishing an item's outcome: send, wait for every ack, then complete its offset.

A send error is translated once (kafka.translated) and its type decides: retry what is
retriable (brokers out of reach, within kafka.connect_retry_s: a retry may duplicate an
output, never lose one), reject a record the broker will never take (Rejected: the item
ends as a dead letter instead), or stop the worker (anything else, or a spent budget).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord

from ..config import Settings
from ..errors import FatalError, Rejected, WorkerError
from ..events import Verdict
from ..kafka import backoff, translated
from ..observability import metrics, tracing
from ..observability.telemetry import content_field
from ..retry import retriable, retry
from ..scoring.classify import Scored
from .intake import Item
from .offsets import PartitionOffsets
from .outcomes import (
    DeadLetterOutcome,
    OutputRecord,
    dead_letter,
    outcome,
    refused_verdict,
    slim_dead_letter,
)

log = structlog.get_logger("worker.pipeline")


class Sender:
    """Hands output records to the producer and completes their source offset once acked."""

    def __init__(
        self, producer: AIOKafkaProducer, settings: Settings, on_done: Callable[[], None]
    ) -> None:
        self._producer = producer
        self._kafka = settings.kafka
        self._on_done = on_done  # called after each completed offset
        # One coroutine at a time hands records to the producer: concurrent senders all wake
        # whenever a partition's batch drains and retry in turn, which costs more than the send.
        self._lock = asyncio.Lock()
        self.trouble: str | None = None  # why publishing is waiting for the brokers

    async def send(
        self,
        records: list[OutputRecord],
        offsets: PartitionOffsets,
        source: ConsumerRecord,
        message: tracing.MessageTrace,
    ) -> None:
        """Raises Rejected (a record the broker will never take) or FatalError."""
        try:
            await retry(
                lambda: self._produce(records, message, source),
                lambda: backoff(self._kafka),
                retriable,
                lambda exc, _: self._troubled(exc, source),
            )
        except WorkerError as error:
            if isinstance(error, Rejected):
                raise
            message.end(error.__cause__ or error)
            raise FatalError(str(error)) from error.__cause__
        if self.trouble is not None:
            self.trouble = None
            log.info("publishing recovered")
        message.end()
        self.complete(offsets, source.offset)

    def complete(self, offsets: PartitionOffsets, offset: int) -> None:
        offsets.complete(offset)
        self._on_done()

    def _troubled(self, error: Exception, source: ConsumerRecord) -> None:
        if self.trouble is None:  # once per outage, not once per record
            log.warning("publishing is failing; retrying", source=_where(source), error=str(error))
        self.trouble = f"publishing is failing ({type(error.__cause__).__name__}); retrying"

    async def _produce(
        self, records: list[OutputRecord], message: tracing.MessageTrace, source: ConsumerRecord
    ) -> None:
        with translated(f"publishing for {_where(source)}"):
            with tracing.sending(message, records) as traced:
                async with self._lock:
                    futures = [
                        await self._producer.send(topic, value=value, key=key, headers=headers)
                        for topic, key, value, headers in traced
                    ]
                await _all_acked(futures)


class Outputs:
    """An item's verdict and review copy, or its dead letter, on their topics."""

    def __init__(self, sender: Sender, settings: Settings, model: str) -> None:
        self._sender = sender
        self._settings = settings
        self._model = model

    async def verdict(self, item: Item, scored: Scored, debug: bool) -> Verdict | None:
        """Publish one item's outcome; its verdict once acknowledged, None if dead-lettered."""
        result = outcome(scored, self._model, item.record, self._settings)
        if isinstance(result, DeadLetterOutcome):
            await self.dead_letter(item.record, item.offsets, result, item.trace)
            return None
        try:
            await self._sender.send(result.records, item.offsets, item.record, item.trace)
        except Rejected as refused:
            letter = refused_verdict(item.record, refused, self._settings.topics.dead_letter)
            await self.dead_letter(item.record, item.offsets, letter, item.trace)
            return None
        metrics.record_end_to_end(item.job.event.created_at, item.record.timestamp)
        metrics.record_shadow(result.shadows)
        if debug:
            self._log_published(item, result.verdict)
        return result.verdict

    def rejected(self, record: ConsumerRecord, error: Rejected) -> DeadLetterOutcome:
        return dead_letter(record, error, self._settings.topics.dead_letter)

    async def dead_letter(
        self,
        record: ConsumerRecord,
        offsets: PartitionOffsets,
        letter: DeadLetterOutcome,
        message: tracing.MessageTrace,
        through: int | None = None,
    ) -> None:
        """Publish a dead letter; ``through``: the last offset it also stands for."""
        kind = letter.error.kind
        tracing.annotate(message, dead_letter_reason=kind)
        with tracing.activate(message):
            log.info(
                "dead letter",
                reason=kind,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                detail=letter.error.reason[:300],
                **content_field(self._settings.log, record.value),
            )
        try:
            await self._sender.send(letter.records, offsets, record, message)
        except Rejected as refused:
            # Were this fatal, one oversized event would stop the partition for good.
            slim = slim_dead_letter(record, letter, refused.reason)
            try:
                await self._sender.send([slim], offsets, record, message)
            except Rejected as again:
                message.end(again)
                raise FatalError(
                    f"dead letter for {record.topic}[{record.partition}]@{record.offset} "
                    f"could not be published: {again}"
                ) from again
        if through is not None:
            self._sender.complete(offsets, through)
        metrics.record_dead_letter(kind)

    def _log_published(self, item: Item, verdict: Verdict) -> None:
        with tracing.activate(item.trace):
            log.debug(
                "verdict published",
                id=verdict.id,
                label=verdict.label,
                route=verdict.route,
                topic=item.record.topic,
                partition=item.record.partition,
                offset=item.record.offset,
                **content_field(self._settings.log, item.job.event.content),
            )


def _where(source: ConsumerRecord) -> str:
    return f"{source.topic}[{source.partition}]@{source.offset}"


def debug_enabled() -> bool:
    """Checked once a batch: each check binds a logger."""
    return log.is_enabled_for(logging.DEBUG)


async def _all_acked(futures: list[asyncio.Future[Any]]) -> None:
    """Wait for each ack in turn: for an item's one or two records, cheaper than gather."""
    for n, future in enumerate(futures):
        try:
            await future
        except BaseException:
            for rest in futures[n + 1 :]:  # as gather does: their errors are not news
                rest.add_done_callback(_retrieve)
            raise


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
