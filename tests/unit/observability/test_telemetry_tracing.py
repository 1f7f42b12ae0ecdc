"""W3C context in from input headers, out on every output; span shapes; OTEL_* parsing."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from worker.observability import tracing

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
PARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01".encode()


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    """A private SDK tracer for the module under test: no global provider is touched."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    return exporter


def record(headers=(), key: bytes | None = b"item-1", value: bytes = b'{"id":"x"}'):
    return ConsumerRecord(
        topic="content",
        partition=2,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=tuple(headers),
    )


def parse(header: bytes) -> tuple[int, int]:
    _, trace_id, span_id, _ = header.decode().split("-")
    return int(trace_id, 16), int(span_id, 16)


def test_process_span_is_a_child_of_the_producer(spans) -> None:
    message = tracing.start_process(record([("traceparent", PARENT)]), "group-a")
    message.end()
    [span] = spans.get_finished_spans()
    assert span.name == "process content" and span.kind == SpanKind.CONSUMER
    assert span.context.trace_id == TRACE_ID and span.parent.span_id == PARENT_ID
    assert dict(span.attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "content",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 41,
        "messaging.consumer.group.name": "group-a",
        "messaging.message.body.size": 10,
        "messaging.kafka.message.key": "item-1",
    }


def test_a_record_without_context_starts_a_trace(spans) -> None:
    tracing.start_process(record(), "g").end()
    [span] = spans.get_finished_spans()
    assert span.parent is None and span.context.trace_id != 0


@pytest.mark.parametrize("key", [None, b"\xff\xfe"])
def test_keys_without_text_are_left_out(spans, key) -> None:
    tracing.start_process(record(key=key), "g").end()
    [span] = spans.get_finished_spans()
    assert "messaging.kafka.message.key" not in span.attributes


def test_outputs_carry_their_send_span_in_the_producers_trace(spans) -> None:
    incoming = [("traceparent", PARENT), ("tracestate", b"vendor=abc"), ("other", b"kept")]
    message = tracing.start_process(record(incoming), "g")
    outputs = [("verdicts", b"k", b"v", []), ("dead", b"k", b"v", list(incoming))]
    with tracing.sending(message, outputs) as traced:
        pass
    message.end()
    sends = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert [s.name for s in sends] == ["send verdicts", "send dead"]
    process = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER)
    for send, (_, _, _, headers) in zip(sends, traced, strict=True):
        assert send.parent.span_id == process.context.span_id
        [parent] = [v for k, v in headers if k == "traceparent"]  # the producer's is replaced
        assert parse(parent) == (TRACE_ID, send.context.span_id)
        assert [v for k, v in headers if k == "tracestate"] == [b"vendor=abc"]
    assert ("other", b"kept") in traced[1][3]  # other headers pass through untouched
    assert sends[0].attributes["messaging.operation.type"] == "send"
    assert sends[0].attributes["messaging.destination.name"] == "verdicts"


def test_a_failed_send_marks_its_spans(spans) -> None:
    message = tracing.start_process(record(), "g")
    with pytest.raises(OSError), tracing.sending(message, [("verdicts", None, b"v", [])]):
        raise OSError("broker gone")
    message.end(OSError("broker gone"))
    for span in spans.get_finished_spans():
        assert span.status.status_code == StatusCode.ERROR
        assert span.events[0].name == "exception"


def test_inference_spans_one_per_message(spans) -> None:
    messages = [tracing.start_process(record([("traceparent", PARENT)]), "g") for _ in range(3)]
    with tracing.inference(messages, "cope") as inner:
        assert len(inner) == 3
    for message in messages:
        message.end()
    classify = [s for s in spans.get_finished_spans() if s.name == "classify cope"]
    parents = {m.span.get_span_context().span_id for m in messages}
    assert {s.parent.span_id for s in classify} == parents
    assert all(s.attributes["moderation.batch.size"] == 3 for s in classify)


def test_abandoned_messages_end_marked(spans) -> None:
    tracing.abandon([tracing.start_process(record(), "g")])
    [span] = spans.get_finished_spans()
    assert span.attributes["moderation.abandoned"] is True


def test_without_an_sdk_the_input_context_still_reaches_the_outputs(monkeypatch) -> None:
    monkeypatch.setattr(tracing, "_tracer", trace.NoOpTracer())
    message = tracing.start_process(record([("traceparent", PARENT)]), "g")
    with tracing.sending(message, [("verdicts", None, b"v", [])]) as traced:
        pass
    assert [v for k, v in traced[0][3] if k == "traceparent"] == [PARENT]

    bare = tracing.start_process(record(), "g")
    with tracing.sending(bare, [("verdicts", None, b"v", [])]) as traced:
        pass
    assert traced[0][3] == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ],
)
def test_exporters_follow_the_standard_variables(monkeypatch, env, expected) -> None:
    for name in (
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.exporters_requested() == expected


def test_service_name_defaults_and_yields_to_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert tracing.resource().attributes["service.name"] == "moderation-worker"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "moderation-eu")
    assert tracing.resource().attributes["service.name"] == "moderation-eu"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=trust")
    resource = tracing.resource()
    assert resource.attributes["service.name"] == "from-attrs"
    assert resource.attributes["team"] == "trust"


def test_otlp_protocol_picks_the_exporter(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert type(tracing._exporter("otlp")).__module__.endswith("grpc.trace_exporter")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert type(tracing._exporter("otlp")).__module__.endswith("http.trace_exporter")
    assert tracing._exporter("zipkin-please") is None
