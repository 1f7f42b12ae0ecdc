"""State the metrics' gauges read at scrape time: in-flight items, consumer lag, cache windows,
the engine's own report.

Scrapes run on the health server's thread, not on the worker's event loop, so gauges read
snapshots that the loop updates, never the loop's live objects.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError
from opentelemetry.metrics import CallbackOptions, Observation

PREFIX_WINDOW = 1000  # prompts the prefix-cache hit ratio is taken over
LAG_SAMPLE_INTERVAL_S = 1.0


class EngineStats(Protocol):
    """What an engine last reported about itself (``VllmClassifier.stats``)."""

    kv_cache_usage: float | None  # None until the engine has reported
    running: int
    waiting: int


class PrefixCacheWindow:
    """Cached / prompt tokens over the most recent ``size`` prompts."""

    def __init__(self, size: int = PREFIX_WINDOW) -> None:
        self._items: deque[tuple[int, int]] = deque()
        self._size = size
        self._prompt = 0
        self._cached = 0
        self._lock = threading.Lock()

    def add(self, prompt_tokens: int, cached_tokens: int) -> None:
        with self._lock:
            self._items.append((prompt_tokens, cached_tokens))
            self._prompt += prompt_tokens
            self._cached += cached_tokens
            while len(self._items) > self._size:
                old_prompt, old_cached = self._items.popleft()
                self._prompt -= old_prompt
                self._cached -= old_cached

    def ratio(self) -> float | None:
        with self._lock:
            return self._cached / self._prompt if self._prompt else None


class WorkerGauges:
    """One worker's in-flight count and per-partition lag, refreshed from its event loop."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.lag: dict[tuple[str, int], int] = {}
        self._next_sample = 0.0
        _workers.add(self)

    async def sample(self, consumer: AIOKafkaConsumer, in_flight: int) -> None:
        """Refresh at most once a second; cheap enough for every poll of the consume loop."""
        self.in_flight = in_flight
        now = time.monotonic()
        if now < self._next_sample:
            return
        self._next_sample = now + LAG_SAMPLE_INTERVAL_S
        self.lag = await consumer_lag(consumer)  # replaced whole: scrapes read it unlocked

    def close(self) -> None:
        _workers.discard(self)


async def consumer_lag(consumer: AIOKafkaConsumer) -> dict[tuple[str, int], int]:
    """Records between our fetch position and the end of each assigned partition."""
    lags = {}
    for tp in list(consumer.assignment()):
        try:
            end = _partition_end(consumer, tp)
            if end is None:  # no fetch response yet: the end is unknown
                continue
            position = await consumer.position(tp)
        except (IllegalStateError, AssertionError, KeyError):  # revoked while we looked
            continue
        lags[(tp.topic, tp.partition)] = max(0, end - position)
    return lags


def _partition_end(consumer: AIOKafkaConsumer, tp: object) -> int | None:
    # read_committed consumers cannot read past the last stable offset.
    stable = consumer.last_stable_offset(tp)
    if stable is not None and stable >= 0:
        return stable
    return consumer.highwater(tp)


_workers: weakref.WeakSet[WorkerGauges] = weakref.WeakSet()
_engines: weakref.WeakSet[EngineStats] = weakref.WeakSet()
prefix_window = PrefixCacheWindow()
verdict_cache_window = PrefixCacheWindow()  # (1 lookup, 1 if a hit) per scored pair


def watch_engine(stats: EngineStats | None) -> None:
    """Report this engine's stats on /metrics (engines without stats report nothing)."""
    if stats is not None:
        _engines.add(stats)


def observe_in_flight(_: CallbackOptions) -> Iterable[Observation]:
    workers = list(_workers)
    if workers:
        yield Observation(sum(w.in_flight for w in workers))


def observe_lag(_: CallbackOptions) -> Iterable[Observation]:
    for worker in list(_workers):
        for (topic, partition), lag in worker.lag.items():
            yield Observation(lag, {"topic": topic, "partition": str(partition)})


def observe_prefix_ratio(_: CallbackOptions) -> Iterable[Observation]:
    ratio = prefix_window.ratio()
    if ratio is not None:
        yield Observation(ratio)


def observe_verdict_cache_ratio(_: CallbackOptions) -> Iterable[Observation]:
    ratio = verdict_cache_window.ratio()
    if ratio is not None:
        yield Observation(ratio)


def observe_kv_cache(_: CallbackOptions) -> Iterable[Observation]:
    for engine in list(_engines):
        if engine.kv_cache_usage is not None:
            yield Observation(engine.kv_cache_usage)


def observe_engine_requests(_: CallbackOptions) -> Iterable[Observation]:
    for engine in list(_engines):
        if engine.kv_cache_usage is not None:  # the engine has reported at least once
            yield Observation(engine.running, {"state": "running"})
            yield Observation(engine.waiting, {"state": "waiting"})
