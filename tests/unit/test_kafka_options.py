"""Client options built from settings: security protocols and SASL mechanisms."""

from __future__ import annotations

import ssl

import pytest

from worker.config import load_settings
from worker.kafka import client_options, make_consumer, producer_options


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_options(mechanism, tmp_path):
    settings = load_settings(
        kafka={
            "bootstrap_servers": "a:9093,b:9093",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": mechanism,
            "sasl_username": "svc",
            "sasl_password": "pw",
        }
    )
    options = client_options(settings.kafka)
    assert options["bootstrap_servers"] == ["a:9093", "b:9093"]
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "svc"
    assert options["sasl_plain_password"] == "pw"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_plaintext_has_no_security_options():
    options = client_options(load_settings().kafka)
    assert "ssl_context" not in options and "sasl_mechanism" not in options


def test_producer_is_idempotent_with_acks_all_by_default():
    options = producer_options(load_settings().kafka)
    assert options["enable_idempotence"] is True and options["acks"] == "all"
    off = producer_options(load_settings(kafka={"enable_idempotence": False}).kafka)
    assert off["enable_idempotence"] is False and off["acks"] == "all"


async def test_consumer_takes_fetch_bounds_from_settings():
    settings = load_settings(kafka={"fetch_max_wait_ms": 50, "fetch_max_bytes": 2048})
    consumer = make_consumer(settings)
    assert consumer._fetch_max_wait_ms == 50  # the broker's longest hold of an empty fetch
    assert consumer._fetch_max_bytes == 2048
