"""The vLLM OpenAI server that the remote and DIY phases share, and where its CPU goes.

Both phases drive one server process, started once with the worker's engine arguments, so
the remote engine and the DIY peer are measured against the same server. Its CPU is read
per process: the API server (HTTP, chat template, tokenizing, detokenizing) apart from its
engine core process (scheduling and the model itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..broker import free_port
from .config import BenchConfig
from .naive import OpenAIServer


@dataclass(frozen=True)
class ServerCpu:
    api_s: float  # the API server process
    engine_s: float  # its children: the engine core

    def __sub__(self, other: ServerCpu) -> ServerCpu:
        return ServerCpu(self.api_s - other.api_s, self.engine_s - other.engine_s)

    def per_item(self, items: int) -> dict[str, float]:
        return {
            "server_api_cpu_ms_per_item": round(self.api_s * 1000 / items, 3),
            "server_engine_cpu_ms_per_item": round(self.engine_s * 1000 / items, 3),
        }


class SharedServer:
    """Started on first use; ``stop()`` at the end of the run."""

    def __init__(self, config: BenchConfig) -> None:
        self._config = config
        self._server: OpenAIServer | None = None

    async def url(self) -> str:
        if self._server is None:
            log = self._config.workdir / "logs" / "shared-server.log"
            server = OpenAIServer(self._config, free_port(), log)
            try:
                await server.start(self._config.wait_timeout_s)
            except BaseException:
                server.stop()
                raise
            self._server = server
        return self._server.url

    def cpu(self) -> ServerCpu:
        import psutil

        assert self._server is not None and self._server.process is not None
        main = psutil.Process(self._server.process.pid)
        api = _cpu(main)
        engine = sum(_cpu(child) for child in main.children(recursive=True))
        return ServerCpu(api, engine)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def _cpu(process: object) -> float:
    import psutil

    try:
        times = process.cpu_times()  # type: ignore[attr-defined]
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)
