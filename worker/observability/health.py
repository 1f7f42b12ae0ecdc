"""The probe and scrape endpoints: /healthz, /readyz, /metrics (aiohttp).

/healthz also fails when the worker's work is stuck: items wait and no verdict, dead letter
or commit came for ``health.no_progress_after_s`` (a dead part the loop's heartbeat cannot
see).

The server runs on its own thread and event loop. The worker's loop can then be blocked
(a stuck library call, a busy CPU) and /healthz still answers, with 503 and how long the
loop has been silent, instead of timing out; /metrics keeps answering during the engine's
minute-long load. The worker's loop proves it is alive through a heartbeat task.

/readyz is ready when the engine is loaded (and alive), the policies are compiled, and the
consumer has joined its group (a member with no partitions is still ready: scaling past
the partition count must not flap readiness).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
import structlog
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from ..config import HealthSettings
from ..errors import FatalError
from .metrics import setup_metrics

log = structlog.get_logger("worker.health")

# A check returns None when its part is ready, else what is missing.
Check = Callable[[], str | None]
READINESS = ("engine", "policies", "consumer")
_NOT_YET = {
    "engine": "engine is loading",
    "policies": "policies not loaded yet",
    "consumer": "consumer has not joined its group yet",
}


class Health:
    """What the probes report: the worker loop's heartbeat and the readiness checks."""

    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self.last_beat = time.monotonic()
        self.port: int | None = None  # where the server listens, once it does
        self._stalled: Check = lambda: None  # why work does not move, once a worker runs
        self._checks: dict[str, Check] = {
            name: (lambda reason=reason: reason) for name, reason in _NOT_YET.items()
        }

    def set_check(self, name: str, check: Check) -> None:
        if name not in self._checks:
            raise ValueError(f"unknown readiness check {name!r}")
        self._checks[name] = check

    def watch_progress(self, stalled: Check) -> None:
        """Liveness also fails while ``stalled`` says why work waits and does not move."""
        self._stalled = stalled

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    async def heartbeat(self) -> None:
        """Runs on the worker's loop: a stalled loop stops beating."""
        interval = min(1.0, self.stall_after_s / 4)
        while True:
            self.beat()
            await asyncio.sleep(interval)

    def liveness(self) -> tuple[bool, dict[str, object]]:
        silent = time.monotonic() - self.last_beat
        alive = silent <= self.stall_after_s
        body: dict[str, object] = {"alive": alive, "loop_silent_s": round(silent, 3)}
        if not alive:
            body["reason"] = f"event loop silent for {silent:.1f}s (limit {self.stall_after_s}s)"
            return alive, body
        stalled = _run(self._stalled)
        if stalled is not None:
            body.update(alive=False, reason=stalled)
        return stalled is None, body

    def readiness(self) -> tuple[bool, dict[str, object]]:
        results = {name: _run(check) for name, check in self._checks.items()}
        missing = {name: reason for name, reason in results.items() if reason is not None}
        body = {
            "ready": not missing,
            "checks": {name: reason or "ok" for name, reason in results.items()},
            "missing": sorted(missing),
        }
        return not missing, body


def _run(check: Check) -> str | None:
    try:
        return check()
    except Exception as exc:  # a broken check must not take the endpoint down
        return f"check failed: {type(exc).__name__}: {exc}"


def engine_check(classifier: object) -> Check:
    """Ready while the engine is alive (engines without a ``dead`` flag are taken as alive)
    and can be reached (a remote engine says why not in ``unready``)."""

    def check() -> str | None:
        if getattr(classifier, "dead", False):
            return "engine has died"
        return getattr(classifier, "unready", None)

    return check


def progress_check(stalled: Check, excused: Check) -> Check:
    """``stalled``, except while ``excused`` names a wait a restart would not cure (a
    remote engine out of reach: readiness reports that one)."""
    return lambda: None if excused() is not None else stalled()


def joined_check(assigned: asyncio.Event) -> Check:
    return lambda: None if assigned.is_set() else _NOT_YET["consumer"]


# ---- the HTTP server ---------------------------------------------------------------


def _json(ok: bool, body: dict[str, object]) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=200 if ok else 503, content_type="application/json"
    )


def build_app(health: Health) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return _json(*health.liveness())

    async def readyz(_: web.Request) -> web.Response:
        return _json(*health.readiness())

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class HealthServerError(FatalError):
    """The health server could not listen; the message names the setting to change."""


class HealthServer:
    """aiohttp on a daemon thread with its own loop. ``port`` is the bound port."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        self._app = build_app(health)
        self._host = host
        self._requested_port = port
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._serve, name="health-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise HealthServerError("health server did not start")
        if self._error is not None:
            raise HealthServerError(
                f"health server cannot listen on {self._host}:{self._requested_port}: "
                f"{self._error}. Change health.port (env WORKER_HEALTH__PORT)."
            ) from self._error

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self._host, self._requested_port)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._started.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@asynccontextmanager
async def serve_health(settings: HealthSettings) -> AsyncIterator[Health]:
    """Health state for the worker; served on HTTP unless ``health.enabled`` is false."""
    health = Health(settings.stall_after_s)
    if not settings.enabled:
        yield health
        return
    setup_metrics()
    server = HealthServer(health, settings.host, settings.port)
    await asyncio.to_thread(server.start)
    health.port = server.port
    log.info("health server listening", host=settings.host, port=server.port)
    beating = asyncio.create_task(health.heartbeat(), name="heartbeat")
    try:
        yield health
    finally:
        beating.cancel()
        await asyncio.to_thread(server.stop)
