"""Security to Kafka, as far as the embedded broker allows: TLS, mutual TLS, SASL refusals.

TLS runs through stunnel in front of Tansu (see tls.py): the worker processes events end to
end over TLS, and over mutual TLS with a client certificate from a CA generated here. A
worker that does not trust the broker, or that the broker does not trust, stops start-up at
once with an error that names the TLS settings. Tansu with ``--authentication`` runs a real
SCRAM exchange but cannot have users provisioned, so for SASL what is shown is the refusal:
wrong credentials stop the ``moderation-worker run`` command within seconds, with one clear
line and exit code 1, no traceback, and the password in neither its output nor its logs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from worker.app import open_worker
from worker.kafka import KafkaSetupError
from worker.tools.broker import EmbeddedBroker

from .harness import (
    TEST_POLICIES,
    RunningWorker,
    committed,
    event,
    produce,
    read_topic,
    topic_names,
    verdicts,
    worker_settings,
)
from .tls import client_ssl, make_pki, tls_broker

pytestmark = pytest.mark.integration

CPU_ARGS = {"extra_args": {"enforce_eager": True, "block_size": 32}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_settings(bootstrap, test_model, topics, **kafka):
    return worker_settings(
        bootstrap,
        test_model,
        topics,
        engine=CPU_ARGS,
        kafka={"security_protocol": "SSL", "connect_retry_s": 120, **kafka},
    )


async def _round_trip(bootstrap, settings, engine, topics, client) -> None:
    """Events in, verdicts out, offsets committed: all over TLS."""
    records = [
        (
            f"t-{n}".encode(),
            event(f"t-{n}", f"note {n}" + (" an apple" if n % 2 else ""), policies=["fruit"]),
            [],
        )
        for n in range(30)
    ]
    async with RunningWorker(settings, engine) as running:
        await running.wait_assigned(60)
        await produce(bootstrap, topics["content"], records, client=client)
        results = await read_topic(
            bootstrap, topics["results"], at_least=30, timeout=120, client=client
        )
    assert {v["id"]: v["label"] for v in verdicts(results)} == {f"t-{n}": n % 2 for n in range(30)}
    positions = await committed(
        bootstrap, settings.kafka.group_id, topics["content"], client=client
    )
    assert sum(p or 0 for p in positions.values()) == 30


async def _refused(settings, engine) -> str:
    """Start-up's error: raised at once (no retrying), naming what to fix."""
    started = time.monotonic()
    with pytest.raises(KafkaSetupError) as info:
        async with open_worker(settings, engine):
            pass
    assert not info.value.retriable
    assert time.monotonic() - started < 15, "a refusal was retried as if the broker were down"
    return str(info.value)


async def test_tls_end_to_end(pki, engine, test_model, tmp_path):
    with tls_broker(pki, tmp_path) as (bootstrap, _):
        topics = topic_names("tls")
        settings = _tls_settings(bootstrap, test_model, topics, ssl_cafile=str(pki.ca))
        await _round_trip(bootstrap, settings, engine, topics, client_ssl(pki.ca))

        untrusting = _tls_settings(bootstrap, test_model, topics, ssl_cafile=str(pki.rogue_ca))
        message = await _refused(untrusting, engine)
        assert "TLS with the brokers failed" in message and "CERTIFICATE_VERIFY_FAILED" in message
        assert "kafka.ssl_cafile" in message


async def test_mutual_tls(pki, engine, test_model, tmp_path):
    with tls_broker(pki, tmp_path, mutual=True) as (bootstrap, _):
        topics = topic_names("mtls")
        mine = {"ssl_certfile": str(pki.client.cert), "ssl_keyfile": str(pki.client.key)}
        settings = _tls_settings(bootstrap, test_model, topics, ssl_cafile=str(pki.ca), **mine)
        await _round_trip(bootstrap, settings, engine, topics, client_ssl(pki.ca, pki.client))

        anonymous = _tls_settings(bootstrap, test_model, topics, ssl_cafile=str(pki.ca))
        assert "CERTIFICATE_REQUIRED" in await _refused(anonymous, engine)
        intruder = {
            "ssl_certfile": str(pki.rogue_client.cert),
            "ssl_keyfile": str(pki.rogue_client.key),
        }
        stranger = _tls_settings(bootstrap, test_model, topics, ssl_cafile=str(pki.ca), **intruder)
        assert "UNKNOWN_CA" in await _refused(stranger, engine)


def _sasl_config(tmp_path, bootstrap: str, test_model, **kafka) -> Path:
    config = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "moderation",
            "enable_idempotence": False,
            **kafka,
        },
        "topics": {**topic_names("sasl"), "create": True},
        "engine": {"model": str(test_model), "max_model_len": 4096, **CPU_ARGS},
        "policies": {"dir": str(TEST_POLICIES), "watch": False},
        "health": {"enabled": False},
        "log": {"format": "json", "level": "DEBUG"},
    }
    path = tmp_path / f"sasl-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run_cli(config, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run", "--config", str(config)],
        env={**env, **env_extra},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_wrong_sasl_credentials_stop_startup_cleanly(engine, test_model, tmp_path):
    password = f"pw-{uuid.uuid4().hex}"
    secret = tmp_path / "sasl-password"
    secret.write_text(password + "\n")
    with EmbeddedBroker(extra_args=("--authentication",)) as broker:
        bootstrap = broker.bootstrap_servers
        runs = {
            "env": _run_cli(
                _sasl_config(tmp_path, bootstrap, test_model),
                {"WORKER_KAFKA__SASL_PASSWORD": password},
            ),
            "secret file": _run_cli(
                _sasl_config(tmp_path, bootstrap, test_model, sasl_password_file=str(secret)), {}
            ),
        }
        for source, run in runs.items():
            output = run.stdout + run.stderr
            assert run.returncode == 1, (source, output)
            assert "error: the brokers refused the worker: SASL authentication failed" in run.stderr
            assert "'moderation' with SCRAM-SHA-256" in run.stderr
            assert "Traceback" not in output, output
            assert password not in output, f"the password leaked ({source})"
        # In process too: open_worker refuses at once rather than retrying.
        topics = topic_names("sasl")
        settings = worker_settings(
            bootstrap, test_model, topics, engine=CPU_ARGS,
            kafka={"security_protocol": "SASL_PLAINTEXT",
                   "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "nobody",
                   "sasl_password": password, "connect_retry_s": 120},
        )  # fmt: skip
        message = await _refused(settings, engine)
        assert "SASL authentication failed" in message and password not in message
