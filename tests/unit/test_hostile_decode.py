"""Hostile input to the event decoder: any bytes end as an event or a BadEvent, never a crash.

Run longer with ``HOSTILE_EXAMPLES=20000`` (CI runs the default, a few hundred per test).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.events import (
    DEAD_LETTER_PREFIX,
    MAX_METADATA_DEPTH,
    BadEvent,
    ContentEvent,
    Latency,
    PolicyVerdict,
    Source,
    Verdict,
    dead_letter_headers,
    decode_event,
)

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Objects that look like events, with every field possibly of the wrong type or missing.
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | st.text(),
        "content": json_values | st.text(),
        "policies": json_values | st.lists(st.text(max_size=10), max_size=3),
        "metadata": json_values,
        "created_at": json_values | st.datetimes().map(lambda d: d.isoformat()) | st.text(),
    },
)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    """Overwrite bytes at chosen positions: near-valid JSON, the decoder's hardest case."""
    out = bytearray(data)
    for position, byte in edits:
        if out:
            out[position % len(out)] = byte
    return bytes(out)


def _decodes_or_refuses(value: bytes | None) -> ContentEvent | None:
    try:
        event = decode_event(value)
    except BadEvent as exc:
        assert exc.kind in {"empty_value", "invalid_json", "not_an_object", "invalid_event"}
        assert exc.reason
        return None
    assert isinstance(event, ContentEvent)
    event.id.encode()  # the verdict's key
    assert event.content.strip()
    return event


def _written(event: ContentEvent) -> None:
    """An event that decodes can always be written back out in its verdict."""
    verdict = Verdict(
        id=event.id,
        label=0,
        route="auto",
        verdicts=[
            PolicyVerdict(policy="p", policy_version="v", label=0, score=0.1, confidence=0.9)
        ],
        model="m",
        source=Source(topic="t", partition=0, offset=0),
        metadata=event.metadata,
        latency_ms=Latency(queue=0, inference=0, total=0),
        classified_at=datetime.now(UTC),
    )
    out = verdict.to_json()
    assert orjson.loads(out)["metadata"] == orjson.loads(orjson.dumps(event.metadata))


@fuzz
@given(st.binary(max_size=2048) | st.none())
def test_any_bytes_become_an_event_or_a_bad_event(value):
    _decodes_or_refuses(value)


@fuzz
@given(event_like)
def test_event_shaped_json_of_any_types(obj):
    event = _decodes_or_refuses(orjson.dumps(obj))
    if event is not None:
        _written(event)


@fuzz
@given(event_like, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
def test_corrupted_json_bytes(obj, edits):
    event = _decodes_or_refuses(_mutate(orjson.dumps(obj), edits))
    if event is not None:
        _written(event)


@pytest.mark.parametrize("depth", [1, 199, 200, 201, 254, 255, 1000, 1022, 1023, 1024, 5000])
def test_deep_json(depth):
    """orjson reads 1,024 levels; metadata deeper than a verdict can carry is refused at once."""
    nested = b"[" * depth + b"]" * depth
    raw = b'{"id":"deep","content":"text","metadata":{"a":' + nested + b"}}"
    if depth >= 1023:  # with the object's and metadata's own levels: past orjson's reading
        with pytest.raises(BadEvent) as refused:
            decode_event(raw)
        assert refused.value.kind == "invalid_json"
        return
    if depth + 1 > MAX_METADATA_DEPTH:  # metadata itself is the first level
        with pytest.raises(BadEvent) as refused:
            decode_event(raw)
        assert refused.value.kind == "invalid_event"
        assert f"nested deeper than {MAX_METADATA_DEPTH} levels" in refused.value.reason
        return
    _written(decode_event(raw))


def test_invalid_utf8_nul_and_lone_surrogates():
    assert _decodes_or_refuses(b'{"id":"a","content":"\xff\xfe"}') is None
    assert _decodes_or_refuses(b'{"id":"\\ud800","content":"x"}') is None  # lone surrogate
    event = _decodes_or_refuses(b'{"id":"a\\u0000b","content":"nul \\u0000 inside"}')
    assert event is not None and "\x00" in event.content and event.id == "a\x00b"


def test_huge_value_decodes_without_trouble():
    event = _decodes_or_refuses(orjson.dumps({"id": "big", "content": "word " * 2_000_000}))
    assert event is not None and len(event.content) == 10_000_000


header_lists = st.lists(
    st.tuples(st.text(max_size=20), st.binary(max_size=64) | st.none()), max_size=8
)


@fuzz
@given(header_lists, st.text(max_size=30), st.text(max_size=5000), st.binary(max_size=200))
def test_dead_letters_of_any_headers_can_be_produced(headers, kind, reason, value):
    out = dead_letter_headers(headers, kind, reason, "topic", 3, 42)
    ours = [(k, v) for k, v in out if k.startswith(DEAD_LETTER_PREFIX)]
    assert [k for k, _ in ours] == [
        DEAD_LETTER_PREFIX + name
        for name in ("error-type", "reason", "source-topic", "source-partition", "source-offset")
    ]
    assert dict(ours)[DEAD_LETTER_PREFIX + "source-offset"] == b"42"
    assert len(dict(ours)[DEAD_LETTER_PREFIX + "reason"]) <= 4 * 2000  # capped (UTF-8 bytes)
    kept = [(k, v) for k, v in headers if not k.startswith(DEAD_LETTER_PREFIX)]
    assert out[: len(kept)] == kept
    # The real client can size and write every one of them.
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(None, value, out) > 0
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    assert builder.append(0, timestamp=None, key=None, value=value, headers=out) is not None
