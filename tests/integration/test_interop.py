"""Records as real producers write them, through the real worker.

librdkafka (the ``confluent-kafka`` client most non-Java producers use) writes events in
every compression codec, keyed and keyless, with headers, and tombstones. A record batch
that no client can decode (its CRC is wrong) is written raw to the broker between good
records: it is dead-lettered once by its coordinates and the partition goes on.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from confluent_kafka import Producer
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.observability import metrics

from .harness import (
    RunningWorker,
    committed,
    create_topics,
    event,
    produce,
    read_topic,
    topic_names,
    verdicts,
    worker_settings,
)

pytestmark = pytest.mark.integration

CPU_ARGS = {"extra_args": {"enforce_eager": True, "block_size": 32}}
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# Contents and the per-policy labels the test model gives them (tests/policies/).
CONTENTS = [
    ("we ate an apple at noon", {"fruit": 1, "nature": 0, "tools": 0}),
    ("a walk along the river", {"fruit": 0, "nature": 1, "tools": 0}),
    ("the weather was mild today", {"fruit": 0, "nature": 0, "tools": 0}),
    ("she packed a compass", {"fruit": 0, "nature": 0, "tools": 1}),
]
EVENTS_PER_CODEC = 12
TOMBSTONES_PER_CODEC = 2

Where = tuple[int, int]  # (partition, offset)


def _scrape(name: str, **labels: str) -> float:
    metrics.setup_metrics()  # once per process; later calls are no-ops
    want = tuple(sorted(labels.items()))
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == name and tuple(sorted(sample.labels.items())) == want:
                return sample.value
    return 0.0


def _librdkafka_produce(bootstrap: str, topic: str) -> dict[Where, tuple[str, str | None]]:
    """Write every codec's events and tombstones; {where: (codec, item id or None)}."""
    written: dict[Where, tuple[str, str | None]] = {}
    failures: list[str] = []

    def report(err, msg, what):
        if err is not None:
            failures.append(f"{what}: {err}")
        else:
            written[(msg.partition(), msg.offset())] = what

    for codec in CODECS:
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "compression.type": codec,
                "linger.ms": 50,  # several records a batch, so batches are compressed
                "enable.idempotence": False,  # the embedded broker does not support it
                "acks": "all",
            }
        )
        for n in range(EVENTS_PER_CODEC):
            item = f"{codec}-{n}"
            content = CONTENTS[n % len(CONTENTS)][0]
            producer.produce(
                topic,
                value=event(item, content),
                key=item.encode() if n % 2 else None,  # keyed and keyless
                headers=[("producer", b"librdkafka"), ("codec", codec.encode())],
                on_delivery=lambda err, msg, what=(codec, item): report(err, msg, what),
            )
        for n in range(TOMBSTONES_PER_CODEC):
            producer.produce(
                topic,
                value=None,
                key=f"{codec}-gone-{n}".encode(),
                headers=[("producer", b"librdkafka")],
                on_delivery=lambda err, msg, what=(codec, None): report(err, msg, what),
            )
        left = producer.flush(30)
        assert left == 0 and not failures, (codec, left, failures)
    return written


async def _wait_committed(
    bootstrap: str, group: str, topic: str, ends: dict[int, int], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    positions: dict = {}
    while time.monotonic() < deadline:
        positions = await committed(bootstrap, group, topic)
        if all((positions.get(p) or 0) >= end for p, end in ends.items()):
            return
        await asyncio.sleep(1)
    raise AssertionError(f"committed {positions}, want {ends}: a partition is stuck")


def _ends(where: list[Where]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset in where:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


async def test_librdkafka_records_in_every_codec(broker, engine, test_model):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("librdkafka")
    settings = worker_settings(bootstrap, test_model, topics, engine=CPU_ARGS)
    await create_topics(bootstrap, list(topics.values()), 3)
    written = await asyncio.to_thread(_librdkafka_produce, bootstrap, topics["content"])
    items = {item: where for where, (_, item) in written.items() if item is not None}
    tombstones = {where for where, (_, item) in written.items() if item is None}
    assert len(items) == EVENTS_PER_CODEC * len(CODECS)
    assert len(tombstones) == TOMBSTONES_PER_CODEC * len(CODECS)
    timed_before = _scrape("moderation_end_to_end_duration_seconds_count")

    async with RunningWorker(settings, engine):
        await _wait_committed(
            bootstrap, settings.kafka.group_id, topics["content"], _ends(list(written)), 240
        )
        results = await read_topic(bootstrap, topics["results"], ids=items, settle=1)
        dead = await read_topic(bootstrap, topics["dead_letter"], at_least=len(tombstones))

    got = verdicts(results)
    assert sorted(v["id"] for v in got) == sorted(items), "each event exactly one verdict"
    for verdict in got:
        codec, n = verdict["id"].rsplit("-", 1)
        want = CONTENTS[int(n) % len(CONTENTS)][1]
        assert {p["policy"]: p["label"] for p in verdict["verdicts"]} == want, verdict["id"]
        source = verdict["source"]
        assert (source["partition"], source["offset"]) == items[verdict["id"]]
    dead_at = {}
    for record in dead:
        headers = dict(record.headers)
        at = (
            int(headers["x-dead-letter-source-partition"]),
            int(headers["x-dead-letter-source-offset"]),
        )
        dead_at[at] = headers["x-dead-letter-error-type"].decode()
        assert headers["producer"] == b"librdkafka", "the original headers travel along"
    assert len(dead) == len(tombstones)
    assert dead_at == {at: "empty_value" for at in tombstones}
    # None of these events carries created_at: the record's timestamp starts the clock.
    timed = _scrape("moderation_end_to_end_duration_seconds_count") - timed_before
    assert timed == len(items)


def _corrupt_batch(count: int) -> bytes:
    """A record batch of ``count`` events whose CRC does not match its contents."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for n in range(count):
        builder.append(n, timestamp=None, key=None, value=event(f"lost-{n}", "apple"), headers=[])
    data = bytearray(builder.build())
    data[-1] ^= 0xFF  # a flipped bit in the last record: the CRC no longer matches
    return bytes(data)


async def _produce_raw(bootstrap: str, tp: TopicPartition, batch: bytes) -> int:
    """Write ``batch`` as it is, bypassing every client check; its base offset."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        client.add_topic(tp.topic)
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(tp)
        request = ProduceRequest(None, -1, 10_000, [(tp.topic, [(tp.partition, batch)])])
        response = await client.send(leader, request)
    finally:
        await client.close()
    (_, partitions), *_ = response.topics
    _, error_code, offset, *_ = partitions[0]
    assert error_code == 0, f"the broker refused the raw batch: error {error_code}"
    return offset


async def test_an_undecodable_batch_is_dead_lettered_and_stepped_over(broker, engine, test_model):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("corrupt")
    settings = worker_settings(bootstrap, test_model, topics, partitions=1, engine=CPU_ARGS)
    await create_topics(bootstrap, list(topics.values()), 1)
    content = TopicPartition(topics["content"], 0)
    before = [(None, event(f"before-{n}", CONTENTS[n % 4][0]), []) for n in range(4)]
    after = [(None, event(f"after-{n}", CONTENTS[n % 4][0]), []) for n in range(6)]
    await produce(bootstrap, content.topic, before)
    first = await _produce_raw(bootstrap, content, _corrupt_batch(3))
    await produce(bootstrap, content.topic, after)
    counted_before = _scrape("moderation_dead_letters_total", reason="undecodable_batch")
    ids = [f"before-{n}" for n in range(4)] + [f"after-{n}" for n in range(6)]

    async with RunningWorker(settings, engine) as running:
        await _wait_committed(bootstrap, settings.kafka.group_id, content.topic, {0: 13}, 120)
        assert running.worker.held_partitions(), "the worker stopped"
        results = await read_topic(bootstrap, topics["results"], ids=ids)
        dead = await read_topic(bootstrap, topics["dead_letter"], at_least=1, settle=2)

    got = verdicts(results)
    assert sorted(v["id"] for v in got) == sorted(ids)
    for verdict in got:
        n = int(verdict["id"].rsplit("-", 1)[1])
        want = CONTENTS[n % 4][1]
        assert {p["policy"]: p["label"] for p in verdict["verdicts"]} == want, verdict["id"]
    assert len(dead) == 1, "one dead letter for the whole batch"
    headers = dict(dead[0].headers)
    assert headers["x-dead-letter-error-type"] == b"undecodable_batch"
    assert headers["x-dead-letter-source-partition"] == b"0"
    assert int(headers["x-dead-letter-source-offset"]) == first == 4
    reason = headers["x-dead-letter-reason"].decode()
    assert f"offsets {first} to {first + 2}" in reason and "CRC" in reason, reason
    counted = _scrape("moderation_dead_letters_total", reason="undecodable_batch")
    assert counted - counted_before == 1
