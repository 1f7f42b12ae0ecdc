"""The command line, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from .harness import TEST_POLICIES

pytestmark = pytest.mark.integration

CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "WORKER_ENGINE__MAX_MODEL_LEN": "4096",
    "WORKER_ENGINE__EXTRA_ARGS": '{"enforce_eager": true, "block_size": 32}',
}


def _cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        input=stdin,
        capture_output=True,
        env={**clean, **(env or {})},
        timeout=timeout,
        check=False,
    )


def test_classify_prints_a_verdict_per_text_and_policy(test_model):
    result = _cli(
        "classify",
        "a basket with one mango in it",
        "-p",
        "fruit",
        "-p",
        "nature",
        "--model",
        str(test_model),
        "--policies",
        str(TEST_POLICIES),
        env=CPU_ENV,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    [line] = result.stdout.decode().strip().splitlines()
    verdict = orjson.loads(line)
    labels = {v["policy"]: v["label"] for v in verdict["verdicts"]}
    assert labels == {"fruit": 1, "nature": 0}
    assert verdict["label"] == 1 and verdict["source"]["topic"] == "argv"
    # The engine is shut down once and freed before exit: nothing ignored at teardown.
    assert "Exception ignored" not in result.stderr.decode()


def test_policies_check_prints_token_lengths(test_model):
    result = _cli(
        "policies",
        "check",
        "policies",
        "--tokenizer",
        str(test_model),
        env={"WORKER_ENGINE__MAX_MODEL_LEN": "8192"},
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    for policy_id in ("hate-speech", "harassment", "self-harm", "toxic-speech"):
        assert policy_id in out
    assert "prompt tokens" in out


def test_policies_check_rejects_a_bad_pack(tmp_path, test_model):
    (tmp_path / "a.md").write_text("---\nid: a\n---\n")
    result = _cli("policies", "check", str(tmp_path), "--tokenizer", str(test_model))
    assert result.returncode == 1
    assert "policy body is empty" in result.stderr.decode()


def test_bad_config_stops_start_up_naming_the_field(tmp_path):
    result = _cli("run", env={"WORKER_BATCH__MAX_IN_FLIGHT": "-3"})
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "batch.max_in_flight" in err and "WORKER_BATCH__MAX_IN_FLIGHT" in err
    assert "Traceback" not in err


def test_demo_streams_samples_and_prints_verdicts(test_model, tmp_path):
    result = _cli("demo", "--model", str(test_model), "--events", "12", env=CPU_ENV, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()[-3000:]
    out = result.stdout.decode()
    assert "demo-11" in out and "dead-letter" in out
