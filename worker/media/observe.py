"""The media step's metrics and trace spans (names listed in docs/observability.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import metrics, trace
from opentelemetry.context import Context

_meter = metrics.get_meter("moderation-worker")
_tracer = trace.get_tracer("moderation-worker")

fetch_seconds = _meter.create_histogram(
    "moderation.media.fetch.duration",
    unit="s",
    description="Time to fetch and decode one media item, by kind and outcome.",
    explicit_bucket_boundaries_advisory=[
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
    ],
)
fetched_bytes = _meter.create_counter(
    "moderation.media.bytes", unit="By", description="Media bytes received, by kind and source."
)
failures = _meter.create_counter(
    "moderation.media.failures",
    unit="{item}",
    description="Media items that failed, by error type and rule (or transient cause).",
)


def record_item(kind: str, source: str, outcome: str, seconds: float, size: int) -> None:
    fetch_seconds.record(seconds, {"kind": kind, "outcome": outcome})
    if size:
        fetched_bytes.add(size, {"kind": kind, "source": source})


def record_failure(error_type: str, rule: str) -> None:
    failures.add(1, {"error_type": error_type, "rule": rule})


@contextmanager
def span(parent: Context | None, kind: str, where: str) -> Iterator[trace.Span]:
    """A ``media fetch`` span under the message's process span."""
    with _tracer.start_as_current_span(
        "media fetch",
        context=parent,
        attributes={"moderation.media.kind": kind, "moderation.media.where": where[:200]},
    ) as current:
        yield current
