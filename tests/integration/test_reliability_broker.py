"""Broker trouble: absent at start-up, or frozen mid-stream for longer than the session timeout.

Each test runs its own broker (never the session one, which other tests share) and an
in-process worker on the session engine with its real health server, so /readyz is read
over HTTP exactly as a kubelet would read it. The worker must wait with backoff, say it is
not ready and why, recover by itself and lose nothing, without spinning a core meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from worker.app import open_worker
from worker.observability.health import serve_health
from worker.tools.broker import EmbeddedBroker, free_port

from .harness import committed, event, produce, read_topic, topic_names, verdicts, worker_settings

pytestmark = pytest.mark.integration

CPU_ARGS = {"extra_args": {"enforce_eager": True, "block_size": 32}}
# Idle waiting costs a few percent of a core at most; a busy loop would cost a whole one.
MAX_CORES_WHILE_WAITING = 0.25


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _readyz(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status, await response.json()


def _settings(bootstrap: str, test_model, topics, **kafka):
    return worker_settings(
        bootstrap,
        test_model,
        topics,
        engine=CPU_ARGS,
        kafka={"connect_retry_s": 120, "connect_backoff_max_s": 2, **kafka},
        health={"enabled": True, "host": "127.0.0.1", "port": 0},
    )


def _ids(prefix: str, count: int) -> set[str]:
    return {f"{prefix}-{n}" for n in range(count)}


def _events(prefix: str, count: int) -> list:
    return [
        (
            f"{prefix}-{n}".encode(),
            event(
                f"{prefix}-{n}",
                f"item {n}" + (" with an apple" if n % 2 else ""),
                policies=["fruit"],
            ),
            [],
        )
        for n in range(count)
    ]


def _check_all_classified(results, prefix: str, count: int) -> int:
    got = verdicts(results)
    ids = [v["id"] for v in got]
    assert set(ids) == _ids(prefix, count)
    labels = {v["id"]: v["label"] for v in got}
    assert all(labels[f"{prefix}-{n}"] == n % 2 for n in range(count))
    return len(ids) - len(set(ids))


@asynccontextmanager
async def _running(worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        assert await asyncio.wait_for(task, 120) == 0


async def test_broker_absent_at_startup_is_waited_for(engine, test_model):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    topics = topic_names("absent")
    # Tansu holds a new group's first join for half the session timeout: the request
    # timeout must outlast that.
    settings = _settings(
        bootstrap, test_model, topics, session_timeout_ms=6000, request_timeout_ms=5000
    )
    async with serve_health(settings.health) as health:
        context = open_worker(settings, engine, health)
        opening = asyncio.create_task(context.__aenter__())
        cpu, wall = _cpu_seconds(), time.monotonic()
        await asyncio.sleep(8)
        cores = (_cpu_seconds() - cpu) / (time.monotonic() - wall)
        assert not opening.done(), "start-up did not wait for the broker"
        status, body = await _readyz(health.port)
        assert status == 503
        assert body["checks"]["consumer"].startswith("waiting for brokers:"), body
        assert "cannot reach brokers" in body["checks"]["consumer"]
        print(f"waiting for an absent broker: {cores:.3f} cores")
        assert cores < MAX_CORES_WHILE_WAITING

        with EmbeddedBroker(port=port) as broker:
            worker = await asyncio.wait_for(opening, 60)  # recovers by itself
            try:
                async with _running(worker):
                    await asyncio.wait_for(worker.assigned.wait(), 60)
                    status, body = await _readyz(health.port)
                    assert status == 200, body
                    await produce(broker.bootstrap_servers, topics["content"], _events("abs", 60))
                    results = await read_topic(
                        broker.bootstrap_servers, topics["results"], at_least=60, timeout=120
                    )
            finally:
                await context.__aexit__(None, None, None)
            _check_all_classified(results, "abs", 60)
            positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
            assert sum(p or 0 for p in positions.values()) == 60


async def test_broker_frozen_longer_than_the_session_timeout(engine, test_model):
    total = 2000
    topics = topic_names("frozen")
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        settings = _settings(
            bootstrap,
            test_model,
            topics,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            request_timeout_ms=5000,
        )
        pid = broker.process.pid
        try:
            async with serve_health(settings.health) as health:
                async with open_worker(settings, engine, health) as worker:
                    await produce(bootstrap, topics["content"], _events("frz", total))
                    async with _running(worker):
                        await asyncio.wait_for(worker.assigned.wait(), 60)
                        await read_topic(bootstrap, topics["results"], at_least=50, settle=0)
                        # Freeze with work in flight, so that publishes and commits stall
                        # mid-way: on an idle machine the worker can publish its whole
                        # in-flight window between two fetches.
                        await _until_in_flight(worker)
                        os.kill(pid, signal.SIGSTOP)
                        frozen_for, reason, cores = await _watch_while_frozen(health.port, 15)
                        os.kill(pid, signal.SIGCONT)
                        print(
                            f"broker frozen {frozen_for:.1f}s: {cores:.3f} cores; "
                            f"readiness said: {reason}"
                        )
                        assert reason is not None, "/readyz stayed ready while frozen"
                        assert "publishing is failing" in reason
                        assert cores < MAX_CORES_WHILE_WAITING
                        results = await read_topic(
                            bootstrap,
                            topics["results"],
                            ids=_ids("frz", total),
                            timeout=240,
                            settle=2,
                        )
                        status, body = await _readyz(health.port)
                        assert status == 200, body
        finally:
            os.kill(pid, signal.SIGCONT)  # never leave a stopped broker behind
        duplicates = _check_all_classified(results, "frz", total)
        positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
        assert sum(p or 0 for p in positions.values()) == total
    print(f"frozen broker: {len(results)} verdicts for {total} events, {duplicates} duplicates")


async def _until_in_flight(worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while worker.in_flight() == 0:
        assert time.monotonic() < deadline, "the worker never had work in flight"
        await asyncio.sleep(0.002)


async def _watch_while_frozen(port: int, seconds: float) -> tuple[float, str | None, float]:
    """Poll /readyz while the broker is frozen; the not-ready reason seen, and CPU used."""
    cpu, start = _cpu_seconds(), time.monotonic()
    reason = None
    while time.monotonic() - start < seconds:
        await asyncio.sleep(1)
        status, body = await _readyz(port)
        if status == 503 and reason is None:
            reason = body["checks"]["consumer"]
    elapsed = time.monotonic() - start
    return elapsed, reason, (_cpu_seconds() - cpu) / elapsed
