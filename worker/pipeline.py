"""consume → batch → classify → route → publish → commit.

One ``Worker`` owns a consumer, a producer and a classifier. Records become work items or
dead letters as they arrive; items are grouped into micro-batches and scored by the engine;
each item's verdict (and review copy) is published, and its offset completes only when the
broker has acknowledged every record produced for it. Commits follow the contiguous prefix
of completed offsets per partition, so a crash at any point redelivers rather than loses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from .catalog import Catalog
from .classify import Job, Scored, build_verdict, score_jobs
from .config import Settings
from .engine import Classifier, EngineError
from .events import BadEvent, Header, Source, dead_letter_headers, decode_event
from .offsets import TP, OffsetTracker, PartitionOffsets
from .policies import PolicyError

log = structlog.get_logger("worker.pipeline")

TRACE_HEADERS = ("traceparent", "tracestate")


class FatalError(Exception):
    """The worker cannot go on safely (engine gone, broker refusing our output)."""


@dataclass(eq=False)
class Item:
    record: ConsumerRecord
    offsets: PartitionOffsets
    job: Job

    @property
    def source(self) -> Source:
        return Source(
            topic=self.record.topic, partition=self.record.partition, offset=self.record.offset
        )


def trace_headers(headers: Sequence[Header]) -> list[Header]:
    return [(k, v) for k, v in headers if k in TRACE_HEADERS]


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
        self.assigned = asyncio.Event()

    # ---- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful drain (SIGTERM)."""
        self._stopping.set()

    def swap_catalog(self, catalog: Catalog) -> None:
        """New policies apply to events consumed from now on."""
        self.catalog = catalog

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
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
            except KafkaError as exc:
                log.warning("fetch failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._intake(record)

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

    def _intake(self, record: ConsumerRecord) -> None:
        offsets = self._tracker.partition((record.topic, record.partition))
        offsets.track(record.offset)
        try:
            event = decode_event(record.value)
            try:
                entries = self.catalog.resolve(event.policies)
            except PolicyError as exc:
                raise BadEvent("unknown_policy", str(exc)) from None
        except BadEvent as exc:
            self._spawn(self._publish_dead_letter(record, offsets, exc))
            return
        self._queue.put_nowait(Item(record, offsets, Job(event, entries)))

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
            if live:
                self._spawn(self._process(live))

    async def _process(self, batch: list[Item]) -> None:
        engine = self.settings.engine
        by_job = {item.job: item for item in batch}
        try:
            results = await score_jobs(
                self.classifier, [item.job for item in batch], engine.overlong, engine.max_retries
            )
        except EngineError as exc:
            raise FatalError(str(exc)) from exc
        await asyncio.gather(*(self._publish(by_job[r.job], r) for r in results))

    # ---- publish ---------------------------------------------------------------------

    async def _publish(self, item: Item, scored: Scored) -> None:
        if scored.error is not None:
            await self._publish_dead_letter(item.record, item.offsets, scored.error)
            return
        verdict = build_verdict(scored, self.classifier.model_name, item.source)
        topics = self.settings.topics
        value = verdict.to_json()
        key = item.job.event.id.encode()
        headers = trace_headers(item.record.headers)
        destinations = [topics.results]
        if verdict.route == "review":
            destinations.append(topics.review)
        await self._send_all(
            [(topic, key, value, headers) for topic in destinations], item.offsets, item.record
        )

    async def _publish_dead_letter(
        self, record: ConsumerRecord, offsets: PartitionOffsets, error: BadEvent
    ) -> None:
        headers = dead_letter_headers(
            list(record.headers),
            error.kind,
            error.reason,
            record.topic,
            record.partition,
            record.offset,
        )
        log.info(
            "dead letter",
            reason=error.kind,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            detail=error.reason[:300],
        )
        destination = self.settings.topics.dead_letter
        await self._send_all([(destination, record.key, record.value, headers)], offsets, record)

    async def _send_all(
        self,
        records: list[tuple[str, bytes | None, bytes | None, list[Header]]],
        offsets: PartitionOffsets,
        source: ConsumerRecord,
    ) -> None:
        """Produce, wait for every ack, then mark the source offset done."""
        try:
            futures = [
                await self._producer.send(topic, value=value, key=key, headers=headers)
                for topic, key, value, headers in records
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise FatalError(
                f"publishing for {source.topic}[{source.partition}]@{source.offset} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        offsets.complete(source.offset)
        self._commit_wanted.set()
        self._progress.set()

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


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.on_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker.on_assigned({(tp.topic, tp.partition) for tp in assigned})
