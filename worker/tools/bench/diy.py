"""The DIY peer: what a good engineer would write in a day around vLLM's OpenAI server.

An aiokafka consumer (manual commits) starts a task per event, up to ``in_flight`` at once,
over one shared HTTP client. Each task asks the server's chat completions endpoint with the
model card's prompt (one user turn: the card's message with the policy and the content;
``max_tokens`` 1, greedy, top logprobs), reads P("1") from the logprobs of "0" and "1",
publishes a verdict and waits for the broker's ack. Offsets are committed once every event
below them is acknowledged. The server renders the chat template, tokenizes, batches
whatever is in flight and caches each policy's prefix on its own.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp
import orjson
from aiokafka import TopicPartition

from ...prompts import user_message
from .systems import LoopSystem, Spec

# The two answers are the model's two likeliest tokens; the worker's servers allow no more
# (--max-logprobs 2).
TOP_LOGPROBS = 2


class Offsets:
    """Per partition, the offsets in flight; what may be committed is below the lowest."""

    def __init__(self) -> None:
        self._open: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}  # one past the highest offset taken

    def taken(self, partition: TopicPartition, offset: int) -> None:
        self._open.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, partition: TopicPartition, offset: int) -> None:
        self._open[partition].discard(offset)

    def committable(self) -> dict[TopicPartition, int]:
        return {
            partition: min(self._open[partition], default=end)
            for partition, end in self._next.items()
        }


def p_yes(reply: Any) -> float:
    """P("1") among the two answers, from a chat completion's top logprobs."""
    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    probs = {alt["token"].strip(): math.exp(alt["logprob"]) for alt in top}
    yes, no = probs.get("1", 0.0), probs.get("0", 0.0)
    return yes / (yes + no) if yes + no > 0 else 0.0


class DiyPeerSystem(LoopSystem):
    """Many events in flight over one HTTP client; commits after acks."""

    def __init__(
        self,
        spec: Spec,
        url: str,
        model: str,
        policies: dict[str, str],
        default: list[str],
        in_flight: int,
    ) -> None:
        super().__init__(f"diy-{in_flight}", spec)
        self.url = url
        self.model = model
        self.policies = policies  # id -> text
        self.default = default
        self.in_flight = in_flight
        self.failures = 0

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.in_flight),
            timeout=aiohttp.ClientTimeout(total=120),
        )
        await super().start()

    async def loop(self) -> None:
        slots = asyncio.Semaphore(self.in_flight)
        offsets = Offsets()
        running: set[asyncio.Task[None]] = set()
        committed: dict[TopicPartition, int] = {}
        while True:
            batches = await self.consumer.getmany(timeout_ms=50, max_records=self.in_flight)
            for partition, records in batches.items():
                for record in records:
                    await slots.acquire()
                    offsets.taken(partition, record.offset)
                    task = asyncio.create_task(self._handle(record, partition, offsets))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    task.add_done_callback(lambda _: slots.release())
            ready = {p: o for p, o in offsets.committable().items() if committed.get(p) != o}
            if ready:
                await self.consumer.commit(ready)
                committed.update(ready)

    async def _handle(self, record: Any, partition: TopicPartition, offsets: Offsets) -> None:
        try:
            event = orjson.loads(record.value)
            ids = event.get("policies") or self.default
            scores = await asyncio.gather(
                *(self._score(self.policies[p], event["content"]) for p in ids)
            )
            verdicts = [
                {"policy": p, "score": s, "label": int(s >= 0.5)}
                for p, s in zip(ids, scores, strict=True)
            ]
            label = int(any(v["label"] for v in verdicts))
            value = orjson.dumps({"id": event["id"], "label": label, "verdicts": verdicts})
            ack = await self.producer.send(self.spec.topics["results"], value, key=record.key)
            await ack
        except Exception:  # not committed: a restart would take it again
            self.failures += 1
            return
        offsets.done(partition, record.offset)

    async def _score(self, policy: str, content: str) -> float:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": user_message(policy, content)}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": TOP_LOGPROBS,
        }
        async with self.http.post(
            f"{self.url}/v1/chat/completions", data=orjson.dumps(body), headers=_JSON
        ) as response:
            response.raise_for_status()
            return p_yes(orjson.loads(await response.read()))

    async def stop(self) -> dict[str, Any]:
        stats = await super().stop()
        await self.http.close()
        return stats

    def stats(self) -> dict[str, Any]:
        return {"failures": self.failures}


_JSON = {"Content-Type": "application/json"}
