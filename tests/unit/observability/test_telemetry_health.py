"""/healthz, /readyz and /metrics on a real aiohttp server (its own thread), no broker."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request

import orjson
import pytest

from worker.config import HealthSettings
from worker.observability import metrics
from worker.observability.health import (
    Health,
    HealthServerError,
    engine_check,
    joined_check,
    progress_check,
    serve_health,
)
from worker.pipeline.progress import stall_reason


def fetch(port: int, path: str) -> tuple[int, bytes]:
    """A blocking GET, so it can run while the test blocks the event loop."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def local(**overrides) -> HealthSettings:
    return HealthSettings(host="127.0.0.1", port=0, **overrides)


# ---- the state ---------------------------------------------------------------------


def test_nothing_is_ready_at_first_and_each_part_says_why() -> None:
    ready, body = Health(30).readiness()
    assert not ready and body["missing"] == ["consumer", "engine", "policies"]
    assert body["checks"]["engine"] == "engine is loading"


def test_ready_when_every_check_passes_and_a_broken_check_is_reported() -> None:
    health = Health(30)
    joined = asyncio.Event()
    health.set_check("engine", lambda: None)
    health.set_check("policies", lambda: None)
    health.set_check("consumer", joined_check(joined))
    assert health.readiness()[1]["missing"] == ["consumer"]
    joined.set()
    assert health.readiness() == (
        True,
        {
            "ready": True,
            "checks": dict.fromkeys(("engine", "policies", "consumer"), "ok"),
            "missing": [],
        },
    )
    health.set_check("policies", lambda: 1 / 0)
    ready, body = health.readiness()
    assert not ready and body["checks"]["policies"].startswith("check failed: ZeroDivisionError")
    with pytest.raises(ValueError):
        health.set_check("database", lambda: None)


def test_a_dead_engine_is_not_ready() -> None:
    class Engine:
        dead = False

    engine = Engine()
    check = engine_check(engine)
    assert check() is None
    engine.dead = True
    assert check() == "engine has died"
    assert engine_check(object())() is None  # engines without the flag count as alive


def test_liveness_follows_the_heartbeat() -> None:
    health = Health(stall_after_s=5)
    assert health.liveness()[0]
    health.last_beat -= 6
    alive, body = health.liveness()
    assert not alive and "silent" in body["reason"] and body["loop_silent_s"] >= 6


def test_liveness_fails_while_work_waits_and_nothing_moves() -> None:
    health = Health(stall_after_s=5)
    stalled: list[str | None] = [None]
    engine_down: list[str | None] = [None]
    health.watch_progress(progress_check(lambda: stalled[0], lambda: engine_down[0]))
    assert health.liveness()[0]
    stalled[0] = "no verdict, dead letter or commit for 130.0s while 4 items wait"
    alive, body = health.liveness()
    assert not alive and body["reason"] == stalled[0]
    engine_down[0] = "engine server http://vllm:8000 unreachable"  # readiness reports it
    assert health.liveness()[0]


@pytest.mark.parametrize(
    ("waiting", "quiet_s", "stalled"),
    [(0, 999.0, False), (3, 10.0, False), (3, 10.5, True)],
)
def test_a_stall_is_waiting_work_and_nothing_moving_past_the_limit(
    waiting: int, quiet_s: float, stalled: bool
) -> None:
    reason = stall_reason(waiting, quiet_s, 10.0)
    assert (reason is not None) is stalled
    if stalled:
        assert reason.startswith(f"no verdict, dead letter or commit for {quiet_s:.1f}s")
        assert "health.no_progress_after_s" in reason


# ---- the server ----------------------------------------------------------------------


async def test_endpoints_answer_with_json_and_prometheus_text() -> None:
    async with serve_health(local()) as health:
        port = health.port
        status, body = await asyncio.to_thread(fetch, port, "/readyz")
        assert status == 503 and orjson.loads(body)["ready"] is False
        for name in ("engine", "policies", "consumer"):
            health.set_check(name, lambda: None)
        status, body = await asyncio.to_thread(fetch, port, "/readyz")
        assert status == 200 and orjson.loads(body)["ready"] is True
        status, body = await asyncio.to_thread(fetch, port, "/healthz")
        assert status == 200 and orjson.loads(body)["alive"] is True
        metrics.record_consumed("health-unit")
        status, body = await asyncio.to_thread(fetch, port, "/metrics")
        assert status == 200
        assert b'moderation_events_consumed_total{topic="health-unit"}' in body
        assert (await asyncio.to_thread(fetch, port, "/nope"))[0] == 404
    with pytest.raises(urllib.error.URLError):
        fetch(port, "/healthz")


async def test_healthz_fails_while_the_event_loop_is_stalled() -> None:
    async with serve_health(local(stall_after_s=0.5)) as health:
        await asyncio.sleep(0.3)  # let the heartbeat run
        seen: list[tuple[int, bytes]] = []
        probe = threading.Thread(
            target=lambda: (time.sleep(1.0), seen.append(fetch(health.port, "/healthz")))
        )
        probe.start()
        time.sleep(1.6)  # noqa: ASYNC251 -- blocks the loop on purpose: the probe still gets an answer
        probe.join()
        [(status, body)] = seen
        assert status == 503 and "event loop silent" in orjson.loads(body)["reason"]
        await asyncio.sleep(0.5)  # the loop runs again: the heartbeat resumes
        assert (await asyncio.to_thread(fetch, health.port, "/healthz"))[0] == 200


async def test_a_taken_port_stops_start_up_with_the_setting_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HealthServerError, match="WORKER_HEALTH__PORT"):
            async with serve_health(HealthSettings(host="127.0.0.1", port=port)):
                pass


async def test_disabled_serves_nothing() -> None:
    async with serve_health(local(enabled=False)) as health:
        assert health.port is None


def test_consumer_readiness_follows_the_worker_through_its_life():
    from types import SimpleNamespace

    from worker.app import _BrokerWait

    assigned = asyncio.Event()
    worker = SimpleNamespace(assigned=assigned, broker_trouble=None, stopping=False)
    brokers = _BrokerWait()
    check = brokers.check(worker)
    assert check() == "consumer has not joined its group yet"
    assigned.set()
    assert check() is None
    worker.broker_trouble = "publishing is failing (KafkaTimeoutError); retrying"
    assert check() == worker.broker_trouble
    worker.broker_trouble = None
    brokers("cannot reach brokers")
    assert check() == "waiting for brokers: cannot reach brokers"
    brokers(None)
    worker.stopping = True  # SIGTERM: draining, so a rollout does not count this pod as ready
    assert check() == "stopping: draining in-flight work"
