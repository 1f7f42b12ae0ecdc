"""Starting systems under test: in this process, or each in a subprocess of its own.

Subprocesses keep the phases apart: each engine is started, measured and closed before the
next one loads, and the load generator never shares an event loop with what it measures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from ...config import RemoteEngineSettings
from ...engine import Classifier
from ...engine.factory import instant_classifier, start_classifier
from ...subprocesses import bound_to_parent
from ..broker import free_port
from .config import BenchConfig
from .systems import RawLoopSystem, Spec, System, WorkerSystem

SYSTEMS = ("worker", "worker-remote", "worker-instant", "naive", "diy", "raw-loop")


class OwnedEngine:
    """Wraps a system so that stopping it also closes the engine or server it started."""

    def __init__(self, system: System, close: Any) -> None:
        self.name = system.name
        self._system = system
        self._close = close

    async def start(self) -> None:
        await self._system.start()

    async def stop(self) -> dict[str, Any]:
        try:
            return await self._system.stop()
        finally:
            self._close()


async def build_system(
    kind: str, config: BenchConfig, spec: Spec, classifier: Classifier | None = None
) -> System:
    """A system of ``kind`` in this process; ``classifier`` reuses a running engine."""
    settings = config.worker_settings(spec.bootstrap, spec.topics, spec.group, spec.settings)
    if kind == "raw-loop":
        return RawLoopSystem(kind, spec)
    if kind == "worker-instant":
        return WorkerSystem(kind, settings, instant_classifier(config.model))
    if kind == "worker":
        if classifier is not None:
            return WorkerSystem(kind, settings, classifier)
        engine = await start_classifier(settings.engine)
        return OwnedEngine(WorkerSystem(kind, settings, engine), engine.close)
    if kind == "worker-remote":
        return await _remote(config, spec)
    if kind == "naive":
        return await _naive(config, spec)
    if kind == "diy":
        return _diy(config, spec)
    raise ValueError(f"unknown system {kind!r}; choose from {SYSTEMS}")


async def _naive(config: BenchConfig, spec: Spec) -> System:
    from transformers import AutoTokenizer

    from ...app import load_catalog
    from .naive import NaivePeerSystem, OpenAIServer

    server = OpenAIServer(config, free_port(), config.workdir / "logs" / "openai-server.log")
    await server.start(config.wait_timeout_s)
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model)
        settings = config.worker_settings(spec.bootstrap, spec.topics, spec.group)
        catalog = load_catalog(settings, _TokenizerOnly(tokenizer, config.max_model_len))
        peer = NaivePeerSystem("naive", spec, server.url, config.model, catalog, tokenizer)
    except BaseException:
        server.stop()
        raise
    return OwnedEngine(peer, server.stop)


def _diy(config: BenchConfig, spec: Spec) -> System:
    from ...policies import load_policies
    from .diy import DiyPeerSystem

    if spec.server_url is None or spec.in_flight < 1:
        raise ValueError("the DIY peer needs a server URL and an in-flight bound")
    registry = load_policies(config.policies_dir)
    texts = {policy.id: policy.text for policy in registry}
    default = list(registry.default)
    return DiyPeerSystem(spec, spec.server_url, config.model, texts, default, spec.in_flight)


async def _remote(config: BenchConfig, spec: Spec) -> System:
    """The worker on engine.kind=remote, against the run's shared server or its own."""
    from .naive import OpenAIServer

    server = OpenAIServer(config, free_port(), config.workdir / "logs" / "remote-server.log")
    if spec.server_url is None:
        await server.start(config.wait_timeout_s)
    try:
        settings = config.worker_settings(spec.bootstrap, spec.topics, spec.group)
        # What both kinds take carries over (model, context, retries); vLLM's own options
        # went to the server.
        shared = settings.engine.model_dump(include=set(RemoteEngineSettings.model_fields))
        url = spec.server_url or server.url
        engine = RemoteEngineSettings(**{**shared, "kind": "remote", "url": url})
        settings = settings.model_copy(update={"engine": engine})
        classifier = await start_classifier(settings.engine)
    except BaseException:
        server.stop()
        raise

    def close() -> None:
        classifier.close()
        server.stop()

    return OwnedEngine(WorkerSystem("worker-remote", settings, classifier), close)


class _TokenizerOnly:
    def __init__(self, tokenizer: Any, max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len


# The files a child phase is given, in the order of its command line.
CHILD_FILES = ("config.json", "spec.json", "stats.json", "ready")


class ChildSystem:
    """A system (or the engine-limit phase) run by ``python -m worker.tools.bench.child``."""

    def __init__(self, kind: str, config: BenchConfig, spec: Spec | None) -> None:
        self.name = kind
        self.kind = kind
        self.config = config
        self.spec = spec
        run = config.workdir / "runs" / f"{kind}-{os.getpid()}-{time.time_ns()}"
        run.mkdir(parents=True, exist_ok=True)
        self.files = {name: run / name for name in CHILD_FILES}
        self.log = config.workdir / "logs" / f"{kind}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        self.files["config.json"].write_bytes(self.config.to_json())
        self.files["spec.json"].write_bytes(orjson.dumps(self.spec.__dict__ if self.spec else {}))
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            command = [sys.executable, "-m", "worker.tools.bench.child", self.kind]
            command += [str(self.files[name]) for name in CHILD_FILES]
            self.process = subprocess.Popen(
                bound_to_parent(command),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self._spawn()
        await self._wait_ready()

    async def run_to_end(self) -> dict[str, Any]:
        """For phases that measure themselves and exit (the engine limit)."""
        self._spawn()
        try:
            await self._wait_exit("to finish", self.config.wait_timeout_s)
        except asyncio.CancelledError:  # the bench was stopped: so is the phase
            assert self.process is not None
            self.process.terminate()
            raise
        return self._stats()

    async def stop(self) -> dict[str, Any]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        await self._wait_exit("to stop", 180)
        return self._stats()

    async def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.config.wait_timeout_s
        while not self.files["ready"].exists():
            if (code := self.process.poll()) is not None:
                raise RuntimeError(f"{self.kind} exited with {code} on start; see {self.log}")
            self._check_deadline(deadline, "to get ready")
            await asyncio.sleep(0.2)

    async def _wait_exit(self, what: str, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while (code := self.process.poll()) is None:
            self._check_deadline(deadline, what)
            await asyncio.sleep(0.2)
        if code != 0:
            raise RuntimeError(f"{self.kind} exited with {code}; see {self.log}")

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            assert self.process is not None
            self.process.kill()
            raise RuntimeError(f"{self.kind} took too long {what}; see {self.log}")

    def _stats(self) -> dict[str, Any]:
        path = self.files["stats.json"]
        if not path.exists():
            raise RuntimeError(f"{self.kind} wrote no results; see {self.log}")
        return orjson.loads(path.read_bytes())


def child_files(paths: list[str]) -> dict[str, Path]:
    return dict(zip(CHILD_FILES, map(Path, paths), strict=True))
