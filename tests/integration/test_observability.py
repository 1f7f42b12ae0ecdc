"""What an operator sees of a run: /metrics, one trace per item, JSON logs, /readyz.

One worker run on the real broker and the session engine is observed from outside (HTTP
scrapes of its health server, spans from an in-memory exporter, the log stream) and each
test checks one of those against what was streamed in.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.app import run_worker
from worker.config import LogSettings
from worker.observability import metrics, tracing
from worker.observability.telemetry import CHATTY_LIBRARIES, configure_logging

from .harness import (
    TEST_POLICIES,
    RunningWorker,
    create_topics,
    event,
    produce,
    read_topic,
    topic_names,
    verdicts,
    worker_settings,
)

pytestmark = pytest.mark.integration

GOOD = 60
LEAK_MARK = "leakcheck"  # in every content text; must never reach the logs by default
TRIGGERS = {0: ("apple", {"fruit": 1, "nature": 0}), 1: ("river", {"fruit": 0, "nature": 1})}
NO_TRIGGER = ("nothing", {"fruit": 0, "nature": 0})
BAD_REASONS = {"invalid_json": 3, "invalid_event": 2, "unknown_policy": 2, "content_too_long": 2}


# ---- helpers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Scrape:
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scrape: Scrape, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def series(scrape: Scrape, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in scrape.items() if n == name}


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, await response.text()


async def scrape(port: int) -> Scrape:
    status, text = await get(port, "/metrics")
    assert status == 200
    return parse(text)


async def scrape_until(port: int, done: Callable[[Scrape], bool], timeout: float = 60) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        current = await scrape(port)
        if done(current) or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.5)


def traceparent(trace_id: int, span_id: int) -> bytes:
    return f"00-{trace_id:032x}-{span_id:016x}-01".encode()


def header_values(record, name: str) -> list[bytes]:
    return [v for k, v in record.headers if k == name]


@contextmanager
def captured_logs(settings: LogSettings) -> Iterator[io.StringIO]:
    """configure_logging into a buffer; everything it changed is put back afterwards."""
    root, vllm = logging.getLogger(), logging.getLogger("vllm")
    saved_root = (list(root.handlers), root.level)
    saved_vllm = (list(vllm.handlers), vllm.propagate, vllm.level)
    saved_levels = {name: logging.getLogger(name).level for name in CHATTY_LIBRARIES}
    saved_structlog = structlog.get_config()
    saved_env = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
    buffer = io.StringIO()
    configure_logging(settings, buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved_root
        vllm.handlers[:], vllm.propagate, vllm.level = saved_vllm
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        logging.captureWarnings(False)
        structlog.configure(**saved_structlog)
        if saved_env is None:
            os.environ.pop("VLLM_LOGGING_CONFIG_PATH", None)
        else:
            os.environ["VLLM_LOGGING_CONFIG_PATH"] = saved_env


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans of this module's runs. The SDK provider is installed once per session."""
    exporter = InMemorySpanExporter()
    tracing.sdk_provider().add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later tests' spans are dropped, not kept in memory


# ---- the observed run ----------------------------------------------------------------


def _good_events() -> tuple[list, dict[str, dict[str, int]]]:
    records, expected = [], {}
    now = datetime.now(UTC).isoformat()
    for i in range(GOOD):
        word, labels = TRIGGERS.get(i % 3, NO_TRIGGER)
        item_id = f"good-{i}"
        text = f"note {i} {LEAK_MARK}{i:04d} quietly mentions {word} today"
        value_ = event(item_id, text, policies=["fruit", "nature"], created_at=now)
        headers = [("traceparent", traceparent(0xA0000 + i, 0xB0000 + i))]
        records.append((item_id.encode(), value_, headers))
        expected[item_id] = labels
    return records, expected


def _bad_events() -> list:
    long_text = " ".join(["weather"] * 6000)
    bad = [(None, b"{not json %d" % i, []) for i in range(3)]
    bad += [(None, orjson.dumps({"id": f"no-content-{i}"}), []) for i in range(2)]
    bad += [(None, event(f"unk-{i}", f"{LEAK_MARK} x", policies=["nope"]), []) for i in range(2)]
    bad += [(None, event(f"long-{i}", long_text, policies=["fruit"]), []) for i in range(2)]
    # Every bad event carries a trace too: its dead letter must continue it.
    return [
        (key, value_, [("traceparent", traceparent(0xD0000 + i, 0xE0000 + i))])
        for i, (key, value_, _) in enumerate(bad)
    ]


@dataclass
class Run:
    topics: dict[str, str]
    group: str
    expected: dict[str, dict[str, int]]
    inputs: dict[str, bytes]
    before: Scrape
    settled: Scrape
    after_reloads: Scrape
    results: list
    dead: list
    spans: list[ReadableSpan]
    log_lines: list[str]


async def _wait_for_reload(port: int, before: Scrape, result: str) -> Scrape:
    name = "moderation_policy_reloads_total"
    return await scrape_until(
        port, lambda s: value(s, name, result=result) > value(before, name, result=result), 30
    )


@pytest.fixture(scope="module")
async def run(broker, engine, test_model, spans, tmp_path_factory) -> Run:
    policies = tmp_path_factory.mktemp("obs") / "policies"
    shutil.copytree(TEST_POLICIES, policies)
    topics = topic_names("obs")
    port = free_port()
    log_settings = {"format": "json", "level": "DEBUG", "include_content": False}
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        health={"enabled": True, "host": "127.0.0.1", "port": port},
        log=log_settings,
        policies={"dir": str(policies), "watch": True},
    )
    good, expected = _good_events()
    bad = _bad_events()
    await create_topics(broker.bootstrap_servers, list(topics.values()), 3)
    await produce(broker.bootstrap_servers, topics["content"], good + bad)

    metrics.setup_metrics()
    before = parse(generate_latest(REGISTRY).decode())
    spans.clear()
    consumed = len(good) + len(bad)
    with captured_logs(LogSettings(**log_settings)) as logs:
        async with RunningWorker(settings, engine):
            results = await read_topic(
                broker.bootstrap_servers, topics["results"], at_least=GOOD, timeout=180
            )
            dead = await read_topic(
                broker.bootstrap_servers, topics["dead_letter"], at_least=len(bad)
            )
            settled = await scrape_until(
                port,
                lambda s: (
                    _lags(s, topics["content"]) == [0, 0, 0]
                    and value(s, "moderation_in_flight") == 0
                    and value(s, "moderation_events_consumed_total", topic=topics["content"])
                    == consumed
                ),
            )
            # A policy pack that does not load is rejected; fixing it reloads.
            (policies / "broken.md").write_text("---\nid: [unclosed\n---\nbody\n")
            rejected = await _wait_for_reload(port, settled, "failure")
            (policies / "broken.md").unlink()
            after_reloads = await _wait_for_reload(port, rejected, "success")
    return Run(
        topics=topics,
        group=settings.kafka.group_id,
        expected=expected,
        inputs={key.decode(): value_ for key, value_, _ in good},
        before=before,
        settled=settled,
        after_reloads=after_reloads,
        results=results,
        dead=dead,
        spans=list(spans.get_finished_spans()),
        log_lines=logs.getvalue().splitlines(),
    )


def _lags(scrape_: Scrape, topic: str) -> list[float]:
    lag = series(scrape_, "moderation_consumer_lag")
    return [v for labels, v in sorted(lag.items()) if ("topic", topic) in labels]


# ---- metrics -------------------------------------------------------------------------


def test_run_delivered_what_was_streamed(run: Run) -> None:
    got = {v["id"]: {p["policy"]: p["label"] for p in v["verdicts"]} for v in verdicts(run.results)}
    assert got == run.expected
    assert len(run.dead) == sum(BAD_REASONS.values())


def test_metrics_count_what_was_streamed(run: Run) -> None:
    before, after = run.before, run.settled

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    bad = sum(BAD_REASONS.values())
    assert delta("moderation_events_consumed_total", topic=run.topics["content"]) == GOOD + bad
    for reason, count in BAD_REASONS.items():
        assert delta("moderation_dead_letters_total", reason=reason) == count, reason
    for policy in ("fruit", "nature"):
        for label in (0, 1):
            want = sum(1 for e in run.expected.values() if e[policy] == label)
            got = delta("moderation_verdicts_total", policy=policy, label=str(label), route="auto")
            assert got == want, (policy, label)
            assert (
                delta("moderation_verdicts_total", policy=policy, label=str(label), route="review")
                == 0
            )

    # Every good event and the two too-long ones went to the engine in some batch.
    batches = delta("moderation_batch_size_count")
    assert 1 <= batches <= GOOD + 2
    assert delta("moderation_batch_size_sum") == GOOD + 2
    assert delta("moderation_queue_duration_seconds_count") == GOOD
    assert 1 <= delta("moderation_inference_duration_seconds_count") <= batches
    assert delta("moderation_inference_duration_seconds_sum") > 0
    assert delta("moderation_end_to_end_duration_seconds_count") == GOOD
    # created_at was set just before producing: every event took under the run's length.
    assert 0 < delta("moderation_end_to_end_duration_seconds_sum") / GOOD < 300

    assert _lags(after, run.topics["content"]) == [0, 0, 0]
    assert value(after, "moderation_in_flight") == 0


def test_engine_metrics_show_prefix_cache_and_kv_cache(run: Run) -> None:
    before, after = run.before, run.settled
    prompt = value(after, "moderation_engine_prompt_tokens_total") - value(
        before, "moderation_engine_prompt_tokens_total"
    )
    cached = value(after, "moderation_engine_cached_tokens_total") - value(
        before, "moderation_engine_cached_tokens_total"
    )
    # Two policies, each prompt sharing its policy's prefix: most of it comes from the cache.
    assert prompt > 0 and 0 < cached < prompt
    assert 0 < value(after, "moderation_engine_prefix_cache_hit_ratio") < 1
    kv = series(after, "moderation_engine_kv_cache_usage")
    assert len(kv) == 1 and 0 <= next(iter(kv.values())) <= 1
    assert ("moderation_engine_requests", (("state", "running"),)) in after


def test_policy_reloads_are_counted(run: Run) -> None:
    name = "moderation_policy_reloads_total"
    assert (
        value(run.after_reloads, name, result="failure")
        - value(run.settled, name, result="failure")
        == 1
    )
    assert (
        value(run.after_reloads, name, result="success")
        - value(run.settled, name, result="success")
        >= 1
    )


# ---- traces --------------------------------------------------------------------------


def _one(items: list) -> object:
    assert len(items) == 1, items
    return items[0]


def test_one_trace_runs_from_the_producer_to_the_verdict(run: Run) -> None:
    i = 7
    trace_id, producer_span = 0xA0000 + i, 0xB0000 + i
    mine = [s for s in run.spans if s.context.trace_id == trace_id]
    process = _one([s for s in mine if s.name == f"process {run.topics['content']}"])
    classify = _one([s for s in mine if s.name.startswith("classify ")])
    send = _one([s for s in mine if s.name == f"send {run.topics['results']}"])

    assert process.kind == SpanKind.CONSUMER and process.parent.span_id == producer_span
    assert classify.parent.span_id == process.context.span_id
    assert send.kind == SpanKind.PRODUCER and send.parent.span_id == process.context.span_id
    assert process.start_time <= classify.start_time <= classify.end_time <= send.start_time
    assert send.end_time <= process.end_time

    [record] = [r for r in run.results if r.key == f"good-{i}".encode()]
    verdict = orjson.loads(record.value)
    assert dict(process.attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": run.topics["content"],
        "messaging.destination.partition.id": str(verdict["source"]["partition"]),
        "messaging.kafka.offset": verdict["source"]["offset"],
        "messaging.consumer.group.name": run.group,
        "messaging.message.body.size": len(run.inputs[f"good-{i}"]),
        "messaging.kafka.message.key": f"good-{i}",
        "moderation.item_id": f"good-{i}",
    }
    assert send.attributes["messaging.destination.name"] == run.topics["results"]
    assert send.attributes["messaging.operation.type"] == "send"
    # The verdict carries our send span's context, in the producer's trace.
    assert header_values(record, "traceparent") == [traceparent(trace_id, send.context.span_id)]


def test_dead_letters_continue_the_producers_trace(run: Run) -> None:
    for record in run.dead:
        [original] = [v for k, v in record.headers if k == "x-dead-letter-source-offset"]
        [header] = header_values(record, "traceparent")  # ours replaced the producer's
        trace_id = int(header.split(b"-")[1], 16)
        assert 0xD0000 <= trace_id < 0xD0000 + sum(BAD_REASONS.values()), original
        send = _one(
            [s for s in run.spans if s.context.trace_id == trace_id and s.name.startswith("send ")]
        )
        assert send.attributes["messaging.destination.name"] == run.topics["dead_letter"]
        assert header == traceparent(trace_id, send.context.span_id)


# ---- logs ----------------------------------------------------------------------------


def test_logs_are_json_lines_with_trace_ids_and_no_content(run: Run) -> None:
    assert run.log_lines
    entries = [orjson.loads(line) for line in run.log_lines]  # every line is one JSON object
    assert all(isinstance(e, dict) and "event" in e and "level" in e for e in entries)
    published = [e for e in entries if e["event"] == "verdict published"]
    assert len(published) == GOOD
    for entry in published:
        i = int(entry["id"].split("-")[1])
        assert entry["trace_id"] == f"{0xA0000 + i:032x}"
        assert len(entry["span_id"]) == 16
        assert entry["topic"] == run.topics["content"] and "offset" in entry
    dead = [e for e in entries if e["event"] == "dead letter"]
    assert sorted(e["reason"] for e in dead) == sorted(
        reason for reason, n in BAD_REASONS.items() for _ in range(n)
    )
    assert all(int(e["trace_id"], 16) >= 0xD0000 for e in dead)
    assert all("content" not in e for e in entries)
    assert LEAK_MARK not in "\n".join(run.log_lines)


async def test_content_is_logged_only_when_allowed(broker, engine, test_model) -> None:
    topics = topic_names("obs-content")
    log_settings = {"format": "json", "level": "DEBUG", "include_content": True}
    settings = worker_settings(
        broker.bootstrap_servers, test_model, topics, partitions=1, log=log_settings
    )
    await create_topics(broker.bootstrap_servers, list(topics.values()), 1)
    good = event("shown-1", f"{LEAK_MARK} with an apple", policies=["fruit"])
    bad = event("shown-2", f"{LEAK_MARK} unknown", policies=["nope"])
    await produce(broker.bootstrap_servers, topics["content"], [(None, good, []), (None, bad, [])])
    with captured_logs(LogSettings(**log_settings)) as logs:
        async with RunningWorker(settings, engine):
            await read_topic(broker.bootstrap_servers, topics["results"], at_least=1)
            await read_topic(broker.bootstrap_servers, topics["dead_letter"], at_least=1)
    entries = [orjson.loads(line) for line in logs.getvalue().splitlines()]
    [published] = [e for e in entries if e["event"] == "verdict published"]
    assert published["content"] == f"{LEAK_MARK} with an apple"
    [dead] = [e for e in entries if e["event"] == "dead letter"]
    assert orjson.loads(dead["content"])["content"] == f"{LEAK_MARK} unknown"
    # With content allowed, the client library's DEBUG lines (which hold record values) come
    # through, as JSON lines like ours.
    assert any(e["logger"].startswith("aiokafka") for e in entries)


# ---- readiness -------------------------------------------------------------------------


class _Lent:
    """The session engine lent to run_worker: closing it stays the session's job."""

    def __init__(self, engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def close(self) -> None:
        pass


async def _poll(port: int, path: str, want: Callable[[int], bool], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, text = await get(port, path)
            if want(status):
                return status, orjson.loads(text)
        except aiohttp.ClientConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never answered as wanted")
        await asyncio.sleep(0.2)


async def test_readyz_says_not_ready_until_the_engine_is_loaded(broker, engine, test_model) -> None:
    topics = topic_names("obs-ready")
    port = free_port()
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        partitions=1,
        health={"enabled": True, "host": "127.0.0.1", "port": port},
    )
    loaded = asyncio.Event()

    async def loading_engine(_settings):
        await loaded.wait()  # the engine "loads" until the test says so
        return _Lent(engine)

    worker = asyncio.create_task(run_worker(settings, loading_engine))
    loop = asyncio.get_running_loop()
    ready = False
    try:
        status, body = await _poll(port, "/readyz", lambda s: s in (200, 503))
        assert status == 503 and not body["ready"]
        assert body["checks"]["engine"] == "engine is loading"
        assert set(body["missing"]) == {"engine", "policies", "consumer"}
        assert (await get(port, "/healthz"))[0] == 200  # alive while loading
        assert (await get(port, "/metrics"))[0] == 200

        loaded.set()
        status, body = await _poll(port, "/readyz", lambda s: s == 200)
        ready = True
        assert body == {
            "ready": True,
            "checks": {"engine": "ok", "policies": "ok", "consumer": "ok"},
            "missing": [],
        }
    finally:
        if ready:  # run_worker has its SIGTERM handler in place: stop it as Kubernetes would
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            worker.cancel()
        code = await asyncio.gather(worker, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    assert code == [0]
    with pytest.raises(aiohttp.ClientConnectionError):  # the server went down with it
        await get(port, "/healthz")
