"""Start-up and shutdown of the worker process: the order things come up and go down."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from .catalog import Catalog
from .config import Settings
from .engine import Classifier
from .engine.factory import start_classifier as start_engine
from .errors import WorkerError
from .hashbanks import BankSet
from .hashbanks.reload import load_for_serving, reload_on_change, summary
from .kafka import (
    check_credentials,
    ensure_topics,
    retry_unreachable,
    start_consumer,
    start_producer,
)
from .observability import metrics, tracing
from .observability.health import (
    Check,
    Health,
    engine_check,
    joined_check,
    progress_check,
    serve_health,
)
from .pipeline.worker import Rebalance, Worker
from .preflight import compile_for, compile_policies

log = structlog.get_logger("worker.app")

ClassifierFactory = Callable[[Settings], Awaitable[Classifier]]


async def start_classifier(settings: Settings) -> Classifier:
    return await start_engine(settings.engine)


def load_catalog(
    settings: Settings, classifier: Classifier, previous: Catalog | None = None
) -> Catalog:
    """Raises PolicyError, or PromptError (one that names the limit to raise for a policy
    the model's context cannot hold). ``previous``: the catalog in use, on a reload."""
    tokenizer, max_model_len = classifier.tokenizer, classifier.max_model_len
    return compile_for(settings, tokenizer, max_model_len, previous=previous)


async def run_worker(
    settings: Settings, classifier_factory: ClassifierFactory = start_classifier
) -> int:
    """The whole process: engine, policies, Kafka clients, worker loop. Returns exit code."""
    # Everything that needs no engine is checked before it loads, so a mistake costs seconds,
    # not a model load per crash-loop restart: the policies, the hash banks (checked against
    # them), credentials and certificates the brokers refuse, then (below) the brokers'
    # reachability and the topics.
    catalog = compile_policies(settings)
    banks = await load_for_serving(settings.banks, catalog.registry)
    await check_credentials(settings.kafka)
    tracing.configure_tracing()
    # Probes answer from here on: /readyz says what is still loading while the engine loads.
    async with serve_health(settings.health) as health:
        brokers = _BrokerWait()
        health.set_check("consumer", brokers.check(None))
        shadow = bool(catalog.registry.shadows)
        await retry_unreachable(lambda: ensure_topics(settings, shadow), settings.kafka, brokers)
        classifier = await classifier_factory(settings)
        try:
            async with open_worker(settings, classifier, health, banks, catalog) as worker:
                _install_signal_handlers(worker)
                return await worker.run()
        finally:
            classifier.close()
            tracing.flush()


@asynccontextmanager
async def open_worker(
    settings: Settings,
    classifier: Classifier,
    health: Health | None = None,
    banks: BankSet | None = None,
    compiled: Catalog | None = None,
) -> AsyncIterator[Worker]:
    """A ready-to-run Worker on a started producer, with policy and bank watching while it
    lives.

    Without ``health`` from the caller, it serves its own health endpoints meanwhile; without
    ``banks``, it loads the configured ones. ``compiled``: the policies as start-up checks
    compiled them, whose prompts are reused when the engine's tokenizer is the same.
    """
    if health is None:
        async with serve_health(settings.health) as served:
            async with open_worker(settings, classifier, served, banks, compiled) as worker:
                yield worker
        return
    health.set_check("engine", engine_check(classifier))
    metrics.watch_engine(getattr(classifier, "stats", None))
    catalog, banks = await _load_content(settings, classifier, banks, compiled)
    health.set_check("policies", lambda: None)  # compiled; a rejected reload keeps these
    # Brokers that cannot be reached yet are waited for (kafka.connect_retry_s), not fatal.
    brokers = _BrokerWait()
    health.set_check("consumer", brokers.check(None))
    shadow = bool(catalog.registry.shadows)
    await retry_unreachable(lambda: ensure_topics(settings, shadow), settings.kafka, brokers)
    producer = await retry_unreachable(
        lambda: start_producer(settings.kafka), settings.kafka, brokers
    )
    try:
        rebalance = Rebalance()
        consumer = await retry_unreachable(
            lambda: start_consumer(settings, rebalance), settings.kafka, brokers
        )
        try:
            worker = rebalance.worker = Worker(
                settings, classifier, catalog, consumer, producer, banks
            )
            health.set_check("consumer", brokers.check(worker))
            health.watch_progress(progress_check(worker.stalled, engine_check(classifier)))
            _watch_files(settings, classifier, worker)
            yield worker
        finally:
            await consumer.stop()  # already stopped when the worker ran
    finally:
        await producer.stop()


async def _load_content(
    settings: Settings, classifier: Classifier, banks: BankSet | None, compiled: Catalog | None
) -> tuple[Catalog, BankSet | None]:
    """The policies compiled for this engine (reusing ``compiled``'s prompts where they
    match), and the hash banks (the caller's, else the configured ones)."""
    catalog = load_catalog(settings, classifier, compiled)
    log.info("policies loaded", policies=sorted(catalog.entries))
    if banks is None:
        banks = await load_for_serving(settings.banks, catalog.registry)
    if banks is not None:
        log.info("hash banks loaded", entries=summary(banks), pdq_hashes=banks.pdq_hashes)
        # The first PDQ lookup compiles its loop (numba): done here, off the event loop and
        # before the first event, and never before the engine started (numba breaks it).
        await asyncio.to_thread(banks.warm)
    return catalog, banks


def _watch_files(settings: Settings, classifier: Classifier, worker: Worker) -> None:
    """Reload policies and banks when their directories change, as loops of the worker."""
    if settings.policies.watch:
        worker.also_run(
            "policy watch loop", lambda: _reload_on_change(settings, classifier, worker)
        )
    if settings.banks.dir is not None and settings.banks.watch:
        worker.also_run(
            "bank watch loop",
            lambda: reload_on_change(
                settings.banks,
                lambda: worker.catalog.registry,
                worker.swap_banks,
                lambda ok: metrics.record_bank_reload(ok=ok),
            ),
        )


class _BrokerWait:
    """Readiness while the brokers are out of reach: at start-up, or when publishes fail."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, reason: str | None) -> None:
        self.reason = reason

    def check(self, worker: Worker | None) -> Check:
        joined = joined_check(worker.assigned) if worker else None

        def check() -> str | None:
            if self.reason is not None:
                return f"waiting for brokers: {self.reason}"
            if worker is None or joined is None:
                return "consumer has not joined its group yet"
            if worker.stopping:
                return "stopping: draining in-flight work"
            return worker.broker_trouble or joined()

        return check


def _install_signal_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)


async def _reload_on_change(settings: Settings, classifier: Classifier, worker: Worker) -> None:
    from watchfiles import awatch

    directory = Path(settings.policies.dir)
    # Reloads run in a thread of their own, one reload at a time: only changed files are
    # parsed and compiled again. A pack rewritten whole is seconds of CPU: its compile runs
    # in a process of its own at a lower priority (compile_process.py). The thread keeps the
    # normal one: descheduled while it holds the GIL, it would keep the event loop waiting.
    reloads = ThreadPoolExecutor(1, "policy-reload")
    loop = asyncio.get_running_loop()
    try:
        # ConfigMaps update by swapping a symlink; watching the directory sees the swap.
        async for _ in awatch(directory, recursive=True, force_polling=True, poll_delay_ms=500):
            before = worker.catalog
            try:
                catalog = await loop.run_in_executor(
                    reloads, load_catalog, settings, classifier, before
                )
                if catalog.registry.shadows and not before.registry.shadows:
                    await ensure_topics(settings, shadow=True)  # the first shadow's topic
            except WorkerError as exc:
                log.error("policy reload rejected; keeping the previous policies", error=str(exc))
                metrics.record_policy_reload(ok=False)
                continue
            worker.swap_catalog(catalog)
            metrics.record_policy_reload(ok=True)
            log.info("policies reloaded", **reload_summary(before, catalog))
    finally:
        reloads.shutdown(wait=False, cancel_futures=True)


def reload_summary(before: Catalog, after: Catalog, named: int = 20) -> dict[str, object]:
    """What a reload changed, for its log line: counts, and the first ``named`` changed
    policies' new versions (a pack of thousands would otherwise make one huge line)."""
    old = {pid: e.policy.version for pid, e in before.entries.items()}
    changed = {
        pid: e.policy.version[:12]
        for pid, e in sorted(after.entries.items())
        if old.get(pid) != e.policy.version
    }
    removed = sorted(set(old) - set(after.entries))
    return {
        "policies": len(after.entries),
        "changed": len(changed),
        "versions": dict(list(changed.items())[:named]),
        "removed": removed[:named],
    }
