"""consume → batch → classify → route → publish → commit.

One ``Worker`` owns a consumer, a producer and a classifier. Records become work items or
dead letters as they arrive; items are grouped into micro-batches and scored by the engine;
each item's verdict (and review copy) is published, and its offset completes only when the
broker has acknowledged every record produced for it. Commits follow the contiguous prefix
of completed offsets per partition, so a crash at any point redelivers rather than loses.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from . import metrics, shadow, tracing
from .audit import audit_sample
from .catalog import Catalog
from .classify import Job, Scored, build_verdict, score_jobs
from .config import Settings
from .engine import Classifier, EngineError
from .events import (
    DEAD_LETTER_PREFIX,
    BadEvent,
    Header,
    ReviewRecord,
    Source,
    Verdict,
    dead_letter_headers,
    decode_event,
)
from .kafka import Backoff, backoff, record_rejected, unreachable
from .offsets import TP, OffsetTracker, PartitionOffsets
from .policies import PolicyError
from .telemetry import content_field
from .undecodable import BATCH_ERRORS, UNDECODABLE_ERRORS, Undecodable, describe, fetch_batch_span
from .verdict_cache import make_cache

log = structlog.get_logger("worker.pipeline")

YOUNG_GC_THRESHOLD = 7_000  # allocations between young collections while a worker runs


class FatalError(Exception):
    """The worker cannot go on safely (engine gone, broker refusing our output)."""


class RecordRejected(Exception):
    """The broker will never take this output record (too large, invalid): dead-letter it."""


@dataclass(eq=False)
class Item:
    record: ConsumerRecord
    offsets: PartitionOffsets
    job: Job
    trace: tracing.MessageTrace

    @property
    def source(self) -> Source:
        record = self.record  # the broker's own coordinates: nothing to validate
        return Source.model_construct(
            topic=record.topic, partition=record.partition, offset=record.offset
        )


class Worker:
    def __init__(
        self,
        settings: Settings,
        classifier: Classifier,
        catalog: Catalog,
        consumer_factory: Callable[[ConsumerRebalanceListener], Awaitable[AIOKafkaConsumer]],
        producer: AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.catalog = catalog
        self._consumer_factory = consumer_factory
        self._producer = producer
        self._consumer: AIOKafkaConsumer | None = None
        self._tracker = OffsetTracker()
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._paused = False
        self._commit_wanted = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever an offset completes
        # One coroutine at a time hands records to the producer: concurrent senders all wake
        # whenever a partition's batch drains and retry in turn, which costs more than the send.
        self._send_lock = asyncio.Lock()
        self._broker_trouble: str | None = None  # why publishing is waiting for the brokers
        self.assigned = asyncio.Event()
        self._gauges = metrics.WorkerGauges()
        self._cache = make_cache(settings.cache)  # None when cache.enabled is false

    # ---- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful drain (SIGTERM)."""
        self._stopping.set()

    def swap_catalog(self, catalog: Catalog) -> None:
        """New policies apply to events consumed from now on."""
        self.catalog = catalog

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        with _collector_tuned():
            return await self._run()

    async def _run(self) -> int:
        self._consumer = await self._consumer_factory(_Rebalance(self))
        batcher = asyncio.create_task(self._batch_loop(), name="batcher")
        committer = asyncio.create_task(self._commit_loop(), name="committer")
        try:
            await self._consume_loop()
            if self._fatal is None:
                await self._drain(self.settings.drain_deadline_s)
        finally:
            batcher.cancel()
            committer.cancel()
            await asyncio.gather(batcher, committer, return_exceptions=True)
            await self._commit()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._consumer.stop()
            self._gauges.close()
        if self._fatal is not None:
            log.error("worker stopped on a fatal error", error=str(self._fatal))
            return 1
        log.info("worker stopped cleanly")
        return 0

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.error("fatal error; stopping without committing unpublished work", error=str(exc))
        self._stopping.set()
        self._progress.set()

    async def _drain(self, deadline_s: float) -> None:
        """Let in-flight work finish, bounded by the drain deadline."""
        left = await self._wait_idle(None, deadline_s)
        if left:
            log.warning("drain deadline passed; in-flight work will be redelivered", items=left)

    async def _wait_idle(self, tps: set[TP] | None, timeout_s: float) -> int:
        """Wait until nothing is in flight for ``tps`` (all when None); return what is left."""
        deadline = time.monotonic() + timeout_s
        while (left := self._tracker.in_flight(tps)) and self._fatal is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return left
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                pass
        return self._tracker.in_flight(tps)

    # ---- consume ---------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        max_in_flight = self.settings.batch.max_in_flight
        while not self._stopping.is_set():
            room = max_in_flight - self._tracker.in_flight()
            self._apply_backpressure(room)
            try:
                # Still polled while paused: aiokafka counts max_poll_interval from getmany.
                batches = await consumer.getmany(timeout_ms=100, max_records=max(room, 1))
            except UNDECODABLE_ERRORS:  # before KafkaError: retrying these never helps
                await self._skip_undecodable()
                continue
            except KafkaError as exc:
                log.warning("fetch failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            self._take(batches)
            await self._gauges.sample(consumer, self._tracker.in_flight())

    async def _skip_undecodable(self) -> None:
        """Get past records aiokafka cannot decode, losing nothing around them.

        A header key that is not UTF-8, a batch whose CRC does not match or whose codec the
        client cannot read: each makes every fetch of its partition fail at the same
        offset, which would stop that partition for good. The failed call has also dropped
        what it had already taken from other partitions, after moving their positions on:
        every partition is first put back after the last record this worker took. Then each
        is fetched alone (a failure then moves nothing); in the failing one, records are
        taken one by one up to the undecodable one, which is dead-lettered by its
        coordinates (its contents cannot be read) and stepped over. Records after it in
        the same producer batch fail with it and are dead-lettered the same way, in turn;
        a batch that cannot be read at all is dead-lettered and stepped over whole.
        """
        consumer = self._consumer
        assert consumer is not None
        for tp in consumer.assignment():
            start = await self._next_to_take(tp)
            if start is not None:
                consumer.seek(tp, start)
        for tp in consumer.assignment() - consumer.paused():
            room = max(self.settings.batch.max_in_flight - self._tracker.in_flight(), 1)
            try:
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=room)
            except UNDECODABLE_ERRORS:
                await self._step_to_undecodable(tp)
                continue
            self._take(batches)

    async def _step_to_undecodable(self, tp: TopicPartition) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
            except UNDECODABLE_ERRORS as exc:
                offset = await consumer.position(tp)
                bad = await self._undecodable_span(tp, offset, exc)
                self._dead_letter_undecodable(tp, bad)
                consumer.seek(tp, bad.last + 1)
                return
            if not batches:
                return
            self._take(batches)

    async def _undecodable_span(
        self, tp: TopicPartition, offset: int, exc: Exception
    ) -> Undecodable:
        """The offsets one failure covers: a whole batch for batch errors, else one record."""
        span = None
        if isinstance(exc, BATCH_ERRORS):
            span = await fetch_batch_span(self.settings.kafka, tp, offset)
        first, last = span or (offset, offset)  # unknown extent: step one offset at a time
        return describe(exc, first, last)

    async def _next_to_take(self, tp: TopicPartition) -> int | None:
        """The offset after the last record taken from ``tp`` (None when not knowable)."""
        consumer = self._consumer
        assert consumer is not None
        part = self._tracker.partition((tp.topic, tp.partition))
        if part.pending:
            return part.pending[-1] + 1
        if part.position is not None:
            return part.position
        committed = await consumer.committed(tp)  # nothing taken yet: it started here
        if committed is not None:
            return committed
        if self.settings.kafka.auto_offset_reset == "earliest":
            return (await consumer.beginning_offsets([tp]))[tp]
        return None

    def _dead_letter_undecodable(self, tp: TopicPartition, bad: Undecodable) -> None:
        record = ConsumerRecord(
            topic=tp.topic, partition=tp.partition, offset=bad.first, timestamp=-1,
            timestamp_type=0, key=None, value=b"", checksum=None,
            serialized_key_size=-1, serialized_value_size=-1, headers=[],
        )  # fmt: skip
        offsets = self._tracker.partition((tp.topic, tp.partition))
        offsets.track(bad.first)
        message = tracing.start_process(record, self.settings.kafka.group_id)
        error = BadEvent(bad.kind, bad.reason)
        published = self._publish_dead_letter(record, offsets, error, message)
        if bad.last > bad.first:  # the commit steps past the whole batch once it is out
            offsets.track(bad.last)
            published = self._complete_after(published, offsets, bad.last)
        self._spawn(published)

    async def _complete_after(
        self, first: Awaitable[None], offsets: PartitionOffsets, offset: int
    ) -> None:
        await first
        offsets.complete(offset)
        self._commit_wanted.set()
        self._progress.set()

    def _apply_backpressure(self, room: int) -> None:
        """Pause every held partition while the in-flight bound is reached."""
        consumer = self._consumer
        assert consumer is not None
        if room <= 0:
            consumer.pause(*consumer.assignment())  # again each time: new assignments too
            self._paused = True
        elif self._paused and room >= self.settings.batch.max_in_flight // 2:
            consumer.resume(*consumer.paused())
            self._paused = False

    def _take(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batches.items():
            metrics.record_consumed(tp.topic, len(records))  # one add a fetch, not a record
            for record in records:
                self._intake(record)

    def _intake(self, record: ConsumerRecord) -> None:
        offsets = self._tracker.partition((record.topic, record.partition))
        offsets.track(record.offset)
        message = tracing.start_process(record, self.settings.kafka.group_id)
        try:
            event = decode_event(record.value)
            try:
                entries = self.catalog.resolve(event.policies)
            except PolicyError as exc:
                raise BadEvent("unknown_policy", str(exc)) from None
        except BadEvent as exc:
            self._spawn(self._publish_dead_letter(record, offsets, exc, message))
            return
        tracing.annotate(message, item_id=event.id)
        # Shadow policies of this event's production policies (a sampled share of events).
        drafts = shadow.shadows_for(self.catalog, entries, event.id, self.settings.shadow.sample)
        job = Job(event, entries, shadows=drafts)
        self._queue.put_nowait(Item(record, offsets, job, message))

    # ---- batch and classify ----------------------------------------------------------

    async def _batch_loop(self) -> None:
        max_items = self.settings.batch.max_items
        linger = self.settings.batch.linger_ms / 1000
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + linger
            while len(batch) < max_items:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            # Work for a partition we no longer own is abandoned: its new owner redoes it.
            live = [item for item in batch if not item.offsets.revoked]
            tracing.abandon([item.trace for item in batch if item.offsets.revoked])
            if live:
                self._spawn(self._process(live))

    async def _process(self, batch: list[Item]) -> None:
        engine = self.settings.engine
        by_job = {item.job: item for item in batch}
        try:
            with tracing.inference([i.trace for i in batch], self.classifier.model_name):
                results = await score_jobs(
                    self.classifier,
                    [item.job for item in batch],
                    engine.overlong,
                    engine.max_retries,
                    self._cache,
                )
        except EngineError as exc:
            raise FatalError(str(exc)) from exc
        metrics.record_batch(results, verdict_cache=self._cache is not None)
        debug = log.is_enabled_for(logging.DEBUG)  # once a batch: each check binds a logger
        published = await asyncio.gather(*(self._publish(by_job[r.job], r, debug) for r in results))
        # Counted once the batch is out: one add per label set instead of one per verdict.
        metrics.record_verdicts([verdict for verdict in published if verdict is not None])

    # ---- publish ---------------------------------------------------------------------

    async def _publish(self, item: Item, scored: Scored, debug: bool) -> Verdict | None:
        """Publish one item's verdict (or its dead letter); the verdict once acknowledged."""
        if scored.error is not None:
            await self._publish_dead_letter(item.record, item.offsets, scored.error, item.trace)
            return None
        verdict = build_verdict(scored, self.classifier.model_name, item.source)
        topics = self.settings.topics
        try:
            value = verdict.to_json()
        except (TypeError, ValueError) as exc:
            # decode_event refuses what JSON cannot write back (over-deep metadata); should
            # anything else slip through, one dead letter beats a worker failing on every
            # redelivery of the same record.
            error = BadEvent("publish_failed", f"the verdict cannot be written as JSON: {exc}")
            await self._publish_dead_letter(item.record, item.offsets, error, item.trace)
            return None
        key = item.job.event.id.encode()
        records: list[tuple[str, bytes | None, bytes | None, list[Header]]]
        records = [(topics.results, key, value, [])]
        review = self._review_copy(verdict)
        if review is not None:
            records.append((topics.review, key, review.to_json(), []))
        # Shadow records ride with the verdict: acknowledged before the offset completes.
        drafts = shadow.shadow_records(scored, self.classifier.model_name, item.source)
        records += [(topics.shadow, key, draft.to_json(), []) for draft in drafts]
        try:
            await self._send_all(
                records,
                item.offsets,
                item.record,
                item.trace,
            )
        except RecordRejected as exc:
            # A poison pill if retried: the item ends as a dead letter instead of a verdict.
            rejected = BadEvent("publish_failed", f"the verdict could not be published: {exc}")
            await self._publish_dead_letter(item.record, item.offsets, rejected, item.trace)
            return None
        metrics.record_end_to_end(item.job.event.created_at, item.record.timestamp)
        metrics.record_shadow(drafts)
        if debug:
            self._log_published(item, verdict)
        return verdict

    def _review_copy(self, verdict: Verdict) -> ReviewRecord | None:
        """The review-topic record for an uncertain item or an audited automatic one.

        The audit choice only adds a copy: the verdict and its route stay as they are.
        """
        if verdict.route == "review":
            return ReviewRecord.of(verdict, {})
        rates = audit_sample(verdict.id, verdict.verdicts, self.settings.routing)
        return ReviewRecord.of(verdict, rates) if rates else None

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
                **content_field(self.settings.log, item.job.event.content),
            )

    async def _publish_dead_letter(
        self,
        record: ConsumerRecord,
        offsets: PartitionOffsets,
        error: BadEvent,
        message: tracing.MessageTrace,
    ) -> None:
        headers = dead_letter_headers(
            list(record.headers),
            error.kind,
            error.reason,
            record.topic,
            record.partition,
            record.offset,
        )
        tracing.annotate(message, dead_letter_reason=error.kind)
        with tracing.activate(message):
            log.info(
                "dead letter",
                reason=error.kind,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                detail=error.reason[:300],
                **content_field(self.settings.log, record.value),
            )
        destination = self.settings.topics.dead_letter
        try:
            await self._send_all(
                [(destination, record.key, record.value, headers)], offsets, record, message
            )
        except RecordRejected as exc:
            # Too large to copy: without the original, the coordinates still lead to it. Were
            # this fatal, one oversized event would stop the partition for good.
            slim = _without_original(record, error, str(exc))
            try:
                await self._send_all([(destination, *slim)], offsets, record, message)
            except RecordRejected as again:
                message.end(again)
                raise FatalError(
                    f"dead letter for {record.topic}[{record.partition}]@{record.offset} "
                    f"could not be published: {again}"
                ) from again
        metrics.record_dead_letter(error.kind)

    async def _send_all(
        self,
        records: list[tuple[str, bytes | None, bytes | None, list[Header]]],
        offsets: PartitionOffsets,
        source: ConsumerRecord,
        message: tracing.MessageTrace,
    ) -> None:
        """Produce, wait for every ack, then mark the source offset done.

        Brokers out of reach are waited for, with backoff, for up to kafka.connect_retry_s (a
        retry may duplicate an output; never lose one). A record the broker will never take
        raises RecordRejected. Anything else is fatal.
        """
        delays: Backoff | None = None  # made on the first failure: most sends never need one
        while True:
            try:
                await self._produce(records, message)
                break
            except KafkaError as exc:
                where = f"{source.topic}[{source.partition}]@{source.offset}"
                if record_rejected(exc):
                    raise RecordRejected(f"{type(exc).__name__}: {exc}") from exc
                delays = delays or backoff(self.settings.kafka)
                delay = delays.next() if unreachable(exc) else None
                if delay is None:
                    message.end(exc)
                    raise FatalError(
                        f"publishing for {where} failed: {type(exc).__name__}: {exc}"
                    ) from exc
                if self._broker_trouble is None:  # once per outage, not once per record
                    log.warning("publishing is failing; retrying", source=where, error=str(exc))
                self._broker_trouble = f"publishing is failing ({type(exc).__name__}); retrying"
                await asyncio.sleep(delay)
        if self._broker_trouble is not None:
            self._broker_trouble = None
            log.info("publishing recovered")
        offsets.complete(source.offset)
        message.end()
        self._commit_wanted.set()
        self._progress.set()

    async def _produce(
        self,
        records: list[tuple[str, bytes | None, bytes | None, list[Header]]],
        message: tracing.MessageTrace,
    ) -> None:
        with tracing.sending(message, records) as traced:
            async with self._send_lock:
                futures = [
                    await self._producer.send(topic, value=value, key=key, headers=headers)
                    for topic, key, value, headers in traced
                ]
            await _all_acked(futures)

    # ---- commit ----------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await self._commit()
            await asyncio.sleep(0.2)  # at most five commits a second

    async def _commit(self, only: set[TP] | None = None) -> None:
        positions = self._tracker.to_commit(only)
        if not positions or self._consumer is None:
            return
        try:
            await self._consumer.commit({TopicPartition(*tp): pos for tp, pos in positions.items()})
        except KafkaError as exc:
            log.warning("commit failed; will retry with the next commit", error=str(exc))
            return
        self._tracker.mark_committed(positions)

    # ---- rebalance -------------------------------------------------------------------

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Give in-flight work of revoked partitions a short time, commit, let go."""
        await self._wait_idle(revoked, min(self.settings.drain_deadline_s, 10.0))
        await self._commit(revoked)
        self._tracker.revoke(revoked)
        log.info("partitions revoked", partitions=sorted(f"{t}[{p}]" for t, p in revoked))

    def in_flight(self) -> int:
        """Events taken from Kafka and not yet finished: at most batch.max_in_flight."""
        return self._tracker.in_flight()

    @property
    def broker_trouble(self) -> str | None:
        """Why publishes are waiting for the brokers now (readiness reports it), else None."""
        return self._broker_trouble

    @property
    def stopping(self) -> bool:
        """A drain (SIGTERM) or a fatal error has begun: no new work is taken."""
        return self._stopping.is_set()

    def held_partitions(self) -> set[TP]:
        """Partitions assigned to this worker now."""
        return (
            {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
            if self._consumer
            else set()
        )

    def on_assigned(self, assigned: set[TP]) -> None:
        log.info("partitions assigned", partitions=sorted(f"{t}[{p}]" for t, p in assigned))
        self.assigned.set()

    # ---- tasks -----------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())


_workers_running = 0  # in this process (tests run several); the first tunes, the last restores
_saved_thresholds = gc.get_threshold()


@contextmanager
def _collector_tuned() -> Iterator[None]:
    """The garbage collector set for serving while any worker of this process runs.

    Everything loaded before (engine, tokenizer, libraries: hundreds of thousands of objects)
    lives as long as the process: frozen, full collections skip it instead of walking it each
    time (0.13 ms per item of the instant-engine benchmark). And each item allocates a few
    hundred objects that die young: at the default first threshold (700) the collector ran
    every two or three items; ten times rarer holds a few thousand objects a little longer and
    saved 0.03 ms per item.
    """
    global _workers_running, _saved_thresholds
    if _workers_running == 0:
        _saved_thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(YOUNG_GC_THRESHOLD, *_saved_thresholds[1:])
    _workers_running += 1
    try:
        yield
    finally:
        _workers_running -= 1
        if _workers_running == 0:
            gc.set_threshold(*_saved_thresholds)
            gc.unfreeze()  # the collector skips frozen objects: hand them back to it


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


def _without_original(
    record: ConsumerRecord, error: BadEvent, why: str
) -> tuple[bytes | None, bytes, list[Header]]:
    """A dead letter's key, value and headers when the original is too large to copy."""
    headers = dead_letter_headers(
        [], error.kind, error.reason, record.topic, record.partition, record.offset
    )
    headers.append((DEAD_LETTER_PREFIX + "original-omitted", why[:500].encode()))
    key = record.key if record.key is not None and len(record.key) <= 1024 else None
    return key, b"", headers


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.on_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker.on_assigned({(tp.topic, tp.partition) for tp in assigned})
