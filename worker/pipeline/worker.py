"""consume → batch → classify → route → publish → commit.

The ``Worker`` wires the parts and owns the lifecycle: ``Intake`` turns records into work
items (intake.py), ``next_batch`` groups them (batching.py), ``score_jobs`` scores a batch
(``worker.scoring.classify``), ``Outputs`` publishes each outcome, a verdict or a dead
letter (outcomes.py, publish.py), and the ``Committer`` commits the contiguous prefix of
finished offsets per partition (commits.py, offsets.py), so a crash at any point
redelivers rather than loses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.abc import ConsumerRebalanceListener

from ..catalog import Catalog
from ..config import Settings
from ..engine import Classifier
from ..errors import Rejected
from ..hashbanks import BankSet
from ..observability import metrics, tracing
from ..observability.collector import collector_tuned
from ..scoring.classify import score_jobs
from ..scoring.verdict_cache import make_cache
from ..supervise import LoopFailed, Supervisor
from .batching import next_batch
from .commits import Committer
from .intake import Intake, Item
from .offsets import TP, OffsetTracker, PartitionOffsets
from .progress import Progress
from .publish import Outputs, Sender, debug_enabled

log = structlog.get_logger("worker.pipeline")


class Worker:
    def __init__(
        self,
        settings: Settings,
        classifier: Classifier,
        catalog: Catalog,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        banks: BankSet | None = None,
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.catalog = catalog
        self.banks = banks  # None: no hash banks configured
        self._consumer = consumer
        self._tracker = OffsetTracker()
        self._stopping = asyncio.Event()
        self._progress = Progress(self._tracker)
        self._tasks: Supervisor | None = None  # the running tasks, while run() runs
        self._also: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        self._committer = Committer(consumer, self._tracker, self._progress.moved)
        self._sender = Sender(producer, settings, self._completed)
        self._outputs = Outputs(self._sender, settings, classifier.model_name)
        self._intake = Intake(
            consumer,
            self._tracker,
            settings,
            lambda: self.catalog,
            self._refuse,
            self._progress.sample,
            lambda: self.banks,
        )
        self.assigned = asyncio.Event()
        self._cache = make_cache(settings.cache)  # None when cache.enabled is false

    # ---- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful drain (SIGTERM)."""
        self._stopping.set()

    def swap_catalog(self, catalog: Catalog) -> None:
        """New policies apply to events consumed from now on."""
        self.catalog = catalog

    def also_run(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``loop`` beside the pipeline's own, supervised like them (policy watching)."""
        self._also[name] = loop

    def swap_banks(self, banks: BankSet) -> None:
        """New banks apply to batches scored from now on."""
        self.banks = banks

    async def run(self) -> int:
        """Run until stopped; return the process exit code (1 when any loop failed)."""
        with collector_tuned():
            try:
                failure = await self._supervised()
                # Only offsets whose outputs the brokers acknowledged are committed. After a
                # failure that is best effort: the loop that failed may be the commit loop.
                with contextlib.suppress(Exception) if failure else contextlib.nullcontext():
                    await self._committer.commit()
            finally:
                await self._intake.close()
                await self._consumer.stop()
        if failure is not None:
            return 1
        log.info("worker stopped cleanly")
        return 0

    async def _supervised(self) -> LoopFailed | None:
        """Run every loop until the drain ends them, or one fails (logged in one line)."""
        try:
            async with Supervisor() as tasks:
                self._tasks = tasks
                tasks.loop("batch loop", self._batch_loop())
                tasks.loop("commit loop", self._committer.run())
                for name, loop in self._also.items():
                    tasks.loop(name, loop())
                tasks.spawn("intake loop", self._intake_then_drain(tasks))
        except LoopFailed as failure:
            self._stopping.set()
            log.error(
                "worker stopped: a loop failed; unpublished work will be redelivered",
                loop=failure.loop,
                error=str(failure),
                at=failure.where,
            )
            return failure
        return None

    async def _intake_then_drain(self, tasks: Supervisor) -> None:
        await self._intake.run(self._stopping)
        left = await self._progress.wait_idle(None, self.settings.drain_deadline_s)
        if left:
            log.warning("drain deadline passed; in-flight work will be redelivered", items=left)
        tasks.finish()

    # ---- batch → classify → outputs --------------------------------------------------

    async def _batch_loop(self) -> None:
        batch_settings = self.settings.batch
        while True:
            batch = await next_batch(
                self._intake.items, batch_settings.max_items, batch_settings.linger_ms / 1000
            )
            # Work for a partition we no longer own is abandoned: its new owner redoes it.
            live = [item for item in batch if not item.offsets.revoked]
            tracing.abandon([item.trace for item in batch if item.offsets.revoked])
            self._intake.release([item for item in batch if item.offsets.revoked])
            if live:
                self._spawn("classify task", self._process(live))

    async def _process(self, batch: list[Item]) -> None:
        engine = self.settings.engine
        by_job = {item.job: item for item in batch}
        with tracing.inference([i.trace for i in batch], self.classifier.model_name):
            jobs = [item.job for item in batch]
            results = await score_jobs(
                self.classifier, jobs, engine.overlong, engine.max_retries, self._cache, self.banks
            )
        metrics.record_batch(results, verdict_cache=self._cache is not None)
        if self.banks is not None:
            metrics.record_hash_matches(results)
        debug = debug_enabled()
        outputs = self._outputs
        published = await asyncio.gather(
            *(outputs.verdict(by_job[r.job], r, debug) for r in results)
        )
        self._intake.release(batch)
        # Counted once the batch is out: one add per label set instead of one per verdict.
        metrics.record_verdicts([verdict for verdict in published if verdict is not None])

    def _refuse(
        self,
        record: ConsumerRecord,
        offsets: PartitionOffsets,
        error: Rejected,
        message: tracing.MessageTrace,
        through: int | None,
    ) -> None:
        letter = self._outputs.rejected(record, error)
        dead_letter = self._outputs.dead_letter(record, offsets, letter, message, through)
        self._spawn("dead-letter task", dead_letter)

    def _spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        assert self._tasks is not None, "work is taken only while run() runs"
        self._tasks.spawn(name, coro)

    def _completed(self) -> None:
        self._committer.want()
        self._progress.moved()

    # ---- rebalance and readiness -----------------------------------------------------

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Give in-flight work of revoked partitions a short time, commit, let go."""
        await self._progress.wait_idle(revoked, min(self.settings.drain_deadline_s, 10.0))
        await self._committer.commit(revoked)
        self._tracker.revoke(revoked)
        log.info("partitions revoked", partitions=sorted(f"{t}[{p}]" for t, p in revoked))

    def on_assigned(self, assigned: set[TP]) -> None:
        log.info("partitions assigned", partitions=sorted(f"{t}[{p}]" for t, p in assigned))
        self.assigned.set()

    def stalled(self) -> str | None:
        """Why work is stuck (liveness fails), else None. Waits with a known cause that a
        restart would not cure (publishing retrying within its budget) are not stalls."""
        if self._sender.trouble is not None:
            return None
        return self._progress.stalled(self.settings.health.no_progress_after_s)

    def in_flight(self) -> int:
        """Events taken from Kafka and not yet finished: at most batch.max_in_flight."""
        return self._tracker.in_flight()

    @property
    def broker_trouble(self) -> str | None:
        """Why publishes are waiting for the brokers now (readiness reports it), else None."""
        return self._sender.trouble

    @property
    def stopping(self) -> bool:
        """A drain (SIGTERM) or a fatal error has begun: no new work is taken."""
        return self._stopping.is_set()

    def held_partitions(self) -> set[TP]:
        """Partitions assigned to this worker now."""
        return set(self._consumer.assignment())


class Rebalance(ConsumerRebalanceListener):
    """The consumer's rebalance callbacks, passed on to the worker once it exists."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        if self.worker is not None:
            await self.worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP]) -> None:
        if self.worker is not None:
            self.worker.on_assigned(assigned)
