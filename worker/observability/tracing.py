"""OpenTelemetry traces: W3C context in from input headers, out on every output record.

Spans follow the OpenTelemetry messaging conventions, one trace per message:

    producer's span (from the input's traceparent)
    └── process <content topic>      CONSUMER, from intake until the outputs are acknowledged
        ├── classify <model>         INTERNAL, the engine call of the micro-batch the item was in
        └── send <output topic>      PRODUCER, one per output record; its context is injected
                                     into that record's headers

A ``process`` span per message (not per batch with links) keeps the producer's trace whole:
a reader who follows one item's trace sees its queueing, inference and publishing.

Exporting is off unless the standard ``OTEL_*`` variables ask for it; the context still
propagates (the API's no-op tracer hands the input's context through to the outputs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import structlog
from aiokafka import ConsumerRecord
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..events import Header

log = structlog.get_logger("worker.tracing")

SERVICE_NAME = "moderation-worker"
_tracer = trace.get_tracer("moderation-worker")

OutRecord = tuple[str, bytes | None, bytes | None, list[Header]]


# ---- Kafka headers as a carrier ------------------------------------------------------


class _HeaderGetter(Getter[Sequence[Header]]):
    def get(self, carrier: Sequence[Header], key: str) -> list[str] | None:
        values = [v.decode("latin-1") for k, v in carrier if k == key and v is not None]
        return values or None

    def keys(self, carrier: Sequence[Header]) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter[list[Header]]):
    def set(self, carrier: list[Header], key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode("latin-1")))


_getter = _HeaderGetter()
_setter = _HeaderSetter()


def extract(headers: Sequence[Header]) -> Context:
    """The producer's context from W3C trace headers (an empty context when absent)."""
    return propagate.extract(headers, getter=_getter)


def inject(headers: Sequence[Header], context: Context) -> list[Header]:
    """``headers`` with the propagator's fields replaced by ``context``'s."""
    fields = propagate.get_global_textmap().fields
    out = [(k, v) for k, v in headers if k not in fields]
    propagate.inject(out, context=context, setter=_setter)
    return out


# ---- spans -------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageTrace:
    """One consumed message's ``process`` span and the context its children start from."""

    span: trace.Span
    context: Context

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            _mark_failed(self.span, error)
        self.span.end()


def _messaging(operation: str, topic: str) -> dict[str, str]:
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": topic,
    }


def _key(key: bytes | None) -> dict[str, str]:
    # The convention: a null key is not set; a key without a text form is left out.
    if key is None:
        return {}
    try:
        return {"messaging.kafka.message.key": key.decode()}
    except UnicodeDecodeError:
        return {}


def start_process(record: ConsumerRecord, group: str) -> MessageTrace:
    """Start the ``process`` span of one consumed record, child of its producer's context."""
    parent = extract(list(record.headers or ()))
    span = _tracer.start_span(
        f"process {record.topic}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            **_messaging("process", record.topic),
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": group,
            "messaging.message.body.size": len(record.value or b""),
            **_key(record.key),
        },
    )
    return MessageTrace(span, trace.set_span_in_context(span, parent))


def annotate(message: MessageTrace, **attributes: str | int | float | bool) -> None:
    """Add attributes learned after intake (item id, dead-letter reason)."""
    if message.span.is_recording():
        message.span.set_attributes({f"moderation.{k}": v for k, v in attributes.items()})


@contextmanager
def activate(message: MessageTrace) -> Iterator[None]:
    """Make the message's span current, so log lines carry its trace and span ids."""
    with trace.use_span(message.span, end_on_exit=False):
        yield


def abandon(messages: Sequence[MessageTrace]) -> None:
    """End the spans of work dropped because its partition was revoked (redelivered elsewhere)."""
    for message in messages:
        if message.span.is_recording():
            message.span.set_attribute("moderation.abandoned", True)
        message.end()


@contextmanager
def inference(messages: Sequence[MessageTrace], model: str) -> Iterator[list[trace.Span]]:
    """One ``classify`` span per message, around the engine call of their shared batch."""
    spans = [
        _tracer.start_span(
            f"classify {model}",
            context=m.context,
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "classify",
                "gen_ai.request.model": model,
                "moderation.batch.size": len(messages),
            },
        )
        for m in messages
    ]
    with _ended(spans):
        yield spans


@contextmanager
def sending(message: MessageTrace, records: list[OutRecord]) -> Iterator[list[OutRecord]]:
    """A ``send`` span per output record; yields the records with its context injected."""
    spans = [
        _tracer.start_span(
            f"send {topic}",
            context=message.context,
            kind=SpanKind.PRODUCER,
            attributes={**_messaging("send", topic), **_key(key)},
        )
        for topic, key, _, _ in records
    ]
    traced = [
        (topic, key, value, inject(headers, trace.set_span_in_context(span, message.context)))
        for span, (topic, key, value, headers) in zip(spans, records, strict=True)
    ]
    with _ended(spans):
        yield traced


@contextmanager
def _ended(spans: list[trace.Span]) -> Iterator[None]:
    """End every span on the way out; if the work raised, mark each one failed first."""
    try:
        yield
    except BaseException as exc:
        for span in spans:
            _mark_failed(span, exc)
        raise
    finally:
        for span in spans:
            span.end()


def _mark_failed(span: trace.Span, error: BaseException) -> None:
    if span.is_recording():
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


# ---- set-up ------------------------------------------------------------------------


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def exporters_requested() -> list[str]:
    """Span exporters the standard OTEL_* variables ask for; empty means tracing is off."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return []
    names = [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER").split(",") if n.strip()]
    if not names:
        endpoint = _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        names = ["otlp"] if endpoint else []
    return [n for n in names if n != "none"]


def resource() -> Resource:
    """service.name defaults to moderation-worker; OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES win."""
    try:
        service_version = version("moderation-worker")
    except PackageNotFoundError:
        service_version = "0"
    detected = Resource.create({"service.version": service_version})
    if str(detected.attributes.get("service.name", "")).startswith("unknown_service"):
        detected = detected.merge(Resource({"service.name": SERVICE_NAME}))
    return detected


_configured = False


def configure_tracing() -> bool:
    """Install an SDK tracer provider with the requested exporters, once per process.

    Returns whether exporting is on.
    """
    global _configured
    names = exporters_requested()
    if not names or _configured:
        return _configured
    _configured = True
    provider = sdk_provider()
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing on", exporters=names)
    return True


def _exporter(name: str) -> SpanExporter | None:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("unknown OTEL_TRACES_EXPORTER entry ignored", exporter=name)
        return None
    protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:  # http/protobuf, the specification's default
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def sdk_provider() -> TracerProvider:
    """The process's SDK tracer provider, installed on first use (providers are set once)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=resource())
    trace.set_tracer_provider(provider)
    return provider


def flush(timeout_ms: int = 5_000) -> None:
    """Export spans still buffered (on exit)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_ms)
