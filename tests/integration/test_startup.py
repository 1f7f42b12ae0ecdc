"""Start-up against the real broker: refusals become clear errors, not tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from worker.config import load_settings
from worker.kafka import KafkaSetupError, ensure_topics, start_producer

from .harness import TEST_POLICIES, topic_names

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
    from worker.tools.broker import free_port

    settings = load_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_ms": 2000}
    )
    with pytest.raises(KafkaSetupError, match="cannot reach brokers"):
        await ensure_topics(settings)


# ---- the `run` command: each start-up failure ends in one line and a non-zero exit -------


def _run_cli(env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    from worker.tools.broker import free_port

    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env = {
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "WORKER_HEALTH__ENABLED": "false",
        "WORKER_LOG__FORMAT": "json",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"],
        capture_output=True,
        env={**clean, **env},
        timeout=timeout,
        check=False,
    )


def _error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert result.returncode == 1, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def test_a_bad_policy_stops_run_before_the_model_loads(tmp_path, test_model):
    (tmp_path / "a.md").write_text("---\nid: a\n---\n")
    result = _run_cli(
        {"WORKER_ENGINE__MODEL": str(test_model), "WORKER_POLICIES__DIR": str(tmp_path)}
    )
    assert "a.md: policy body is empty" in _error_line(result)
    assert "Traceback" not in result.stderr.decode()
    assert "EngineCore" not in result.stderr.decode()  # no engine was started


def test_a_policy_too_long_for_the_model_stops_run_before_the_model_loads(tmp_path, test_model):
    words = " ".join(f"word{n}" for n in range(300))
    (tmp_path / "long.md").write_text(f"---\nid: long\n---\nFlag content about {words}.\n")
    result = _run_cli(
        {
            "WORKER_ENGINE__MODEL": str(test_model),
            "WORKER_ENGINE__MAX_MODEL_LEN": "128",
            "WORKER_POLICIES__DIR": str(tmp_path),
        }
    )
    line = _error_line(result)
    assert "policy 'long' takes" in line and "max_model_len is 128" in line
    assert "engine.max_model_len" in line
    assert "Traceback" not in result.stderr.decode()
    assert "EngineCore" not in result.stderr.decode()


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({"spam.yaml": "policies: [fruit]\nlabel: 1\n", "spam.txt": "pdq 12\n"}, "spam.txt:1: "),
        ({"spam.yaml": "policies: [gone]\nlabel: 1\n"}, "spam.yaml: policies not loaded: gone"),
    ],
)
def test_a_bad_bank_stops_run_before_the_model_loads(tmp_path, test_model, files, why):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = _run_cli(
        {
            "WORKER_ENGINE__MODEL": str(test_model),
            "WORKER_POLICIES__DIR": str(TEST_POLICIES),
            "WORKER_BANKS__DIR": str(tmp_path),
        }
    )
    assert why in _error_line(result)
    assert "Traceback" not in result.stderr.decode()
    assert "EngineCore" not in result.stderr.decode()  # no engine was started


def test_a_model_that_is_not_there_stops_run_naming_the_setting(tmp_path):
    result = _run_cli(
        {"WORKER_ENGINE__MODEL": str(tmp_path / "no-model"), "WORKER_POLICIES__DIR": "policies"}
    )
    line = _error_line(result)
    assert "no-model" in line and "engine.model" in line
    assert "Traceback" not in result.stderr.decode()


def test_an_engine_that_cannot_start_is_one_line_with_its_cause(test_model, broker):
    result = _run_cli(
        {
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "WORKER_KAFKA__ENABLE_IDEMPOTENCE": "false",
            "WORKER_TOPICS__CREATE": "true",  # brokers and topics are checked before the engine
            "WORKER_ENGINE__MODEL": str(test_model),
            "WORKER_ENGINE__MAX_MODEL_LEN": "4096",
            "WORKER_ENGINE__EXTRA_ARGS": '{"enforce_eager": true, "block_size": 32}',
            "WORKER_POLICIES__DIR": str(TEST_POLICIES),
            "VLLM_CPU_KVCACHE_SPACE": "100000",  # GiB: more than any machine here has
        }
    )
    line = _error_line(result)
    assert line.startswith("error: the engine could not start: ValueError: ")
    assert "VLLM_CPU_KVCACHE_SPACE" in line and "engine.gpu_memory_utilization" in line


async def test_an_unreachable_broker_stops_run_worker_once_its_budget_is_spent(
    test_model, tokenizer
):
    from worker.app import run_worker
    from worker.engine.instant import InstantClassifier
    from worker.errors import FatalError
    from worker.tools.broker import free_port

    async def instant(settings):
        return InstantClassifier(tokenizer, 4096)

    settings = load_settings(
        kafka={
            "bootstrap_servers": f"127.0.0.1:{free_port()}",
            "request_timeout_ms": 1000,
            "connect_retry_s": 1,
        },
        engine={"model": str(test_model), "max_model_len": 4096},
        policies={"dir": str(TEST_POLICIES)},
        health={"enabled": False},
    )
    with pytest.raises(FatalError) as info:
        await run_worker(settings, instant)
    message = str(info.value)
    assert "cannot reach brokers" in message and "\n" not in message
