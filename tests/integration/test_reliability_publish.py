"""Output the broker will never take: a poison pill if retried, so it is dead-lettered.

A verdict larger than ``kafka.max_request_size`` (an event whose metadata grows when written
back) ends as a ``publish_failed`` dead letter carrying the original event; a dead letter
too large to copy the original ends as one carrying only the original's coordinates. Every
offset still ends in exactly one verdict or one dead letter, and the partition moves on.
"""

from __future__ import annotations

import pytest

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
LIMIT = 65_536  # the worker's kafka.max_request_size in this test


def _outgrowing_event(item_id: str) -> bytes:
    """About 48 KB in, about 72 KB as a verdict: ``1e2`` is written back as ``100.0``."""
    pad = b"[" + b",".join([b"1e2"] * 12_000) + b"]"
    value = b'{"id":"%s","content":"a plain note","metadata":{"pad":%s}}' % (item_id.encode(), pad)
    assert len(value) < LIMIT - 1024
    return value


async def test_unpublishable_outputs_become_dead_letters(broker, engine, test_model):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("toolarge")
    settings = worker_settings(
        bootstrap, test_model, topics, engine=CPU_ARGS, kafka={"max_request_size": LIMIT}
    )
    await create_topics(bootstrap, list(topics.values()), 1)
    oversized = event("huge-unknown", "word " * 20_000, policies=["nope"])
    assert len(oversized) > LIMIT
    records = [
        (b"n-0", event("n-0", "an apple a day", policies=["fruit"]), []),
        (b"grows", _outgrowing_event("grows"), [("trace", b"kept")]),
        (b"n-1", event("n-1", "nothing here", policies=["fruit"]), []),
        (b"huge-unknown", oversized, [("h", b"v")]),
        (b"n-2", event("n-2", "a mango", policies=["fruit"]), []),
    ]
    await produce(bootstrap, topics["content"], records)
    async with RunningWorker(settings, engine):
        results = await read_topic(bootstrap, topics["results"], at_least=3, timeout=120)
        dead = await read_topic(bootstrap, topics["dead_letter"], at_least=2, timeout=60)

    assert {v["id"]: v["label"] for v in verdicts(results)} == {"n-0": 1, "n-1": 0, "n-2": 1}
    assert len(results) == 3 and len(dead) == 2
    grows, huge = sorted(dead, key=lambda r: int(dict(r.headers)["x-dead-letter-source-offset"]))
    headers = dict(grows.headers)
    assert grows.key == b"grows" and grows.value == records[1][1]  # the original, intact
    assert headers["x-dead-letter-error-type"] == b"publish_failed"
    assert b"MessageSizeTooLargeError" in headers["x-dead-letter-reason"]
    assert headers["x-dead-letter-source-offset"] == b"1"
    assert headers["trace"] == b"kept"

    headers = dict(huge.headers)
    assert huge.key == b"huge-unknown" and huge.value == b""
    assert headers["x-dead-letter-error-type"] == b"unknown_policy"
    assert b"MessageSizeTooLargeError" in headers["x-dead-letter-original-omitted"]
    assert headers["x-dead-letter-source-offset"] == b"3"
    assert "h" not in headers  # the original's headers stay with the original

    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    assert positions == {0: 5}
