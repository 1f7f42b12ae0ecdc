"""Kafka client factories (security, idempotence), topic bootstrap, and aiokafka's errors
translated into the worker's (``translated``): the one module that catches ``KafkaError``
(undecodable.py excepted, for records the client cannot decode)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    CorruptRecordException,
    IllegalSaslStateError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from .config import KafkaSettings, Settings, TopicSettings
from .errors import DeadLetterKind, FatalError, Rejected, TransientError, WorkerError
from .retry import Backoff, retriable, retry

log = structlog.get_logger("worker.kafka")
T = TypeVar("T")


class KafkaSetupError(FatalError):
    """Start-up could not use the brokers: they refuse us (configuration, credentials,
    certificates), which waiting does not fix. The message says what to change."""


class BrokersUnreachable(KafkaSetupError):
    """Start-up could not reach the brokers: waited for (they may come back), then fatal."""

    retriable = True


class BrokersTrouble(TransientError):
    """A running client's call failed in a way the brokers may mend (out of reach, leader
    moved, timed out)."""


class BrokersRefused(FatalError):
    """The brokers refuse a running client's call for good (authorization, configuration)."""


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by consumer, producer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.password(),
        )
    return options


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    context = create_ssl_context(
        cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
        certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
        keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
    )
    context.check_hostname = kafka.ssl_check_hostname
    return context


def make_consumer(settings: Settings) -> AIOKafkaConsumer:
    kafka = settings.kafka
    return AIOKafkaConsumer(
        **client_options(kafka),
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset=kafka.auto_offset_reset,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        max_poll_records=kafka.max_poll_records,
        # Fetched records wait in aiokafka's buffer until taken: these bound that memory.
        fetch_max_bytes=kafka.fetch_max_bytes,
        max_partition_fetch_bytes=kafka.max_partition_fetch_bytes,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        isolation_level="read_committed",
    )


def producer_options(kafka: KafkaSettings) -> dict[str, Any]:
    return {
        **client_options(kafka),
        "acks": "all",
        "enable_idempotence": kafka.enable_idempotence,
        "linger_ms": kafka.linger_ms,
        "max_request_size": kafka.max_request_size,
    }


def make_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(**producer_options(kafka))


async def start_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    """Start a producer; a broker that refuses idempotence stops start-up with advice."""
    producer = make_producer(kafka)
    try:
        # With idempotence on, start() also asks the broker for a producer id.
        await asyncio.wait_for(producer.start(), kafka.request_timeout_ms / 1000)
    except Exception as exc:  # aiokafka's SCRAM client raises KeyError on a refusal
        await producer.stop()
        error = await _setup_error("producer could not start", exc, kafka)
        if kafka.enable_idempotence and not error.retriable and isinstance(exc, KafkaError):
            error = KafkaSetupError(
                f"{error}. If this broker does not support the idempotent producer, set "
                "kafka.enable_idempotence=false (env WORKER_KAFKA__ENABLE_IDEMPOTENCE=false)."
            )
        raise error from exc
    return producer


async def start_consumer(
    settings: Settings, listener: ConsumerRebalanceListener
) -> AIOKafkaConsumer:
    consumer = make_consumer(settings)
    try:
        await consumer.start()
        consumer.subscribe([settings.topics.content], listener=listener)
    except Exception as exc:
        await consumer.stop()
        raise await _setup_error("consumer could not start", exc, settings.kafka) from exc
    return consumer


async def ensure_topics(settings: Settings, shadow: bool = True) -> None:
    """Check that our topics exist (the shadow topic only with ``shadow``: when shadow
    policies are loaded); create the missing ones when topics.create is set."""
    topics = settings.topics
    wanted = topic_names(topics, shadow)
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    try:
        await admin.start()
        missing = await _missing(admin, wanted)
        if missing and not topics.create:
            raise KafkaSetupError(
                f"topics missing on the broker: {', '.join(missing)}. Create them, or set "
                "topics.create=true (env WORKER_TOPICS__CREATE=true)."
            )
        await _create(admin, missing, topics.partitions, topics.replication_factor)
    except KafkaSetupError:
        raise
    except Exception as exc:
        error = await _setup_error("cannot check topics", exc, settings.kafka)
        raise error from exc
    finally:
        await admin.close()


async def create_topics(
    bootstrap: str, names: Sequence[str], partitions: int, replication_factor: int = 1
) -> None:
    """Create those of ``names`` the broker lacks (the benchmark's and the tests' topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await _create(admin, await _missing(admin, names), partitions, replication_factor)
    finally:
        await admin.close()


async def _missing(admin: AIOKafkaAdminClient, names: Sequence[str]) -> list[str]:
    existing = set(await admin.list_topics())
    return [name for name in names if name not in existing]


async def _create(
    admin: AIOKafkaAdminClient, names: Sequence[str], partitions: int, replication_factor: int
) -> None:
    if names:
        await admin.create_topics([NewTopic(n, partitions, replication_factor) for n in names])


def topic_names(topics: TopicSettings, shadow: bool) -> list[str]:
    """The topics the worker uses. A reload that adds the first shadow policy checks the
    shadow topic then (app.py), so it is not required before."""
    names = [topics.content, topics.results, topics.review, topics.dead_letter]
    return list(dict.fromkeys([*names, topics.shadow] if shadow else names))


def _describe(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc)
    if not text or text.startswith(name):  # aiokafka's errors name themselves
        return text or name
    return f"{name}: {text}"


# ---- telling "unreachable" from "refused" ------------------------------------------

_SASL_REFUSALS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    KeyError,  # aiokafka's SCRAM client, when the server's final message is an error
    ValueError,  # ... or carries the wrong signature
)


def unreachable(exc: BaseException) -> bool:
    """The brokers did not answer (down, paused, partitioned): waiting may fix it."""
    if isinstance(exc, ssl.SSLError):  # an OSError, but a refusal
        return False
    if isinstance(exc, KafkaError):
        return exc.retriable or isinstance(exc, KafkaTimeoutError)
    return isinstance(exc, OSError | TimeoutError)


def record_rejected(exc: BaseException) -> bool:
    """The broker (or the client's own limit) will never take this record: retrying is futile."""
    return isinstance(exc, MessageSizeTooLargeError | CorruptRecordException)


async def _setup_error(doing: str, exc: BaseException, kafka: KafkaSettings) -> KafkaSetupError:
    if isinstance(exc, KafkaSetupError):
        return exc
    # aiokafka reports any failed bootstrap as KafkaConnectionError and only logs the cause:
    # connect once ourselves to tell a refusal (credentials, TLS) from an absent broker.
    cause = await _connect_once(kafka) if unreachable(exc) else exc
    if cause is None:
        cause = exc
    refusal = _refusal(cause, kafka)
    if refusal is not None:
        return KafkaSetupError(f"{doing}: {refusal}")
    if unreachable(cause):
        return BrokersUnreachable(
            f"{doing}: cannot reach brokers {kafka.bootstrap_servers}: {_describe(cause)}"
        )
    return KafkaSetupError(f"{doing}: {_describe(cause)}")


def _refusal(exc: BaseException, kafka: KafkaSettings) -> str | None:
    """A readable reason when ``exc`` means the brokers refused our credentials or TLS."""
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS with the brokers failed ({_describe(exc)}). Check kafka.ssl_cafile, "
            "kafka.ssl_certfile / kafka.ssl_keyfile and kafka.ssl_check_hostname."
        )
    if kafka.security_protocol.startswith("SASL_") and isinstance(exc, _SASL_REFUSALS):
        # The exception text is not echoed: it could quote what was sent.
        return (
            f"SASL authentication failed: the brokers refused user {kafka.sasl_username!r} "
            f"with {kafka.sasl_mechanism} ({type(exc).__name__}). Check kafka.sasl_username, "
            "kafka.sasl_mechanism and the password (kafka.sasl_password or "
            "kafka.sasl_password_file)."
        )
    return None


async def check_credentials(kafka: KafkaSettings) -> None:
    """Fail at once when the brokers refuse our credentials or certificates.

    Brokers that cannot be reached are not an error here: start-up waits for them later.
    """
    cause = await _connect_once(kafka)
    refusal = _refusal(cause, kafka) if cause is not None else None
    if refusal is not None:
        raise KafkaSetupError(f"the brokers refused the worker: {refusal}")


async def _connect_once(kafka: KafkaSettings) -> BaseException | None:
    """Open one connection to the first bootstrap server; the exception it raised, if any."""
    options = client_options(kafka)
    host, _, port = options.pop("bootstrap_servers")[0].rpartition(":")
    host = host.strip("[]")
    if "ssl_context" in options:
        refused = await asyncio.to_thread(_tls_verdict, host, int(port), options["ssl_context"])
        if refused is not None:
            return refused
    try:
        conn = await create_conn(
            host,
            int(port),
            client_id=options["client_id"],
            request_timeout_ms=options["request_timeout_ms"],
            ssl_context=options.get("ssl_context"),
            security_protocol=options["security_protocol"],
            sasl_mechanism=options.get("sasl_mechanism"),
            sasl_plain_username=options.get("sasl_plain_username"),
            sasl_plain_password=options.get("sasl_plain_password"),
        )
    except Exception as exc:
        return exc
    conn.close()
    return None


def _tls_verdict(host: str, port: int, context: ssl.SSLContext) -> ssl.SSLError | None:
    """The TLS alert the server sends about our certificate, if any.

    In TLS 1.3 the server judges the client's certificate after the handshake, so a refusal
    arrives as an alert on the first read; aiokafka reports it as a closed connection.
    """
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.settimeout(1.0)  # a Kafka broker never speaks first: silence is consent
                tls.recv(1)
    except ssl.SSLError as exc:
        return exc
    except OSError:  # unreachable, timed out, closed: create_conn tells the rest
        return None
    return None


# ---- waiting for brokers -------------------------------------------------------------


def backoff(kafka: KafkaSettings) -> Backoff:
    return Backoff(kafka.connect_retry_s, kafka.connect_backoff_max_s)


async def retry_unreachable(
    step: Callable[[], Awaitable[T]],
    kafka: KafkaSettings,
    waiting: Callable[[str | None], None] = lambda _: None,
) -> T:
    """Run a start-up step, retrying while the brokers cannot be reached.

    ``waiting`` hears the reason while it waits (for readiness) and None once through.
    Refusals (KafkaSetupError but BrokersUnreachable) and a spent budget raise at once.
    """
    retried = False

    def on_retry(exc: Exception, delay: float) -> None:
        nonlocal retried
        retried = True
        log.warning("brokers unreachable; retrying", error=str(exc), retry_in_s=delay)
        waiting(str(exc))

    result = await retry(step, lambda: backoff(kafka), retriable, on_retry)
    if retried:
        log.info("brokers reachable again")
        waiting(None)
    return result


# ---- errors of a running client, in the worker's vocabulary -------------------------


def kafka_error(exc: KafkaError, doing: str) -> WorkerError:
    """What a running client's failure means: a record refused for good (Rejected), brokers
    that may mend (BrokersTrouble, retriable), or a call that cannot succeed (BrokersRefused)."""
    described = f"{type(exc).__name__}: {exc}"
    if record_rejected(exc):
        return Rejected(DeadLetterKind.PUBLISH_FAILED, described)
    failed = f"{doing} failed: {described}"
    return BrokersTrouble(failed) if unreachable(exc) else BrokersRefused(failed)


@contextmanager
def translated(doing: str, keep: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Around calls of a started aiokafka client: its errors come out as the worker's
    (``kafka_error``), but for the types in ``keep``, which the caller handles itself."""
    try:
        yield
    except keep:
        raise
    except KafkaError as exc:
        raise kafka_error(exc, doing) from exc
