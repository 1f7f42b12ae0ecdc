"""OpenTelemetry metrics, exposed for Prometheus on the health server's /metrics.

Instruments live on the global meter; ``setup_metrics`` installs the SDK provider with a
``PrometheusMetricReader`` (and an OTLP reader when ``OTEL_METRICS_EXPORTER`` asks for one).
Until then every call here is a no-op, so the CLI and tests that do not serve metrics pay
nothing. The pipeline calls the ``record_*`` functions; gauges that describe state (in-flight
items, consumer lag, the engine's KV cache) are read from snapshots at scrape time, because
scrapes run on the health server's thread, not on the worker's event loop.

Prometheus names (OpenTelemetry's conversion: dots become underscores, seconds get
``_seconds``, counters ``_total``) are listed in docs/observability.md.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from opentelemetry import metrics

from ..events import Verdict
from ..scoring.classify import Scored
from ..scoring.shadow import ShadowRecord
from .gauges import (
    PREFIX_WINDOW,
    WorkerGauges,
    observe_engine_requests,
    observe_in_flight,
    observe_kv_cache,
    observe_lag,
    observe_prefix_ratio,
    observe_verdict_cache_ratio,
    prefix_window,
    verdict_cache_window,
    watch_engine,
)

__all__ = ["WorkerGauges", "watch_engine"]  # the pipeline's and the app's hooks into gauges

METER_NAME = "moderation-worker"
LATENCY_BUCKETS_S = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
]  # fmt: skip
SCORE_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


# ---- instruments -------------------------------------------------------------------

_meter = metrics.get_meter(METER_NAME)


def _counter(name: str, unit: str, description: str) -> metrics.Counter:
    return _meter.create_counter(name, unit=unit, description=description)


def _histogram(
    name: str, unit: str, buckets: Sequence[float], description: str
) -> metrics.Histogram:
    return _meter.create_histogram(
        name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
    )


def _gauge(name: str, observe: metrics.CallbackT, unit: str, description: str) -> None:
    _meter.create_observable_gauge(name, callbacks=[observe], unit=unit, description=description)


events_consumed = _counter(
    "moderation.events.consumed", "{event}", "Records read from the content topic."
)
verdicts = _counter(
    "moderation.verdicts",
    "{verdict}",
    "Per-policy verdicts published, by policy, label and the item's route.",
)
dead_letters = _counter("moderation.dead_letters", "{event}", "Records dead-lettered, by reason.")
batch_size = _histogram(
    "moderation.batch.size",
    "{event}",
    BATCH_BUCKETS,
    "Events per micro-batch handed to the engine.",
)
inference_duration = _histogram(
    "moderation.inference.duration",
    "s",
    LATENCY_BUCKETS_S,
    "Engine time of one micro-batch (all its prompts, concurrently).",
)
queue_duration = _histogram(
    "moderation.queue.duration",
    "s",
    LATENCY_BUCKETS_S,
    "Per event: consumed until its batch went to the engine.",
)
end_to_end_duration = _histogram(
    "moderation.end_to_end.duration",
    "s",
    LATENCY_BUCKETS_S,
    "Per event: created_at (else its Kafka record's timestamp) until its verdict was acknowledged.",
)
prompt_tokens = _counter("moderation.engine.prompt_tokens", "{token}", "Prompt tokens scored.")
cached_tokens = _counter(
    "moderation.engine.cached_tokens",
    "{token}",
    "Prompt tokens served from the engine's prefix cache.",
)
verdict_cache_lookups = _counter(
    "moderation.verdict_cache.lookups",
    "{lookup}",
    "Scored (event, policy) pairs by whether the verdict cache answered them.",
)
verdict_cache_saved_tokens = _counter(
    "moderation.verdict_cache.saved_prefill_tokens",
    "{token}",
    "Prompt tokens past the policy prefix that cache hits kept from the engine.",
)
shadow_decisions = _counter(
    "moderation.shadow.decisions",
    "{decision}",
    "Shadow records published, by production and shadow policy and outcome.",
)
shadow_score = _histogram(
    "moderation.shadow.score",
    "1",
    SCORE_BUCKETS,
    "Shadow policies' scores, by production and shadow policy.",
)
policy_reloads = _counter("moderation.policy.reloads", "{reload}", "Policy reloads, by result.")
hash_matches = _counter(
    "moderation.hash_bank.matches",
    "{match}",
    "Events whose signal a hash bank holds, by bank and signal type.",
)
hash_decisions = _counter(
    "moderation.hash_bank.decisions",
    "{decision}",
    "Per-policy decisions made by hash banks without the model, by policy and label.",
)
bank_reloads = _counter("moderation.hash_bank.reloads", "{reload}", "Bank reloads, by result.")
_gauge(
    "moderation.in_flight",
    observe_in_flight,
    "{event}",
    "Events consumed and not yet finished (published or dead-lettered).",
)
_gauge(
    "moderation.consumer.lag",
    observe_lag,
    "{event}",
    "Per assigned partition: end of the partition minus the fetch position.",
)
_gauge(
    "moderation.engine.prefix_cache.hit_ratio",
    observe_prefix_ratio,
    "1",
    f"Cached / prompt tokens over the last {PREFIX_WINDOW} prompts.",
)
_gauge(
    "moderation.verdict_cache.hit_ratio",
    observe_verdict_cache_ratio,
    "1",
    f"Verdict-cache hits / lookups over the last {PREFIX_WINDOW} scored pairs.",
)
_gauge(
    "moderation.engine.kv_cache.usage",
    observe_kv_cache,
    "1",
    "Fraction of the engine's KV cache blocks in use, as the engine last reported.",
)
_gauge(
    "moderation.engine.requests",
    observe_engine_requests,
    "{request}",
    "Engine requests running and waiting, as the engine last reported.",
)


# ---- what the pipeline reports -------------------------------------------------------


def record_consumed(topic: str, count: int = 1) -> None:
    events_consumed.add(count, {"topic": topic})


def record_dead_letter(reason: str) -> None:
    dead_letters.add(1, {"reason": reason})


def record_batch(results: Sequence[Scored], verdict_cache: bool = False) -> None:
    """Batch size, engine time, each item's queue time, prefix-cache and verdict-cache use.

    Scores the verdict cache answered are not engine prompts: they count as lookups that hit.
    """
    batch_size.record(len(results))
    scored = [r for r in results if r.scores is not None]
    if scored:
        inference_duration.record(max(0.0, scored[0].finished - scored[0].started))
    prompt, cached, hits, lookups, saved = 0, 0, 0, 0, 0
    for result in scored:
        queue_duration.record(max(0.0, result.started - result.job.received))
        spared = result.cached or (False,) * (len(result.scores or ()) + len(result.shadow_scores))
        for score, hit in zip([*(result.scores or ()), *result.shadow_scores], spared, strict=True):
            if score is None:  # a bank decided it: no score, no lookup
                continue
            lookups += 1
            if verdict_cache:
                verdict_cache_window.add(1, int(hit))
            if hit:
                hits += 1
                continue
            if score.cached_tokens is None:  # not reported: leave it out of the hit rate
                continue
            prompt += score.prompt_tokens
            cached += score.cached_tokens
            prefix_window.add(score.prompt_tokens, score.cached_tokens)
        saved += result.saved_tokens
    if scored:  # one add a batch: the totals of one a prompt, for a fraction of the cost
        prompt_tokens.add(prompt)
        cached_tokens.add(cached)
    if scored and verdict_cache:
        verdict_cache_lookups.add(hits, {"result": "hit"})
        verdict_cache_lookups.add(lookups - hits, {"result": "miss"})
        verdict_cache_saved_tokens.add(saved)


def record_hash_matches(results: Sequence[Scored]) -> None:
    """Bank matches (an event once per bank and signal type, whether its text or which of
    its media items matched) and the decisions they made, counted once a batch."""
    matches = Counter(
        kind
        for result in results
        for kind in {(match.bank.name, match.signal_type) for match in result.job.matches}
    )
    for (bank, signal_type), count in matches.items():
        hash_matches.add(count, {"bank": bank, "signal_type": signal_type})
    decisions = Counter(
        (policy, decision.label)
        for result in results
        for policy, decision in result.job.decided.items()
    )
    for (policy, label), count in decisions.items():
        hash_decisions.add(count, {"policy": policy, "label": str(label)})


def record_bank_reload(ok: bool) -> None:
    bank_reloads.add(1, {"result": "success" if ok else "failure"})


def record_shadow(records: Sequence[ShadowRecord]) -> None:
    """Shadow records the broker acknowledged: outcome per policy pair, shadow scores."""
    outcomes = Counter((r.production_policy, r.shadow_policy, _OUTCOME[r.flip]) for r in records)
    for (production, shadow, outcome), count in outcomes.items():
        labels = {"production": production, "shadow": shadow, "outcome": outcome}
        shadow_decisions.add(count, labels)
    for record in records:
        pair = {"production": record.production_policy, "shadow": record.shadow_policy}
        shadow_score.record(record.shadow_score, pair)


_OUTCOME = {"none": "agree", "0->1": "flip_0_to_1", "1->0": "flip_1_to_0"}


def record_verdicts(published: Sequence[Verdict]) -> None:
    """Verdicts the broker acknowledged, counted together (a micro-batch's, say).

    One add per policy, label and route rather than per verdict: an add with attributes is
    the costly part of the SDK, and a batch's verdicts share a handful of label sets.
    """
    counts = Counter(
        (policy.policy, policy.label, verdict.route)
        for verdict in published
        for policy in verdict.verdicts
    )
    for (policy_id, label, route), count in counts.items():
        verdicts.add(count, {"policy": policy_id, "label": str(label), "route": route})


def end_to_end_start(created_at: datetime | None, record_timestamp_ms: int) -> datetime | None:
    """When an event's end-to-end time starts: its created_at, else its Kafka record's time.

    Most producers never set created_at, but every record since Kafka 0.10 carries a
    timestamp (its producer's create time, or the broker's append time); -1 means none.
    """
    if created_at is not None:
        # naive times are taken as UTC
        return created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    if record_timestamp_ms is None or record_timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(record_timestamp_ms / 1000, UTC)


def record_end_to_end(created_at: datetime | None, record_timestamp_ms: int = -1) -> None:
    """From the event's start (see end_to_end_start) until its verdict was acknowledged."""
    start = end_to_end_start(created_at, record_timestamp_ms)
    if start is None:
        return
    seconds = (datetime.now(UTC) - start).total_seconds()
    end_to_end_duration.record(max(0.0, seconds))


def record_policy_reload(ok: bool) -> None:
    policy_reloads.add(1, {"result": "success" if ok else "failure"})


# ---- set-up ------------------------------------------------------------------------

_setup_lock = threading.Lock()
_installed = False


def setup_metrics() -> None:
    """Install the SDK meter provider once per process: Prometheus reader (+ OTLP if asked)."""
    global _installed
    with _setup_lock:
        if _installed:
            return
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider

        from .tracing import resource

        # Scope labels would add otel_scope_* to every series and tell operators nothing.
        readers = [PrometheusMetricReader(scope_info_enabled=False), *_otlp_readers()]
        metrics.set_meter_provider(MeterProvider(metric_readers=readers, resource=resource()))
        _installed = True


def _otlp_readers() -> list[object]:
    requested = os.environ.get("OTEL_METRICS_EXPORTER", "").lower().split(",")
    if "otlp" not in [r.strip() for r in requested]:
        return []
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", ""
    )
    if protocol.strip() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return [PeriodicExportingMetricReader(OTLPMetricExporter())]
