"""Systems under test. Each consumes a content topic and publishes one result per event.

A system has ``start()`` (returns once it consumes: partitions assigned) and ``stop()``
(returns what it measured about itself). The benchmark drives every system the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener

from ...app import load_catalog, open_worker
from ...config import Settings
from ...engine import Classifier
from .recorder import RecordingClassifier


class System(Protocol):
    name: str

    async def start(self) -> None: ...
    async def stop(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Spec:
    """Where a system reads and writes."""

    bootstrap: str
    topics: dict[str, str]
    group: str
    fetch_max_wait_ms: int  # the run's --fetch-max-wait-ms, for the plain consumers
    settings: dict[str, Any] = field(default_factory=dict)  # worker sections this run changes
    server_url: str | None = None  # a running OpenAI server for the remote and DIY systems
    in_flight: int = 0  # the DIY peer's bound on events in flight


class WorkerSystem:
    """The moderation worker itself, in this process, on the given classifier."""

    def __init__(self, name: str, settings: Settings, classifier: Classifier) -> None:
        self.name = name
        self.settings = settings
        self.catalog = load_catalog(settings, classifier)
        self.classifier = RecordingClassifier(classifier, self.catalog)
        self._context: Any = None
        self._task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        self._context = open_worker(self.settings, self.classifier, compiled=self.catalog)
        worker = await self._context.__aenter__()
        self._worker = worker
        self._task = asyncio.create_task(worker.run())
        assigned = asyncio.create_task(worker.assigned.wait())
        await asyncio.wait({assigned, self._task}, timeout=120, return_when="FIRST_COMPLETED")
        if self._task.done() or not assigned.done():
            assigned.cancel()
            raise RuntimeError(f"{self.name}: worker did not get partitions")

    async def stop(self) -> dict[str, Any]:
        assert self._task is not None
        self._worker.stop()
        code = await asyncio.wait_for(self._task, 120)
        await self._context.__aexit__(None, None, None)
        usage = [asdict(u) for u in self.classifier.usage]
        return {"exit_code": code, "usage": usage}


class _Assigned(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            self.event.set()


async def plain_consumer(spec: Spec, *, auto_commit: bool) -> tuple[AIOKafkaConsumer, _Assigned]:
    """A consumer as a user would write one: a group, earliest offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=spec.bootstrap,
        group_id=spec.group,
        enable_auto_commit=auto_commit,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=spec.fetch_max_wait_ms,
    )
    await consumer.start()
    listener = _Assigned()
    consumer.subscribe([spec.topics["content"]], listener=listener)
    return consumer, listener


async def plain_producer(spec: Spec) -> AIOKafkaProducer:
    # Same delivery settings as the worker's producer on this broker.
    producer = AIOKafkaProducer(bootstrap_servers=spec.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    return producer


class LoopSystem:
    """Base for systems that are one consume loop coroutine over a consumer and producer."""

    auto_commit = False

    def __init__(self, name: str, spec: Spec) -> None:
        self.name = name
        self.spec = spec
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer, assigned = await plain_consumer(self.spec, auto_commit=self.auto_commit)
        self.producer = await plain_producer(self.spec)
        self._task = asyncio.create_task(self.loop())
        # The group join happens inside the first fetch, so the loop must already run.
        waiter = asyncio.create_task(assigned.event.wait())
        await asyncio.wait({waiter, self._task}, timeout=120, return_when="FIRST_COMPLETED")
        if self._task.done() or not waiter.done():
            waiter.cancel()
            raise RuntimeError(f"{self.name}: consumer did not get partitions")

    async def loop(self) -> None:
        raise NotImplementedError

    async def stop(self) -> dict[str, Any]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()
        return self.stats()

    def stats(self) -> dict[str, Any]:
        return {}


class RawLoopSystem(LoopSystem):
    """The floor for any Kafka worker: fetch a batch, produce one small record per event,
    wait for the acks, commit. No validation, no model."""

    async def loop(self) -> None:
        results = self.spec.topics["results"]
        while True:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=500)
            futures = []
            for records in batches.values():
                for record in records:
                    item = orjson.loads(record.value)
                    value = orjson.dumps({"id": item["id"], "label": 0})
                    futures.append(await self.producer.send(results, value, key=record.key))
            if futures:
                await asyncio.gather(*futures)
                await self.consumer.commit()
