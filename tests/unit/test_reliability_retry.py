"""Waiting for brokers: the backoff schedule, and which errors are worth waiting for."""

from __future__ import annotations

import random
import ssl

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownError,
    UnknownTopicOrPartitionError,
)

from worker.config import load_settings
from worker.errors import FatalError, TransientError, WorkerError
from worker.kafka import (
    BrokersUnreachable,
    KafkaSetupError,
    record_rejected,
    retry_unreachable,
    unreachable,
)
from worker.retry import Backoff, retriable


class _Top:
    """A random source that always draws the top of the range: the schedule unjittered."""

    def uniform(self, low: float, high: float) -> float:
        return high


def test_backoff_doubles_to_the_cap_and_stops_when_the_budget_is_spent():
    delays = Backoff(budget_s=30, cap_s=4, first_s=0.5, rng=_Top())
    got = [delays.next(now=0.0) for _ in range(6)]
    assert got == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert delays.next(now=29.0) == 1.0  # never sleeps past the budget
    assert delays.next(now=30.0) is None
    assert delays.waited == 7


def test_each_delay_is_jittered_between_half_and_all_of_its_step():
    steps = [0.5, 1.0, 2.0, 4.0, 4.0]
    for seed in range(50):
        delays = Backoff(budget_s=1e9, cap_s=4, first_s=0.5, rng=random.Random(seed))
        got = [delays.next(now=0.0) for _ in steps]
        assert all(step / 2 <= delay <= step for delay, step in zip(got, steps, strict=True))


def test_pods_that_failed_together_do_not_retry_in_lockstep():
    # A hundred pods losing the same broker at once: their first waits spread over the
    # whole jitter range instead of all landing on the same instant.
    first = sorted(Backoff(budget_s=60, cap_s=10, first_s=1.0).next(now=0.0) for _ in range(100))
    assert len(set(first)) == 100
    assert first[0] < 0.6 and first[-1] > 0.9  # both ends of [0.5, 1.0] are reached
    assert first[50] - first[49] < 0.1  # and the middle is filled, not two clumps


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransientError("brokers out of reach"), True),
        (BrokersUnreachable("cannot reach brokers"), True),  # a FatalError once spent
        (FatalError("engine died"), False),
        (KafkaSetupError("SASL authentication failed"), False),
        (WorkerError("plain"), False),
        (TimeoutError(), False),  # foreign errors are translated before anyone decides
    ],
)
def test_retriability_is_a_property_of_the_error_type(error, expected):
    assert retriable(error) is expected
    if isinstance(error, WorkerError):
        assert type(error).retriable is expected  # on the class, not the one instance


def test_no_budget_means_no_retry():
    assert Backoff(budget_s=0, cap_s=10).next(now=5.0) is None


@pytest.mark.parametrize(
    "exc",
    [
        KafkaConnectionError("down"),
        NodeNotReadyError("not ready"),
        RequestTimedOutError(),
        KafkaTimeoutError(),
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        UnknownTopicOrPartitionError(),  # an output topic deleted under a running worker
    ],
)
def test_absent_or_silent_brokers_are_worth_waiting_for(exc):
    assert unreachable(exc)
    assert not record_rejected(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ssl.SSLCertVerificationError("certificate verify failed"),
        SaslAuthenticationFailed(),
        TopicAuthorizationFailedError(),
        UnknownError(),
        KeyError("v"),
    ],
)
def test_refusals_are_not_waited_for(exc):
    assert not unreachable(exc)


def test_a_record_too_large_is_rejected_not_retried():
    assert record_rejected(MessageSizeTooLargeError())
    assert not unreachable(MessageSizeTooLargeError())


async def test_retry_waits_through_unreachable_then_reports_recovery():
    kafka = load_settings(kafka={"connect_retry_s": 5, "connect_backoff_max_s": 0.05}).kafka
    attempts, heard = [], []

    async def step() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise BrokersUnreachable("cannot reach brokers")
        return "up"

    assert await retry_unreachable(step, kafka, heard.append) == "up"
    assert len(attempts) == 3
    assert heard == ["cannot reach brokers", "cannot reach brokers", None]


async def test_retry_gives_up_at_once_on_a_refusal():
    kafka = load_settings(kafka={"connect_retry_s": 60}).kafka
    attempts = []

    async def step() -> None:
        attempts.append(1)
        raise KafkaSetupError("SASL authentication failed")

    with pytest.raises(KafkaSetupError, match="SASL"):
        await retry_unreachable(step, kafka)
    assert attempts == [1]


async def test_retry_gives_up_when_the_budget_is_spent():
    kafka = load_settings(kafka={"connect_retry_s": 0.3, "connect_backoff_max_s": 0.1}).kafka
    attempts = []

    async def step() -> None:
        attempts.append(1)
        raise BrokersUnreachable("cannot reach brokers")

    with pytest.raises(BrokersUnreachable, match="cannot reach"):
        await retry_unreachable(step, kafka)
    assert 3 <= len(attempts) <= 6


async def test_retry_stops_after_its_tries_and_raises_the_last_failure(monkeypatch):
    from worker.retry import retry

    slept: list[float] = []

    async def no_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr("worker.retry.asyncio.sleep", no_sleep)
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        raise TimeoutError(f"attempt {calls}")

    with pytest.raises(TimeoutError, match="attempt 3"):
        await retry(step, lambda: Backoff(100, 100, first_s=0.1, tries=2), lambda exc: True)
    assert calls == 3 and 0.05 <= slept[0] <= 0.1 and 0.1 <= slept[1] <= 0.2


async def test_retry_raises_what_is_not_retriable_at_once():
    from worker.retry import retry

    async def step() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await retry(step, lambda: Backoff(100, 100), lambda exc: isinstance(exc, TimeoutError))
