"""Kafka client factories (security, idempotence) and topic bootstrap."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from .config import KafkaSettings, Settings, TopicSettings


class KafkaSetupError(Exception):
    """Start-up could not reach or use the brokers; the message says what to change."""


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
    except (KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        hint = ""
        if kafka.enable_idempotence:
            hint = (
                " If this broker does not support the idempotent producer, set "
                "kafka.enable_idempotence=false (env WORKER_KAFKA__ENABLE_IDEMPOTENCE=false)."
            )
        raise KafkaSetupError(f"producer could not start: {_describe(exc)}.{hint}") from exc
    return producer


async def start_consumer(
    settings: Settings, listener: ConsumerRebalanceListener
) -> AIOKafkaConsumer:
    consumer = make_consumer(settings)
    try:
        await consumer.start()
        consumer.subscribe([settings.topics.content], listener=listener)
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        raise KafkaSetupError(f"consumer could not start: {_describe(exc)}") from exc
    return consumer


async def ensure_topics(settings: Settings) -> None:
    """Check that our topics exist; create the missing ones when topics.create is set."""
    topics = settings.topics
    wanted = _topic_names(topics)
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing and not topics.create:
            raise KafkaSetupError(
                f"topics missing on the broker: {', '.join(missing)}. Create them, or set "
                "topics.create=true (env WORKER_TOPICS__CREATE=true)."
            )
        if missing:
            await admin.create_topics(
                [NewTopic(t, topics.partitions, topics.replication_factor) for t in missing]
            )
    except KafkaError as exc:
        raise KafkaSetupError(f"cannot reach brokers to check topics: {_describe(exc)}") from exc
    finally:
        await admin.close()


def _topic_names(topics: TopicSettings) -> list[str]:
    return list(dict.fromkeys([topics.content, topics.results, topics.review, topics.dead_letter]))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
