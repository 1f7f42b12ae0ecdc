"""What the worker says about records the Kafka client cannot decode, and their extent."""

from __future__ import annotations

from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder

from worker.pipeline.undecodable import batch_span, describe


def _batch(base_offset: int, count: int) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for n in range(count):
        builder.append(n, timestamp=None, key=None, value=b"v%d" % n, headers=[])
    data = bytearray(builder.build())
    data[0:8] = base_offset.to_bytes(8, "big")  # as the broker assigns on append
    return bytes(data)


def test_batch_span_finds_the_batch_holding_the_offset() -> None:
    data = _batch(10, 3) + _batch(13, 5)
    assert batch_span(data, 10) == (10, 12)
    assert batch_span(data, 12) == (12, 12)
    assert batch_span(data, 14) == (14, 17)  # from where the consumer stands, not the base
    assert batch_span(data, 18) is None  # past every batch fetched


def test_batch_span_of_a_legacy_message_set() -> None:
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=None, key=None, value=b"v")
    data = bytearray(builder.build())
    data[0:8] = (41).to_bytes(8, "big")
    assert batch_span(bytes(data), 41) == (41, 41)


def test_batch_span_of_a_truncated_fetch_is_unknown() -> None:
    assert batch_span(_batch(0, 3)[:30], 0) is None
    assert batch_span(b"", 0) is None


def test_batch_errors_name_the_offsets_they_cover() -> None:
    bad = describe(CorruptRecordException("Invalid CRC"), 4, 9)
    assert (bad.first, bad.last, bad.kind) == (4, 9, "undecodable_batch")
    assert "offsets 4 to 9" in bad.reason and "CorruptRecordException" in bad.reason
    one = describe(UnsupportedCodecError("Unknown compression codec 0x07"), 3, 3)
    assert one.kind == "undecodable_batch" and "batch at offset 3:" in one.reason
    assert "0x07" in one.reason


def test_a_record_error_covers_that_record() -> None:
    exc = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    bad = describe(exc, 7, 7)
    assert (bad.first, bad.last, bad.kind) == (7, 7, "undecodable_record")
    assert "this record" in bad.reason
