"""End to end in one process: real broker, real CPU engine, the worker between them."""

from __future__ import annotations

import random

import orjson
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

FILLER = "the quick brown fox jumps over a lazy dog while people talk about the weather".split()
CPU_ARGS = {"extra_args": {"enforce_eager": True, "block_size": 32}}


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(words))


def _good_events(n: int, rng: random.Random) -> tuple[list, dict[str, int]]:
    """Events with known labels: a fruit trigger (fruit=1), a nature trigger, or none."""
    records, expected = [], {}
    for i in range(n):
        kind = i % 3
        text = _sentence(rng, rng.randint(3, 40))
        if kind == 0:
            text += " and an apple"
        elif kind == 1:
            text += " near the river"
        item_id = f"item-{i}"
        expected[item_id] = 1 if kind == 0 else 0
        trace = f"00-{i + 1:032x}-{i + 1:016x}-01".encode()  # all-zero ids are invalid
        records.append(
            (
                item_id.encode(),
                event(item_id, text, policies=["fruit"], metadata={"n": i}),
                [("traceparent", trace)],
            )
        )
    return records, expected


def _malformed(rng: random.Random) -> list:
    bad: list = []
    bad += [(None, b"not json at all %d" % i, []) for i in range(10)]
    bad += [(None, orjson.dumps(v), []) for v in ([1, 2], "str", 5, None, True, [], 1.5, "x")]
    bad += [(None, orjson.dumps({"content": f"no id {i}"}), []) for i in range(4)]
    bad += [(None, orjson.dumps({"id": f"no-content-{i}"}), []) for i in range(4)]
    bad += [(None, orjson.dumps({"id": i, "content": "numeric id"}), []) for i in range(4)]
    bad += [(None, orjson.dumps({"id": f"wt-{i}", "content": ["list"]}), []) for i in range(4)]
    bad += [(None, event(f"empty-{i}", " " * i), []) for i in range(4)]
    bad += [(None, event(f"unk-{i}", "hello", policies=["nope"]), []) for i in range(4)]
    bad += [
        (None, event(f"long-{i}", _sentence(rng, 5000), policies=["fruit"]), []) for i in range(4)
    ]
    bad += [(None, bytes(rng.randrange(256) for _ in range(64)) + b"\xff", []) for _ in range(4)]
    assert len(bad) == 50
    return bad


async def test_thousand_events_with_fifty_malformed(broker, engine, test_model):
    rng = random.Random(7)
    topics = topic_names("e2e")
    good, expected = _good_events(950, rng)
    malformed = _malformed(rng)
    records = good + malformed
    rng.shuffle(records)
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        engine=CPU_ARGS,
        routing={"review_low": 0.5, "review_high": 1.0},
    )
    await create_topics(broker.bootstrap_servers, list(topics.values()), 3)
    await produce(broker.bootstrap_servers, topics["content"], records)

    async with RunningWorker(settings, engine):
        results = await read_topic(
            broker.bootstrap_servers, topics["results"], at_least=950, timeout=240
        )
        dead = await read_topic(broker.bootstrap_servers, topics["dead_letter"], at_least=50)
        review = await read_topic(broker.bootstrap_servers, topics["review"], at_least=1)

    got = verdicts(results)
    assert len(got) == 950 and len(dead) == 50
    assert {v["id"] for v in got} == set(expected)
    assert {v["id"]: v["label"] for v in got} == expected
    assert all(v["verdicts"][0]["policy"] == "fruit" for v in got)
    for record in results:
        v = orjson.loads(record.value)
        assert record.key == v["id"].encode()
        assert v["metadata"] == {"n": int(v["id"].split("-")[1])}
        assert dict(record.headers)["traceparent"].startswith(b"00-")
    in_band = {v["id"] for v in got if 0.5 <= v["verdicts"][0]["score"] < 1.0}
    assert {orjson.loads(r.value)["id"] for r in review} == in_band
    assert len(review) == len(in_band) > 0

    reasons = {}
    for record in dead:
        headers = dict(record.headers)
        kind = headers["x-dead-letter-error-type"].decode()
        reasons[kind] = reasons.get(kind, 0) + 1
        assert headers["x-dead-letter-reason"]
        assert headers["x-dead-letter-source-topic"] == topics["content"].encode()
    assert reasons == {
        "invalid_json": 14,
        "not_an_object": 8,
        "invalid_event": 20,
        "unknown_policy": 4,
        "content_too_long": 4,
    }
    dead_values = sorted(r.value or b"" for r in dead)
    assert dead_values == sorted(v or b"" for _, v, _ in malformed)
    positions = await committed(
        broker.bootstrap_servers, settings.kafka.group_id, topics["content"]
    )
    assert sum(p or 0 for p in positions.values()) == 1000
