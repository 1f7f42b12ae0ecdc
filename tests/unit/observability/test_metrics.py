"""Metric arithmetic and what the pipeline's record_* calls put on /metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.engine import Score
from worker.events import BadEvent, ContentEvent, Latency, PolicyVerdict, Source, Verdict
from worker.observability import gauges, metrics
from worker.scoring.classify import Job, Scored


def exposition() -> dict[tuple[str, tuple], float]:
    metrics.setup_metrics()  # once per process; later calls are no-ops
    out = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(name: str, **labels: str) -> float:
    return exposition().get((name, tuple(sorted(labels.items()))), 0.0)


# ---- pure parts --------------------------------------------------------------------


def test_prefix_cache_window_is_a_ratio_over_recent_prompts() -> None:
    window = gauges.PrefixCacheWindow(size=2)
    assert window.ratio() is None
    window.add(100, 0)
    window.add(100, 50)
    assert window.ratio() == pytest.approx(0.25)
    window.add(100, 100)  # the first prompt falls out of the window
    assert window.ratio() == pytest.approx(0.75)


class FakeConsumer:
    """The four aiokafka calls consumer_lag makes, over fixed numbers."""

    def __init__(self, parts: dict[int, tuple[int | None, int | None, int]]) -> None:
        self.parts = parts  # partition -> (last stable offset, highwater, position)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", p) for p in self.parts}

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.parts[tp.partition][0]

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.parts[tp.partition][1]

    async def position(self, tp: TopicPartition) -> int:
        if tp.partition == 9:
            raise IllegalStateError("revoked meanwhile")
        return self.parts[tp.partition][2]


async def test_consumer_lag_per_partition() -> None:
    consumer = FakeConsumer(
        {
            0: (120, 130, 100),  # read_committed: the stable offset bounds what we can read
            1: (-1, 50, 45),  # no stable offset reported: the highwater does
            2: (None, None, 0),  # nothing fetched yet: unknown, not zero
            3: (10, 10, 10),
            9: (5, 5, 0),
        }
    )
    assert await gauges.consumer_lag(consumer) == {("t", 0): 20, ("t", 1): 5, ("t", 3): 0}


async def test_worker_gauges_sample_at_most_once_a_second() -> None:
    consumer = FakeConsumer({0: (10, 10, 4)})
    worker_gauges = metrics.WorkerGauges()
    try:
        await worker_gauges.sample(consumer, in_flight=3)
        consumer.parts[0] = (10, 10, 10)
        await worker_gauges.sample(consumer, in_flight=1)
        assert worker_gauges.in_flight == 1 and worker_gauges.lag == {
            ("t", 0): 6
        }  # lag not resampled yet
    finally:
        worker_gauges.close()


# ---- on /metrics -------------------------------------------------------------------


def _scored(job: Job, prompt: int, cached: int, started: float) -> Scored:
    score = Score(p_yes=0.9, prompt_tokens=prompt, cached_tokens=cached)
    return Scored(job, scores=[score], started=started, finished=started + 0.5)


def test_batch_records_size_latency_and_tokens() -> None:
    event = ContentEvent(id="m-1", content="x")
    jobs = [Job(event, [], received=10.0) for _ in range(3)]
    results = [_scored(jobs[0], 100, 80, 12.0), _scored(jobs[1], 60, 40, 12.0)]
    results.append(Scored(jobs[2], error=BadEvent("content_too_long", "too long")))

    before = exposition()
    metrics.record_batch(results)
    after = exposition()

    def delta(name: str) -> float:
        return after.get((name, ()), 0.0) - before.get((name, ()), 0.0)

    assert delta("moderation_batch_size_count") == 1 and delta("moderation_batch_size_sum") == 3
    assert delta("moderation_inference_duration_seconds_count") == 1
    assert delta("moderation_inference_duration_seconds_sum") == pytest.approx(0.5)
    assert delta("moderation_queue_duration_seconds_count") == 2
    assert delta("moderation_queue_duration_seconds_sum") == pytest.approx(4.0)
    assert delta("moderation_engine_prompt_tokens_total") == 160
    assert delta("moderation_engine_cached_tokens_total") == 120


def _verdict(route: str, labels: dict[str, int]) -> Verdict:
    return Verdict(
        id="v",
        label=max(labels.values()),
        route=route,
        verdicts=[
            PolicyVerdict(policy=p, policy_version="h", label=lab, score=0.5, confidence=0.5)
            for p, lab in labels.items()
        ],
        model="m",
        source=Source(topic="t", partition=0, offset=0),
        metadata={},
        latency_ms=Latency(queue=0, inference=0, total=0),
        classified_at=datetime.now(UTC),
    )


def test_verdicts_count_per_policy_label_and_route() -> None:
    labels = {"policy": "unit-a", "label": "1", "route": "review"}
    before = value("moderation_verdicts_total", **labels)
    before_b = value("moderation_verdicts_total", policy="unit-b", label="0", route="review")
    metrics.record_verdicts([_verdict("review", {"unit-a": 1, "unit-b": 0})])
    metrics.record_verdicts([_verdict("review", {"unit-a": 1})])
    assert value("moderation_verdicts_total", **labels) == before + 2
    assert (
        value("moderation_verdicts_total", policy="unit-b", label="0", route="review")
        == before_b + 1
    )


def test_verdicts_counted_together_add_up_as_one_by_one() -> None:
    """A batch's verdicts in one call: per policy, label and route, the same totals."""
    a = {"policy": "unit-c", "label": "1", "route": "review"}
    b = {"policy": "unit-d", "label": "0", "route": "auto"}
    before_a = value("moderation_verdicts_total", **a)
    before_b = value("moderation_verdicts_total", **b)
    metrics.record_verdicts(
        [
            _verdict("review", {"unit-c": 1, "unit-d": 0}),
            _verdict("review", {"unit-c": 1}),
            _verdict("auto", {"unit-d": 0}),
        ]
    )
    assert value("moderation_verdicts_total", **a) == before_a + 2
    assert value("moderation_verdicts_total", **b) == before_b + 1
    assert value("moderation_verdicts_total", policy="unit-d", label="0", route="review") == 1


def test_end_to_end_latency_from_created_at() -> None:
    count = value("moderation_end_to_end_duration_seconds_count")
    total = value("moderation_end_to_end_duration_seconds_sum")
    metrics.record_end_to_end(datetime.now(UTC) - timedelta(seconds=2))
    naive = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)  # taken as UTC
    metrics.record_end_to_end(naive)
    future = datetime.now(UTC) + timedelta(hours=1)  # a producer's clock ahead: not negative
    metrics.record_end_to_end(future)
    assert value("moderation_end_to_end_duration_seconds_count") == count + 3
    added = value("moderation_end_to_end_duration_seconds_sum") - total
    assert 3.0 <= added < 4.0


def test_end_to_end_starts_at_created_at_else_the_record_timestamp() -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record_ms = int(datetime(2026, 1, 2, 3, 4, 9, tzinfo=UTC).timestamp() * 1000)
    assert metrics.end_to_end_start(created, record_ms) == created  # the event's own word wins
    assert metrics.end_to_end_start(created.replace(tzinfo=None), -1) == created
    assert metrics.end_to_end_start(None, record_ms) == datetime(2026, 1, 2, 3, 4, 9, tzinfo=UTC)
    assert metrics.end_to_end_start(None, record_ms + 250).microsecond == 250_000
    assert metrics.end_to_end_start(None, -1) is None  # a record without a timestamp


def test_end_to_end_latency_from_the_record_timestamp() -> None:
    count = value("moderation_end_to_end_duration_seconds_count")
    total = value("moderation_end_to_end_duration_seconds_sum")
    metrics.record_end_to_end(None, int(time.time() * 1000) - 5_000)
    metrics.record_end_to_end(None, -1)  # nothing to measure from: not recorded
    assert value("moderation_end_to_end_duration_seconds_count") == count + 1
    assert 5.0 <= value("moderation_end_to_end_duration_seconds_sum") - total < 6.0


def test_consumed_dead_letters_and_reloads() -> None:
    consumed = value("moderation_events_consumed_total", topic="unit-topic")
    dead = value("moderation_dead_letters_total", reason="unit_reason")
    ok = value("moderation_policy_reloads_total", result="success")
    failed = value("moderation_policy_reloads_total", result="failure")
    metrics.record_consumed("unit-topic")
    metrics.record_consumed("unit-topic", 3)  # a fetch's records in one add
    metrics.record_dead_letter("unit_reason")
    metrics.record_policy_reload(ok=True)
    metrics.record_policy_reload(ok=False)
    metrics.record_policy_reload(ok=False)
    assert value("moderation_events_consumed_total", topic="unit-topic") == consumed + 4
    assert value("moderation_dead_letters_total", reason="unit_reason") == dead + 1
    assert value("moderation_policy_reloads_total", result="success") == ok + 1
    assert value("moderation_policy_reloads_total", result="failure") == failed + 2


class Stats:
    def __init__(self, usage: float | None) -> None:
        self.kv_cache_usage = usage
        self.running = 3
        self.waiting = 1


def test_gauges_read_live_workers_and_engines() -> None:
    worker_gauges = metrics.WorkerGauges()
    worker_gauges.in_flight = 7
    worker_gauges.lag = {("unit-lag", 4): 12}
    # One engine per process in production; an earlier test's engine would share the
    # attribute-less series and hide this one's value.
    earlier = list(gauges._engines)
    gauges._engines.clear()
    stats = Stats(0.375)
    metrics.watch_engine(stats)
    metrics.watch_engine(None)  # an engine that reports nothing is skipped
    try:
        scrape = exposition()
        assert scrape[("moderation_in_flight", ())] >= 7
        assert (
            scrape[("moderation_consumer_lag", (("partition", "4"), ("topic", "unit-lag")))] == 12
        )
        assert 0.375 in {
            v for (n, _), v in scrape.items() if n == "moderation_engine_kv_cache_usage"
        }
        assert scrape[("moderation_engine_requests", (("state", "running"),))] >= 3
    finally:
        worker_gauges.close()
        gauges._engines.discard(stats)
        gauges._engines.update(earlier)
    assert ("moderation_consumer_lag", (("partition", "4"), ("topic", "unit-lag"))) not in (
        exposition()
    )
