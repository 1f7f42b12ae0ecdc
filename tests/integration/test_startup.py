"""Start-up against the real broker: refusals become clear errors, not tracebacks."""

from __future__ import annotations

import pytest

from worker.config import load_settings
from worker.kafka import KafkaSetupError, ensure_topics, start_producer

from .harness import topic_names

pytestmark = pytest.mark.integration


async def test_broker_refusing_idempotence_names_the_setting(broker):
    kafka = load_settings(kafka={"bootstrap_servers": broker.bootstrap_servers}).kafka
    assert kafka.enable_idempotence  # the default: the embedded broker refuses it
    with pytest.raises(KafkaSetupError) as info:
        await start_producer(kafka)
    message = str(info.value)
    assert "kafka.enable_idempotence=false" in message
    assert "WORKER_KAFKA__ENABLE_IDEMPOTENCE" in message


async def test_missing_topics_are_named_unless_creation_is_on(broker):
    topics = topic_names("startup")
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers}, topics={**topics}
    )
    with pytest.raises(KafkaSetupError, match=topics["content"]) as info:
        await ensure_topics(settings)
    assert "WORKER_TOPICS__CREATE" in str(info.value)
    create = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers},
        topics={**topics, "create": True, "partitions": 2},
    )
    await ensure_topics(create)
    await ensure_topics(settings)  # now they exist


async def test_unreachable_broker_is_a_clear_error():
    from worker.broker import free_port

    settings = load_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_ms": 2000}
    )
    with pytest.raises(KafkaSetupError, match="cannot reach brokers"):
        await ensure_topics(settings)
