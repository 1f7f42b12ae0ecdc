"""Records in: fetch within the in-flight bound, decode, and hand on work items.

Each record taken is tracked at once, so its offset completes only through its verdict or
its dead letter. Records that cannot become work (bad JSON, unknown policy, bytes the
client cannot decode) go straight to the dead-letter path. Events with media go through the
media step first, each in a task of its own, so text events never wait behind a fetch;
media that cannot be had is dead-lettered from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ..catalog import Catalog
from ..config import Settings
from ..errors import DeadLetterKind, Rejected, WorkerError
from ..events import BadEvent
from ..hashbanks import BankSet
from ..kafka import translated
from ..media.step import MediaStep
from ..observability import metrics, tracing
from ..retry import Backoff
from ..scoring import shadow
from ..scoring.classify import Job, make_job
from .offsets import OffsetTracker, PartitionOffsets
from .undecodable import UNDECODABLE_ERRORS, StepOver, Undecodable

log = structlog.get_logger("worker.pipeline")
# Failed fetches are retried sooner than the brokers' start-up waits: a drain (SIGTERM)
# is noticed between attempts.
FETCH_BACKOFF_MAX_S = 2.0


@dataclass(eq=False)
class Item:
    """One consumed event on its way: its record, its offset tracker, its job and trace."""

    record: ConsumerRecord
    offsets: PartitionOffsets
    job: Job
    trace: tracing.MessageTrace


# A record refused on arrival: the dead-letter path takes it from here. The last argument,
# when not None, is the last offset the dead letter stands for (a whole undecodable batch).
Refuse = Callable[
    [ConsumerRecord, PartitionOffsets, Rejected, tracing.MessageTrace, int | None], None
]


class Flow(Enum):
    PAUSE = "pause"
    RESUME = "resume"
    KEEP = "keep"


def flow(room: int, paused: bool, max_in_flight: int) -> Flow:
    """Pause at the in-flight bound; resume once half of it is free again (not at once, so
    partitions do not flap around the bound)."""
    if room <= 0:
        return Flow.PAUSE  # again each time: partitions assigned meanwhile too
    if paused and room >= max_in_flight // 2:
        return Flow.RESUME
    return Flow.KEEP


def room_for(in_flight: int, max_in_flight: int, media_bytes: int, max_media_bytes: int) -> int:
    """Events that may be taken now: none while the media bytes held are at their bound,
    however few events are in flight (a few large videos fill memory before the count)."""
    if media_bytes >= max_media_bytes:
        return 0
    return max_in_flight - in_flight


def _signal_types(banks: BankSet | None) -> frozenset[str]:
    return banks.signal_types if banks is not None else frozenset()


class Intake:
    """Takes records from the consumer while there is room, and turns them into items."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        tracker: OffsetTracker,
        settings: Settings,
        catalog: Callable[[], Catalog],
        refuse: Refuse,
        sample: Callable[[int], None] = lambda in_flight: None,
        banks: Callable[[], BankSet | None] = lambda: None,
    ) -> None:
        self._consumer = consumer
        self._sample = sample  # told the work in flight at each fetch (the stall probe)
        self._tracker = tracker
        self._settings = settings
        self._catalog = catalog
        self._refuse = refuse
        self._paused = False
        self.items: asyncio.Queue[Item] = asyncio.Queue()
        # Media items are hashed for the signal types the banks in use hold.
        self.media = MediaStep(settings.media, wanted=lambda: _signal_types(banks()))
        self._fetching: set[asyncio.Task[None]] = set()
        self._undecodable = StepOver(consumer, tracker, settings, self.take, self._letter)

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch until ``stopping`` is set."""
        max_in_flight = self._settings.batch.max_in_flight
        gauges = metrics.WorkerGauges()
        failing: Backoff | None = None  # while fetches fail: how long to wait before the next
        try:
            while not stopping.is_set():
                in_flight = self._tracker.in_flight()
                self._sample(in_flight)
                room = room_for(
                    in_flight,
                    max_in_flight,
                    self.media.held,
                    self._settings.media.max_in_flight_bytes,
                )
                self._apply(flow(room, self._paused, max_in_flight))
                try:
                    batches = await self._fetch(room)
                except UNDECODABLE_ERRORS:  # retrying these never helps
                    await self._undecodable.skip()
                    continue
                except WorkerError as exc:
                    if not exc.retriable:
                        raise  # the supervisor ends the worker with this line
                    failing = failing or Backoff(float("inf"), FETCH_BACKOFF_MAX_S)
                    delay = failing.next() or FETCH_BACKOFF_MAX_S
                    log.warning("fetch failed; retrying", error=str(exc), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                failing = None
                self.take(batches)
                await gauges.sample(self._consumer, self._tracker.in_flight())
        finally:
            gauges.close()

    async def _fetch(self, room: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        with translated("fetching records", keep=UNDECODABLE_ERRORS):
            # Still polled while paused: aiokafka counts max_poll_interval from getmany.
            return await self._consumer.getmany(timeout_ms=100, max_records=max(room, 1))

    def _apply(self, decision: Flow) -> None:
        consumer = self._consumer
        if decision is Flow.PAUSE:
            consumer.pause(*consumer.assignment())
            self._paused = True
        elif decision is Flow.RESUME:
            consumer.resume(*consumer.paused())
            self._paused = False

    def take(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batches.items():
            metrics.record_consumed(tp.topic, len(records))  # one add a fetch, not a record
            offsets = self._tracker.partition(tp)
            for record in records:
                self._intake(record, offsets)

    def _intake(self, record: ConsumerRecord, offsets: PartitionOffsets) -> None:
        offsets.track(record.offset)
        message = tracing.start_process(record, self._settings.kafka.group_id)
        catalog = self._catalog()
        try:
            job = make_job(record.value, catalog)
        except Rejected as exc:
            self._refuse(record, offsets, exc, message, None)
            return
        tracing.annotate(message, item_id=job.event.id)
        # Shadow policies of this event's production policies (a sampled share of events).
        sample = self._settings.shadow.sample
        job.shadows = shadow.shadows_for(catalog, job.entries, job.event.id, sample)
        item = Item(record, offsets, job, message)
        if not job.event.media:
            self.items.put_nowait(item)
            return
        task = asyncio.ensure_future(self._with_media(item))
        self._fetching.add(task)
        task.add_done_callback(self._fetching.discard)

    async def _with_media(self, item: Item) -> None:
        """Fetch and decode the item's media, then hand it on; or dead-letter it."""
        media = self._settings.media
        try:
            if not media.enabled:
                raise Rejected(
                    DeadLetterKind.MEDIA_REJECTED, "media_disabled: media.enabled is false"
                )
            item.job.media = await self.media.prepare(item.job.event.media, item.trace.context)
        except Rejected as exc:
            self._refuse(item.record, item.offsets, exc, item.trace, None)
            return
        except Exception as exc:  # never lose the offset to a bug in a decoder
            log.exception("media step failed", item_id=item.job.event.id)
            error = Rejected(
                DeadLetterKind.MEDIA_REJECTED, f"media_error: {type(exc).__name__}: {exc}"
            )
            self._refuse(item.record, item.offsets, error, item.trace, None)
            return
        self.items.put_nowait(item)

    async def close(self) -> None:
        """Stop media fetches still running (their items are redelivered) and the decoders."""
        for task in self._fetching:
            task.cancel()
        await asyncio.gather(*self._fetching, return_exceptions=True)
        self.media.close()

    def release(self, items: list[Item]) -> None:
        """The items are done: their media bytes no longer count against the bound."""
        for item in items:
            if item.job.media:
                self.media.release(item.job.media)

    def _letter(self, record: ConsumerRecord, bad: Undecodable) -> None:
        offsets = self._tracker.partition(TopicPartition(record.topic, record.partition))
        offsets.track(bad.first)
        through = None
        if bad.last > bad.first:  # the commit steps past the whole batch once it is out
            offsets.track(bad.last)
            through = bad.last
        message = tracing.start_process(record, self._settings.kafka.group_id)
        self._refuse(record, offsets, BadEvent(bad.kind, bad.reason), message, through)
