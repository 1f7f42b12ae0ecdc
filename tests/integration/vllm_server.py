"""vLLM's OpenAI-compatible server on the CPU engine, as a fleet member the tests can kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from worker.tools.broker import free_port

SERVED_NAME = "test-model"


class VllmServer:
    """``python -m vllm.entrypoints.openai.api_server`` on a fixed port; restartable."""

    def __init__(
        self,
        model: Path,
        log: Path,
        api_key: str,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.extra_args = list(extra_args)
        self.log = log
        self.api_key = api_key
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> VllmServer:
        command = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--served-model-name",
            SERVED_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--api-key",
            self.api_key,
            "--max-model-len",
            "4096",
            "--seed",
            "0",
            "--enforce-eager",
            "--block-size",
            "32",
            "--logprobs-mode",
            "processed_logprobs",
            "--enable-prompt-tokens-details",
            *self.extra_args,
        ]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        with self.log.open("ab") as out:
            # Its own process group: kill() takes the engine core process down with it.
            self._proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"vLLM server not ready in {timeout}s:\n{self.tail()}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server and its engine process: a crash, not a shutdown."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait(30)
        self._proc = None

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(30)
        except ProcessLookupError:
            pass
        self._proc = None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
