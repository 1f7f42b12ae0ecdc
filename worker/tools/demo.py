"""A self-contained demo: embedded broker, sample events, the worker, verdicts on screen."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from ..app import run_worker
from ..config import Settings, load_settings
from ..observability.telemetry import configure_logging
from .broker import EmbeddedBroker

# With --model (the real model): the example pack and everyday posts.
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

# Without --model: the tiny test model, which follows trigger-word policies exactly, so the
# table shows real decisions on a toy task. Each sample names each trigger word at most once.
WHY = (
    "The tiny test model answers 1 exactly when the content names a word its policy lists: "
    "fruit (apple, mango, pepper) or wildlife (otter, falcon, tiger; every wildlife flag also "
    "goes to human review). It also sees: a red picture shows an apple, a blue one a river "
    "(no policy here names it). For real verdicts pass --model zentropi-ai/cope-b-a4b on a GPU."
)
TEST_MODEL_POLICIES = {
    "fruit.md": "---\nid: fruit\ntitle: Fruit mentions\n---\n"
    "Flag content that mentions any of: apple, mango, pepper.\n",
    # A review band that takes every flag (scores from 0.5 up) to a human first.
    "wildlife.md": "---\nid: wildlife\ntitle: Wildlife sightings\nreview_low: 0.5\n"
    "review_high: 1.0\n---\nFlag content that mentions any of: otter, falcon, tiger.\n",
}
TEST_MODEL_SAMPLES = [
    "Anyone know a good recipe for apple crumble without oats?",
    "Saw an otter by the old bridge this morning, it was eating a fish.",
    "The council meeting on bike lanes is moved to Thursday at 7pm.",
    "A mango smoothie and a falcon overhead: a good Saturday.",
    "Selling tickets for Saturday's match, DM me for the price.",
    "Great thread on the history of the printing press, thanks for sharing.",
]
# Image events for the test model (inline PNGs): what the table shows, and the colour.
TEST_MODEL_IMAGES = [("[image] a red square", (255, 0, 0)), ("[image] a blue square", (0, 0, 255))]
MALFORMED = [b"this is not json", b'["a list", "not an object"]', b'{"id": "x-no-content"}']

console = Console()


def run_demo(model: str | None, events: int) -> int:
    # The CPU engine otherwise sizes its KV cache from free memory and may refuse to start.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    with tempfile.TemporaryDirectory(prefix="demo-policies-") as scratch:
        if model is None:
            console.print(f"[yellow]{WHY}[/yellow]")
            policies = _write_policies(Path(scratch))
            images = _image_events()
            code = _stream(str(_test_model()), policies, TEST_MODEL_SAMPLES, events, images)
            console.print(WHY)  # under the table too, where it is read
            return code
        return _stream(model, None, SAMPLES, events)


def _stream(
    model: str,
    policies: Path | None,
    samples: list[str],
    events: int,
    images: dict[str, tuple[str, dict]] | None = None,
) -> int:
    contents = [samples[n % len(samples)] for n in range(events)]
    with EmbeddedBroker() as broker:
        settings = _demo_settings(broker.bootstrap_servers, model, policies, _cpu_only())
        configure_logging(settings.log)
        return asyncio.run(_demo(settings, contents, images or {}))


def _image_events() -> dict[str, tuple[str, dict]]:
    """id: (what the table shows, the event) for each image sample."""
    import base64

    from ..testing.media_samples import image

    return {
        f"image-{n}": (
            label,
            {"media": [{"type": "image", "data": base64.b64encode(image(rgb)).decode()}]},
        )
        for n, (label, rgb) in enumerate(TEST_MODEL_IMAGES)
    }


def _write_policies(directory: Path) -> Path:
    for name, text in TEST_MODEL_POLICIES.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def _test_model() -> Path:
    # The seeing model: the trigger-word text model with a vision path, so images show too.
    from ..testing.seeing import DEFAULT_DIR, build_seeing_model

    console.print(f"building the tiny test model in {DEFAULT_DIR} ...")
    return build_seeing_model(DEFAULT_DIR)


def _demo_settings(bootstrap: str, model: str, policies: Path | None, on_cpu: bool) -> Settings:
    # Eager mode halves the CPU engine's start-up and runs small models faster there.
    extra: dict[str, Any] = {"enforce_eager": True} if on_cpu else {}
    pack = {"policies": {"dir": policies, "watch": False}} if policies else {}
    if policies:  # the test model: images attached one per prompt
        extra["limit_mm_per_prompt"] = {"image": 8}
    return load_settings(
        kafka={"bootstrap_servers": bootstrap, "enable_idempotence": False},
        topics={"create": True, "partitions": 2},
        engine={"model": model, "max_model_len": 8192, "extra_args": extra},
        batch={"max_items": 16, "linger_ms": 20},
        health={"enabled": False},
        log={"level": "WARNING"},
        drain_deadline_s=10,
        **pack,
    )


async def _demo(
    settings: Settings, contents: list[str], images: dict[str, tuple[str, dict]]
) -> int:
    worker = asyncio.create_task(run_worker(settings))
    await _produce_samples(settings, contents, images)
    expected = len(contents) + len(images) + len(MALFORMED)
    try:
        results = await _collect(settings, expected, worker)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own SIGTERM drain
        code = await worker
    shown = {f"demo-{n}": c for n, c in enumerate(contents)}
    _print(results, {**shown, **{k: label for k, (label, _) in images.items()}})
    return code


async def _produce_samples(
    settings: Settings, contents: list[str], images: dict[str, tuple[str, dict]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for n, content in enumerate(contents):
            event = {"id": f"demo-{n}", "content": content}
            await producer.send(settings.topics.content, orjson.dumps(event), key=b"demo-%d" % n)
        for key, (_, fields) in images.items():
            event = {"id": key, **fields}
            await producer.send(settings.topics.content, orjson.dumps(event), key=key.encode())
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


def _print(records: list, shown: dict[str, str]) -> None:
    table = Table(title="verdicts and dead letters")
    for column in ("topic", "id", "content", "label", "route", 'highest P("1")'):
        table.add_column(column)
    for record in sorted(records, key=_row_order):
        if record.topic.endswith("dead-letter"):
            headers = dict(record.headers)
            reason = headers.get("x-dead-letter-reason", b"").decode()
            table.add_row(
                record.topic, "-", record.value.decode(errors="replace")[:40], "-", "-", reason[:70]
            )
            continue
        verdict = orjson.loads(record.value)
        top = max(verdict["verdicts"], key=lambda v: v["score"])
        table.add_row(
            record.topic,
            verdict["id"],
            shown[verdict["id"]][:40],
            str(verdict["label"]),
            verdict["route"],
            f"{top['policy']} {top['score']:.2f}",
        )
    console.print(table)


def _row_order(record: Any) -> tuple[int, int, int]:
    """Verdicts in the order their events were sent (text, then images), then dead letters."""
    if record.topic.endswith("dead-letter"):
        return (2, 0, record.offset)
    item_id = orjson.loads(record.value)["id"]
    kind, _, number = item_id.rpartition("-")
    return (0 if kind == "demo" else 1, 0, int(number))
