"""Send errors translated into the worker's types, and the sender and outputs on a fake
producer."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)

from worker.errors import DeadLetterKind, FatalError, Rejected, TransientError
from worker.kafka import BrokersRefused, BrokersTrouble, kafka_error
from worker.pipeline.offsets import PartitionOffsets
from worker.pipeline.outcomes import dead_letter
from worker.pipeline.publish import Outputs, Sender

from ..fakes import FakeProducer, record, settings, trace


@pytest.mark.parametrize(
    ("exc", "kind", "base"),
    [
        (MessageSizeTooLargeError("too big"), Rejected, Rejected),
        (KafkaTimeoutError(), BrokersTrouble, TransientError),
        (NotLeaderForPartitionError(), BrokersTrouble, TransientError),
        (TopicAuthorizationFailedError(), BrokersRefused, FatalError),
    ],
)
def test_each_send_error_is_translated_into_a_type_that_decides(exc, kind, base) -> None:
    error = kafka_error(exc, "publishing for content[0]@4")
    assert type(error) is kind and isinstance(error, base)
    assert error.retriable is (base is TransientError)
    if kind is Rejected:
        assert error.kind is DeadLetterKind.PUBLISH_FAILED
    else:
        assert str(error).startswith(f"publishing for content[0]@4 failed: {type(exc).__name__}")


class _Flaky:
    """Fails the first ``n`` sends with ``exc``."""

    def __init__(self, n: int, exc: BaseException) -> None:
        self.n, self.exc = n, exc

    def __call__(self, topic, value):
        self.n -= 1
        return self.exc if self.n >= 0 else None


def _sender(producer: FakeProducer, done: list) -> Sender:
    return Sender(producer, settings(), lambda: done.append(1))


async def _send(sender: Sender, offsets: PartitionOffsets, offset: int = 0) -> None:
    source = record(b"v", offset=offset)
    offsets.track(offset)
    await sender.send([("results", b"k", b"v", [])], offsets, source, trace(source))


async def test_an_acked_send_completes_its_offset() -> None:
    done: list = []
    offsets = PartitionOffsets()
    await _send(_sender(producer := FakeProducer(), done), offsets)
    assert producer.on("results") and done == [1]
    assert offsets.position == 1


async def test_unreachable_brokers_are_retried_and_readiness_told() -> None:
    done: list = []
    producer = FakeProducer(_Flaky(2, KafkaTimeoutError()))
    sender = _sender(producer, done)
    offsets = PartitionOffsets()
    await _send(sender, offsets)
    assert producer.attempts == 3 and offsets.position == 1
    assert sender.trouble is None  # cleared once through


async def test_unreachable_past_the_budget_stops() -> None:
    producer = FakeProducer(lambda topic, value: KafkaTimeoutError())
    offsets = PartitionOffsets()
    with pytest.raises(FatalError, match="publishing for content\\[0\\]@0 failed"):
        await _send(_sender(producer, []), offsets)
    assert offsets.position is None  # nothing completes: it will be redelivered


async def test_a_refused_record_is_rejected_at_once() -> None:
    producer = FakeProducer(lambda topic, value: MessageSizeTooLargeError("too big"))
    offsets = PartitionOffsets()
    with pytest.raises(Rejected, match="MessageSizeTooLargeError"):
        await _send(_sender(producer, []), offsets)
    assert producer.attempts == 1 and offsets.position is None


async def test_any_other_broker_error_stops() -> None:
    producer = FakeProducer(lambda topic, value: TopicAuthorizationFailedError())
    with pytest.raises(FatalError, match="TopicAuthorizationFailedError"):
        await _send(_sender(producer, []), PartitionOffsets())
    assert producer.attempts == 1


def _too_big_on(topic: str, *, unless_empty: bool = False):
    def fail(to, value):
        if to == topic and not (unless_empty and value == b""):
            return MessageSizeTooLargeError("too big")
        return None

    return fail


async def test_a_dead_letter_too_large_to_copy_goes_out_without_the_original() -> None:
    producer = FakeProducer(_too_big_on("dlq", unless_empty=True))
    outputs = Outputs(_sender(producer, []), settings(), "m")
    source, offsets = record(b"x" * 100, offset=0), PartitionOffsets()
    offsets.track(0)
    letter = dead_letter(source, Rejected("invalid_json", "not JSON"), "dlq")
    await outputs.dead_letter(source, offsets, letter, trace(source))
    [(_, _, value, headers)] = producer.on("dlq")
    assert value == b"" and "x-dead-letter-original-omitted" in dict(headers)
    assert offsets.position == 1


async def test_a_dead_letter_refused_even_without_the_original_stops() -> None:
    outputs = Outputs(_sender(FakeProducer(_too_big_on("dlq")), []), settings(), "m")
    source, offsets = record(b"x", offset=0), PartitionOffsets()
    offsets.track(0)
    letter = dead_letter(source, Rejected("invalid_json", "not JSON"), "dlq")
    with pytest.raises(FatalError, match="dead letter for content\\[0\\]@0 could not be published"):
        await outputs.dead_letter(source, offsets, letter, trace(source))
    assert offsets.position is None
