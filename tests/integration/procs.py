"""Workers as separate processes, so tests can SIGKILL and SIGTERM them like Kubernetes does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from worker.config import Settings


class WorkerProcess:
    """``moderation-worker run --config FILE``, its JSON log lines written to a file."""

    def __init__(self, settings: Settings, workdir: Path, name: str) -> None:
        self.config = workdir / f"{name}.yaml"
        self.log = workdir / f"{name}.log"
        self.config.write_text(yaml.safe_dump(_plain(settings)))
        self.process: subprocess.Popen[bytes] | None = None
        # What runs the CLI; a test may put a script of its own in front of it.
        self.program = [sys.executable, "-m", "worker.cli"]

    def start(self) -> WorkerProcess:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("WORKER_")}
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [*self.program, "run", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        return self

    def wait_log(self, needle: str, timeout: float, after: int = 0) -> None:
        """Wait until ``needle`` is logged past byte ``after`` of the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log.read_text(errors="replace")[after:]:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.tail()}")
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{self.tail()}")

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def kill(self) -> None:
        assert self.process is not None
        # The engine runs in child processes: kill them all at once, as losing the pod would.
        worker = psutil.Process(self.process.pid)
        for proc in [worker, *worker.children(recursive=True)]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=30)

    def kill_worker_only(self) -> None:
        """SIGKILL the worker's own process, as an OOM kill or an impatient operator would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def engine_pids(self) -> list[int]:
        """The vLLM engine processes below the worker (``VLLM::EngineCore``, ``VLLM::Worker``)."""
        assert self.process is not None
        pids = []
        for proc in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if proc.name().startswith("VLLM::"):
                    pids.append(proc.pid)
            except psutil.Error:
                continue
        return pids

    def descendant(self, name: str) -> int:
        """The pid of the process below the worker whose name or command line has ``name``."""
        assert self.process is not None
        for proc in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if name in proc.name() or name in " ".join(proc.cmdline()):
                    return proc.pid
            except psutil.Error:
                continue
        raise AssertionError(f"no process named {name!r} below the worker:\n{self.tail()}")

    def terminate(self, timeout: float = 90) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _plain(settings: Settings) -> dict:
    data = settings.model_dump(mode="json")
    password = settings.kafka.sasl_password
    data["kafka"]["sasl_password"] = password.get_secret_value() if password else None
    return data
