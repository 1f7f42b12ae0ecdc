"""Start-up and shutdown of the worker process: the order things come up and go down."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from .catalog import Catalog, check_routing, compile_catalog
from .config import Settings
from .engine import Classifier
from .kafka import ensure_topics, start_consumer, start_producer
from .pipeline import Worker
from .policies import PolicyError, load_policies

log = structlog.get_logger("worker.app")

ClassifierFactory = Callable[[Settings], Awaitable[Classifier]]


async def start_classifier(settings: Settings) -> Classifier:
    from .engine.vllm import VllmClassifier

    return await VllmClassifier.start(settings.engine)


def load_catalog(settings: Settings, classifier: Classifier) -> Catalog:
    registry = load_policies(settings.policies.dir, settings.policies.default)
    return compile_catalog(
        registry, classifier.tokenizer, classifier.max_model_len, settings.routing
    )


async def run_worker(
    settings: Settings, classifier_factory: ClassifierFactory = start_classifier
) -> int:
    """The whole process: engine, policies, Kafka clients, worker loop. Returns exit code."""
    # Policies are checked before the engine loads so a bad pack fails in a second, not a minute.
    check_routing(load_policies(settings.policies.dir, settings.policies.default), settings.routing)
    classifier = await classifier_factory(settings)
    try:
        async with open_worker(settings, classifier) as worker:
            _install_signal_handlers(worker)
            return await worker.run()
    finally:
        classifier.close()


@asynccontextmanager
async def open_worker(settings: Settings, classifier: Classifier) -> AsyncIterator[Worker]:
    """A ready-to-run Worker on a started producer, with policy watching while it lives."""
    catalog = load_catalog(settings, classifier)
    log.info("policies loaded", policies=sorted(catalog.entries))
    await ensure_topics(settings)
    producer = await start_producer(settings.kafka)
    try:
        worker = Worker(
            settings,
            classifier,
            catalog,
            lambda listener: start_consumer(settings, listener),
            producer,
        )
        watcher = _watch_policies(settings, classifier, worker)
        try:
            yield worker
        finally:
            if watcher is not None:
                watcher.cancel()
    finally:
        await producer.stop()


def _install_signal_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)


def _watch_policies(
    settings: Settings, classifier: Classifier, worker: Worker
) -> asyncio.Task[None] | None:
    if not settings.policies.watch:
        return None
    return asyncio.create_task(_reload_on_change(settings, classifier, worker))


async def _reload_on_change(settings: Settings, classifier: Classifier, worker: Worker) -> None:
    from watchfiles import awatch

    directory = Path(settings.policies.dir)
    # ConfigMaps update by swapping a symlink; watching the directory sees the swap.
    async for _ in awatch(directory, recursive=True, force_polling=True, poll_delay_ms=500):
        try:
            catalog = load_catalog(settings, classifier)
        except (PolicyError, ValueError) as exc:
            log.error("policy reload rejected; keeping the previous policies", error=str(exc))
            continue
        worker.swap_catalog(catalog)
        log.info(
            "policies reloaded",
            versions={pid: e.policy.version[:12] for pid, e in catalog.entries.items()},
        )
