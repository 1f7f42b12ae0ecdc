"""The worker's rate on a stream where a share of the content is in a hash bank, vs none.

    .venv/bin/python scripts/bench_hash_stream.py --events 600 --known 0.3

It starts an embedded broker and the in-process CPU engine on the test suite's tiny model,
and runs the worker twice on the same kind of backlog: every event a distinct text against
the test policies, so the verdict cache never helps. After an unmeasured warm-up run it
alternates, ``--rounds`` times: a run where no text is banked, then one where a bank
(known-bad, for every policy) holds ``--known`` of the texts. It reports events per second
from the first event produced to the last verdict, and the engine prompts each run sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path

import orjson

from worker.app import open_worker
from worker.config import load_settings
from worker.engine.vllm import VllmClassifier
from worker.testing.devmodel import DEFAULT_DIR, build_test_model
from worker.testing.words import FILLER_WORDS
from worker.tools.bench.config import CPU_ENGINE_ARGS
from worker.tools.bench.kafkaio import ResultCollector, produce_backlog, topic_names
from worker.tools.bench.workload import Event
from worker.tools.broker import EmbeddedBroker

POLICIES = Path(__file__).resolve().parents[1] / "tests" / "policies"


class Counting:
    """The engine, with its requests counted."""

    def __init__(self, engine: VllmClassifier) -> None:
        self._engine = engine
        self.model_name, self.tokenizer = engine.model_name, engine.tokenizer
        self.max_model_len, self.requests = engine.max_model_len, 0

    async def score(self, prompt_token_ids: list[int]):  # noqa: ANN201
        self.requests += 1
        return await self._engine.score(prompt_token_ids)

    def close(self) -> None:
        pass


def texts(count: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{n} " + " ".join(rng.choices(FILLER_WORDS, k=words)) for n in range(count)]


async def run_once(bootstrap: str, engine, contents: list[str], banks: Path | None) -> dict:
    topics = topic_names("hash" if banks else "plain")
    settings = load_settings(
        kafka={"bootstrap_servers": bootstrap, "enable_idempotence": False,
               "group_id": f"g-{topics['content']}", "fetch_max_wait_ms": 50},
        topics={**topics, "create": True, "partitions": 3},
        engine={"model": engine.model_name, "max_model_len": 4096},
        policies={"dir": str(POLICIES), "watch": False},
        banks={"dir": str(banks) if banks else None, "watch": False},
        cache={"enabled": False},
        health={"enabled": False},
    )  # fmt: skip
    counting = Counting(engine)
    events = [
        Event(f"e{n}", [], orjson.dumps({"id": f"e{n}", "content": text}))
        for n, text in enumerate(contents)
    ]
    async with open_worker(settings, counting) as worker:
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.assigned.wait(), 120)
        collector = await ResultCollector(
            bootstrap, topics["results"], topics["dead_letter"]
        ).start()
        started = time.time()
        await produce_backlog(bootstrap, topics["content"], events)
        missing = await collector.wait_for([e.id for e in events], timeout_s=1800)
        elapsed = max(collector.produced.values()) - started
        await collector.stop()
        worker.stop()
        await task
    return {"events": len(events), "missing": missing, "seconds": round(elapsed, 2),
            "events_per_s": round(len(events) / elapsed, 1),
            "engine_requests": counting.requests}  # fmt: skip


async def main(args: argparse.Namespace) -> dict:
    model = build_test_model(DEFAULT_DIR)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    engine_settings = load_settings(
        engine={"model": str(model), "max_model_len": 4096, "extra_args": CPU_ENGINE_ARGS}
    ).engine
    engine = await VllmClassifier.start(engine_settings)
    report: dict = {"known_share": args.known, "runs": []}
    try:
        with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
            bootstrap = broker.bootstrap_servers
            await run_once(bootstrap, engine, texts(args.warmup, args.words, seed=0), None)
            for round_ in range(args.rounds):  # alternated, so drift in load hits both
                plain = texts(args.events, args.words, seed=10 * round_ + 1)
                run = await run_once(bootstrap, engine, plain, None)
                report["runs"].append({"known": 0.0, **run})
                print(json.dumps(report["runs"][-1]), flush=True)
                contents = texts(args.events, args.words, seed=10 * round_ + 2)
                bank = Path(tmp) / f"round-{round_}"
                bank.mkdir()
                known = random.Random(round_).sample(contents, round(args.known * len(contents)))
                (bank / "known.yaml").write_text("policies: [fruit, nature, tools]\nlabel: 1\n")
                (bank / "known.csv").write_text(
                    "signal_type,signal_str\n" + "".join(f"raw_text,{text}\n" for text in known)
                )
                run = await run_once(bootstrap, engine, contents, bank)
                report["runs"].append({"known": args.known, **run})
                print(json.dumps(report["runs"][-1]), flush=True)
    finally:
        engine.close()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--known", type=float, default=0.3)
    parser.add_argument("--words", type=int, default=40, help="words per content")
    parser.add_argument("--warmup", type=int, default=200, help="events of an unmeasured run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    print(json.dumps(result))
    if arguments.out:
        arguments.out.write_text(json.dumps(result, indent=2) + "\n")
