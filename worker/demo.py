"""A self-contained demo: embedded broker, sample events, the worker, verdicts on screen."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from .app import run_worker
from .broker import EmbeddedBroker
from .config import Settings, load_settings
from .telemetry import configure_logging

SAMPLES = [
    "Had a lovely walk by the river this morning, the herons were out.",
    "Anyone know a good recipe for apple crumble without oats?",
    "You are worthless and everyone at school agrees, just disappear.",
    "The council meeting on bike lanes is moved to Thursday at 7pm.",
    "I keep thinking nobody would notice if I was gone.",
    "Selling tickets for Saturday's match, DM me for the price.",
    "People like them should not be allowed in our neighbourhood.",
    "Great thread on the history of the printing press, thanks for sharing.",
]
MALFORMED = [b"this is not json", b'["a list", "not an object"]', b'{"id": "x-no-content"}']

console = Console()


def run_demo(model: str | None, events: int) -> int:
    # The CPU engine otherwise sizes its KV cache from free memory and may refuse to start.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    model_path = model or str(_test_model())
    if model is None:
        console.print(
            "[yellow]Using the tiny test model built on this machine. Its labels mean nothing "
            "for these policies: it only shows the data flow. For real verdicts pass "
            "--model zentropi-ai/cope-b-a4b on a GPU machine.[/yellow]"
        )
    with EmbeddedBroker() as broker:
        settings = _demo_settings(broker.bootstrap_servers, model_path, _cpu_only())
        configure_logging(settings.log)
        return asyncio.run(_demo(settings, events))


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def _test_model() -> Path:
    from .devmodel import DEFAULT_DIR, build_test_model

    console.print(f"building the tiny test model in {DEFAULT_DIR} ...")
    return build_test_model(DEFAULT_DIR)


def _demo_settings(bootstrap: str, model: str, on_cpu: bool) -> Settings:
    # Eager mode halves the CPU engine's start-up and runs small models faster there.
    extra = {"enforce_eager": True} if on_cpu else {}
    return load_settings(
        kafka={"bootstrap_servers": bootstrap, "enable_idempotence": False},
        topics={"create": True, "partitions": 2},
        engine={"model": model, "max_model_len": 8192, "extra_args": extra},
        batch={"max_items": 16, "linger_ms": 20},
        health={"enabled": False},
        log={"level": "WARNING"},
        drain_deadline_s=10,
    )


async def _demo(settings: Settings, count: int) -> int:
    worker = asyncio.create_task(run_worker(settings))
    await _produce_samples(settings, count)
    expected = count + len(MALFORMED)
    try:
        results = await _collect(settings, expected, worker)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own SIGTERM drain
        code = await worker
    _print(results)
    return code


async def _produce_samples(settings: Settings, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for n in range(count):
            event = {"id": f"demo-{n}", "content": SAMPLES[n % len(SAMPLES)]}
            await producer.send(settings.topics.content, orjson.dumps(event), key=b"demo-%d" % n)
        for raw in MALFORMED:
            await producer.send(settings.topics.content, raw)
        await producer.flush()
    finally:
        await producer.stop()


async def _collect(settings: Settings, expected: int, worker: asyncio.Task[int]) -> list:
    topics = settings.topics
    consumer = AIOKafkaConsumer(
        topics.results,
        topics.dead_letter,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: list = []
    try:
        while len(seen) < expected:
            if worker.done():
                raise RuntimeError(f"worker stopped early with code {worker.result()}")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                seen.extend(records)
                console.print(f"received {len(seen)}/{expected} outputs")
    finally:
        await consumer.stop()
    return seen


def _print(records: list) -> None:
    table = Table(title="verdicts and dead letters")
    for column in ("topic", "id", "label", "route", 'highest P("1")'):
        table.add_column(column)
    for record in records:
        if record.topic.endswith("dead-letter"):
            headers = dict(record.headers)
            reason = headers.get("x-dead-letter-reason", b"").decode()
            table.add_row(record.topic, "-", "-", "-", reason[:70])
            continue
        verdict = orjson.loads(record.value)
        top = max(verdict["verdicts"], key=lambda v: v["score"])
        table.add_row(
            record.topic,
            verdict["id"],
            str(verdict["label"]),
            verdict["route"],
            f"{top['policy']} {top['score']:.2f}",
        )
    console.print(table)
