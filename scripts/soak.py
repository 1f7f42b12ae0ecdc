"""Soak: run the worker at a steady rate for a long time and sample its memory.

    .venv/bin/python scripts/soak.py --duration-s 1200 --rate 20 --out soak.csv

It starts an embedded broker (or uses --bootstrap), runs ``moderation-worker run`` as a
separate process (the same path as a pod), produces content events at a steady rate, and
every --sample-s seconds records the resident memory (RSS) of the worker process and of
its engine process(es), plus how many events were produced and how many verdicts came back.
At the end it prints a summary: start / end / peak RSS and the growth over the second half
of the run in MiB per hour, which is what a leak would show as.

The model defaults to the test suite's tiny policy-following model (built on first use), so
the memory measured is the worker's own, not a large model's weights.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Sample:
    t_s: float
    worker_rss_mib: float
    engine_rss_mib: float
    produced: int
    verdicts: int


def rss_mib(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the engine core runs as a child of the worker)."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def worker_config(bootstrap: str, model: Path, workdir: Path, tag: str) -> Path:
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "enable_idempotence": False,
                  "group_id": f"soak-{tag}"},
        "topics": {"content": f"soak-{tag}-content", "results": f"soak-{tag}-verdicts",
                   "review": f"soak-{tag}-review", "dead_letter": f"soak-{tag}-dead",
                   "create": True, "partitions": 3},
        "engine": {"model": str(model), "max_model_len": 4096,
                   "extra_args": {"enforce_eager": True, "block_size": 32}},
        "policies": {"dir": str(REPO / "tests" / "policies"), "watch": False},
        "health": {"enabled": False},
        "log": {"format": "json", "level": "INFO"},
    }  # fmt: skip
    path = workdir / "soak.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


FILLER = "the quick brown fox jumps over a lazy dog while people talk about the weather".split()


def content_event(n: int, rng: random.Random) -> bytes:
    words = [rng.choice(FILLER) for _ in range(rng.randint(5, 60))]
    if n % 4 == 0:
        words.insert(rng.randrange(len(words)), "apple")
    return orjson.dumps({"id": f"soak-{n}", "content": " ".join(words), "policies": ["fruit"]})


async def produce_steadily(bootstrap: str, topic: str, rate: float, stop: float, count: list[int]):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    rng = random.Random(1)
    try:
        step = max(1, int(rate / 10))  # ten sends a second
        while time.monotonic() < stop:
            started = time.monotonic()
            for _ in range(step):
                await producer.send(topic, content_event(count[0], rng))
                count[0] += 1
            await asyncio.sleep(max(0.0, step / rate - (time.monotonic() - started)))
        await producer.flush()
    finally:
        await producer.stop()


async def count_verdicts(bootstrap: str, topic: str, stop: float, count: list[int]) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while time.monotonic() < stop:
            batches = await consumer.getmany(timeout_ms=500)
            count[0] += sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()


async def soak(args: argparse.Namespace, bootstrap: str, workdir: Path) -> list[Sample]:
    from worker.testing.devmodel import build_test_model

    model = Path(args.model) if args.model else build_test_model(REPO / ".cache" / "test-model")
    tag = f"{int(time.time())}"
    config = worker_config(bootstrap, model, workdir, tag)
    log_path = args.out.with_suffix(".worker.log")
    log = log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    worker = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "worker.cli", "run", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
    )  # fmt: skip
    samples: list[Sample] = []
    try:
        await wait_logged(log_path, "partitions assigned", worker, 600)
        print(f"worker ready; soaking for {args.duration_s:.0f}s at {args.rate}/s", flush=True)
        begin = time.monotonic()
        stop = begin + args.duration_s
        produced, verdicts = [0], [0]
        tasks = [
            asyncio.create_task(
                produce_steadily(bootstrap, f"soak-{tag}-content", args.rate, stop, produced)
            ),
            asyncio.create_task(count_verdicts(bootstrap, f"soak-{tag}-verdicts", stop, verdicts)),
        ]
        while time.monotonic() < stop and worker.poll() is None:
            engine = sum(rss_mib(pid) for pid in descendants(worker.pid))
            sample = Sample(
                round(time.monotonic() - begin, 1),
                round(rss_mib(worker.pid), 1),
                round(engine, 1),
                produced[0],
                verdicts[0],
            )
            samples.append(sample)
            print(sample, flush=True)
            await asyncio.sleep(args.sample_s)
        await asyncio.gather(*tasks)
        if worker.poll() is not None:
            raise SystemExit(f"worker exited early ({worker.returncode}); see {log_path}")
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
        log.close()
    return samples


async def wait_logged(path: Path, needle: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in await asyncio.to_thread(path.read_text, errors="replace"):
            return
        if process.poll() is not None:
            raise SystemExit(f"worker exited ({process.returncode}); see {path}")
        await asyncio.sleep(0.5)
    raise SystemExit(f"worker not ready after {timeout}s; see {path}")


def slope_mib_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (m - mean_m) for t, m in points)
    return cov / var * 3600


def summarise(samples: list[Sample]) -> str:
    second_half = samples[len(samples) // 2 :]
    lines = []
    for name in ("worker_rss_mib", "engine_rss_mib"):
        values = [getattr(s, name) for s in samples]
        slope = slope_mib_per_hour([(s.t_s, getattr(s, name)) for s in second_half])
        lines.append(
            f"{name}: start {values[0]:.1f}, end {values[-1]:.1f}, peak {max(values):.1f}, "
            f"second-half slope {slope:+.1f} MiB/h"
        )
    last = samples[-1]
    lines.append(f"produced {last.produced}, verdicts {last.verdicts} in {last.t_s:.0f}s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=1200)
    parser.add_argument("--rate", type=float, default=20, help="events per second")
    parser.add_argument("--sample-s", type=float, default=15)
    parser.add_argument("--bootstrap", help="use this broker instead of an embedded one")
    parser.add_argument("--model", help="model path (default: the tiny test model)")
    parser.add_argument("--out", type=Path, default=Path("soak.csv"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        if args.bootstrap:
            samples = asyncio.run(soak(args, args.bootstrap, Path(tmp)))
        else:
            from worker.tools.broker import EmbeddedBroker

            with EmbeddedBroker() as broker:
                samples = asyncio.run(soak(args, broker.bootstrap_servers, Path(tmp)))
    with args.out.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(Sample.__dataclass_fields__)
        writer.writerows(
            [s.t_s, s.worker_rss_mib, s.engine_rss_mib, s.produced, s.verdicts] for s in samples
        )
    print(summarise(samples))


if __name__ == "__main__":
    main()
