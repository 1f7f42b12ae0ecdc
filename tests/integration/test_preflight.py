"""Each mistake a new user makes, tried through the real command: it ends in one line with
the right exit code, and no engine is started (the tripwire in front of vLLM stays intact).

Exit codes: 2 for the command line and settings (an unknown WORKER_* variable, a value that
cannot be read, a -p id that is not loaded); 1 for what the settings point at (policies,
topics, brokers, the tokenizer).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.kafka import create_topics
from worker.tools.broker import free_port

from .harness import TEST_POLICIES, topic_names

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PACKS = REPO / "tests" / "packs"
TRIPWIRE = REPO / "tests" / "fixtures" / "engine_tripwire"
COMMAND = Path(sys.executable).parent / "moderation-worker"
# The tripwire proves no engine started; this bound only catches a stall. It is generous for
# a loaded, shared machine, where the command's imports alone took up to 47 s (2 cores, load
# average 16); tests/unit/test_model_files.py bounds the offline hub check itself.
QUICK_S = 120.0


@dataclass
class Ran:
    code: int
    out: str
    err: str
    seconds: float
    engine_started: bool

    def one_error_line(self) -> str:
        lines = [line for line in self.err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, self.err[-3000:]
        assert "Traceback" not in self.err, self.err[-3000:]
        return lines[0]


def worker(*args: str, env: dict[str, str] | None = None, tmp: Path) -> Ran:
    """``moderation-worker ARGS`` with only ``env`` as WORKER_* settings and vLLM tripwired.

    The model hub's address is a closed loopback port: nothing leaves the machine, and a
    command that asks the hub finds it unreachable, as offline."""
    marker = tmp / f"engine-started-{time.monotonic_ns()}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "HF_"))}
    path = os.pathsep.join([str(TRIPWIRE), str(REPO), clean.get("PYTHONPATH", "")])
    full_env = {
        **clean,
        "PYTHONPATH": path,
        "ENGINE_TRIPWIRE": str(marker),
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "HF_HOME": str(tmp / "hf-home"),  # an empty cache
        "COLUMNS": "200",
        **(env or {}),
    }
    start = time.monotonic()
    result = subprocess.run(
        [str(COMMAND), *args], capture_output=True, env=full_env, timeout=300, check=False
    )
    seconds = time.monotonic() - start
    return Ran(
        result.returncode,
        result.stdout.decode(),
        result.stderr.decode(),
        seconds,
        marker.exists(),
    )


def _failed_quickly(ran: Ran, code: int) -> str:
    line = ran.one_error_line()
    assert ran.code == code, (ran.code, ran.err[-2000:])
    assert not ran.engine_started
    assert ran.seconds < QUICK_S, ran.seconds
    return line


# ---- settings from the environment ----------------------------------------------------


def test_a_misspelt_variable_stops_run_naming_the_real_one(tmp_path):
    ran = worker("run", env={"WORKER_ENGNIE__MAX_MODEL_LEN": "4096"}, tmp=tmp_path)
    line = _failed_quickly(ran, 2)
    assert "WORKER_ENGNIE__MAX_MODEL_LEN names no setting" in line
    assert "'WORKER_ENGINE__MAX_MODEL_LEN'" in line


def test_one_underscore_short_is_named_too(tmp_path):
    ran = worker("classify", "hi", env={"WORKER_KAFKA_BOOTSTRAP_SERVERS": "x:1"}, tmp=tmp_path)
    assert "'WORKER_KAFKA__BOOTSTRAP_SERVERS'" in _failed_quickly(ran, 2)


def test_a_mapping_that_is_not_key_value_is_one_line(tmp_path):
    ran = worker("run", env={"WORKER_SHADOW__PAIRS": "draft"}, tmp=tmp_path)
    assert "WORKER_SHADOW__PAIRS: 'draft' is not key:value" in _failed_quickly(ran, 2)


def test_plain_lists_and_pairs_reach_the_pack_check(tmp_path, test_model):
    """WORKER_POLICIES__DEFAULT=a,b and WORKER_SHADOW__PAIRS=a:b are read, not a traceback;
    the pack check then finds what they name."""
    env = {
        "WORKER_POLICIES__DIR": str(TEST_POLICIES),
        "WORKER_POLICIES__DEFAULT": "fruit,nature",
        "WORKER_SHADOW__PAIRS": "tools:fruit",
    }
    ran = worker("policies", "check", "--tokenizer", str(test_model), env=env, tmp=tmp_path)
    assert ran.code == 0, ran.out + ran.err
    env["WORKER_SHADOW__PAIRS"] = "draft-policy:fruit"
    ran = worker("policies", "check", "--tokenizer", str(test_model), env=env, tmp=tmp_path)
    assert ran.code == 1
    assert "error    pack: shadow.pairs names shadow policy 'draft-policy'" in ran.out


# ---- policies check: the pack that will be deployed -------------------------------------


def test_policies_check_reads_the_configured_directory(tmp_path, test_model):
    bad = tmp_path / "deployed"
    bad.mkdir()
    (bad / "a.md").write_text("---\nid: a\n---\n")
    config = tmp_path / "worker.yaml"
    config.write_text(f"policies:\n  dir: {bad}\n")
    tokenizer = ("--tokenizer", str(test_model))
    for how in ({"env": {"WORKER_POLICIES__DIR": str(bad)}}, {"args": ("--config", str(config))}):
        args = ("policies", "check", *tokenizer, *how.get("args", ()))
        ran = worker(*args, env=how.get("env"), tmp=tmp_path)
        assert ran.code == 1, ran.out + ran.err
        assert "error    a.md: policy body is empty" in ran.out
    # The directory argument overrides the settings when it is given.
    args = ("policies", "check", str(TEST_POLICIES), *tokenizer, "--config", str(config))
    ran = worker(*args, tmp=tmp_path)
    assert ran.code == 0 and "loaded   fruit.md: id fruit (front matter)" in ran.out


def test_policies_check_reports_each_file_of_a_published_pack(tmp_path, test_model):
    ran = worker(
        "policies", "check", str(PACKS / "violent-groups"), "--tokenizer", str(test_model),
        tmp=tmp_path,
    )  # fmt: skip
    assert ran.code == 0, ran.out + ran.err
    lines = ran.out.splitlines()
    assert lines[1].startswith(
        "loaded   vg-policy/vg-policy: id vg-policy (folder name), title 'Sample Violent "
        "Groups Policy for Text Classification', "
    )
    assert "prompt tokens" in lines[1] and "left for content" in lines[1]
    assert "skipped  vg-policy/evaluation report.md: a report" in ran.out
    assert "skipped  vg-policy/annex 1 - how we define violent groups.md: supporting" in ran.out
    assert lines[-1] == "1 loaded, 0 errors, 3 not policies, 0 warnings"


def test_warnings_fail_the_check_only_with_strict(tmp_path, test_model):
    args = ("policies", "check", str(PACKS / "hackathon"), "--tokenizer", str(test_model))
    ran = worker(*args, tmp=tmp_path)
    assert ran.code == 0, ran.out + ran.err
    assert "warning: line 1: a bare 'POLICY' line reads as the prompt's own heading" in ran.out
    assert "warning: line 5 (and 1 more line): asks for JSON output" in ran.out
    assert ran.out.splitlines()[-1].endswith(" warnings") and " 0 warnings" not in ran.out
    strict = worker(*args, "--strict", tmp=tmp_path)
    assert strict.code == 1 and strict.out == ran.out


def test_misspelt_front_matter_keys_are_warnings_naming_ours(tmp_path, test_model):
    args = ("policies", "check", str(PACKS / "our-typos"), "--tokenizer", str(test_model))
    ran = worker(*args, "--strict", tmp=tmp_path)
    assert ran.code == 1
    assert "'threshhold' is not one the worker reads (did you mean 'threshold'?)" in ran.out
    assert "'review_lo' is not one the worker reads (did you mean 'review_low'?)" in ran.out
    assert "loaded   Hate Speech.md: id hate-speech (file name)" in ran.out


def test_offline_the_check_fails_in_seconds_and_works_with_a_local_tokenizer(tmp_path, test_model):
    ran = worker("policies", "check", str(TEST_POLICIES), tmp=tmp_path)  # hub id, no hub
    line = _failed_quickly(ran, 1)
    assert "'zentropi-ai/cope-b-a4b' is not in the local cache" in line
    assert "cannot be reached" in line and "HF_HUB_OFFLINE=1" in line
    missing = worker(
        "policies", "check", str(TEST_POLICIES), "--tokenizer", str(tmp_path / "nope"),
        tmp=tmp_path,
    )  # fmt: skip
    assert "nope: no such directory" in _failed_quickly(missing, 1)


def test_prompt_takes_a_local_tokenizer(tmp_path, test_model):
    ran = worker(
        "prompt", "a ripe mango", "-p", "fruit", "--tokenizer", str(test_model),
        "--policies", str(TEST_POLICIES), tmp=tmp_path,
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert "POLICY\n======" in ran.out and "a ripe mango" in ran.out


# ---- classify and eval: names on the command line ---------------------------------------


def test_a_wrong_policy_id_in_classify_is_found_before_the_engine(tmp_path, test_model):
    ran = worker(
        "classify", "a ripe mango", "-p", "fruits", "--model", str(test_model),
        "--policies", str(TEST_POLICIES), tmp=tmp_path,
    )  # fmt: skip
    line = _failed_quickly(ran, 2)
    assert "--policy: unknown policy id(s): fruits (loaded: fruit, nature, tools)" in line


def test_a_wrong_policy_id_in_eval_is_found_before_the_engine(tmp_path, test_model):
    dataset = tmp_path / "golden.jsonl"
    dataset.write_text('{"id": "1", "content": "x", "label": 1}\n')
    ran = worker(
        "eval", "--dataset", str(dataset), "--policy", "fruits", "--model", str(test_model),
        "--policies", str(TEST_POLICIES), "--out", str(tmp_path / "report"), tmp=tmp_path,
    )  # fmt: skip
    assert "unknown policy 'fruits'" in _failed_quickly(ran, 2)


def test_a_policy_too_long_for_eval_is_found_before_the_engine(tmp_path, test_model):
    words = " ".join(f"word{n}" for n in range(300))
    (tmp_path / "long.md").write_text(f"---\nid: long\n---\nFlag content about {words}.\n")
    dataset = tmp_path / "golden.jsonl"
    dataset.write_text('{"id": "1", "content": "x", "label": 1}\n')
    ran = worker(
        "eval", "--dataset", str(dataset), "--policy", "long", "--model", str(test_model),
        "--policies", str(tmp_path), "--out", str(tmp_path / "report"),
        env={"WORKER_ENGINE__MAX_MODEL_LEN": "128"}, tmp=tmp_path,
    )  # fmt: skip
    line = _failed_quickly(ran, 2)
    assert "policy 'long' takes" in line and "max_model_len is 128" in line


# ---- run: brokers and topics before the model -------------------------------------------


def _run_env(test_model: Path, bootstrap: str, **extra: str) -> dict[str, str]:
    return {
        "WORKER_ENGINE__MODEL": str(test_model),
        "WORKER_POLICIES__DIR": str(TEST_POLICIES),
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "WORKER_KAFKA__ENABLE_IDEMPOTENCE": "false",
        "WORKER_HEALTH__ENABLED": "false",
        "WORKER_LOG__FORMAT": "json",
        **extra,
    }


def test_unreachable_brokers_stop_run_before_the_model_loads(tmp_path, test_model):
    env = _run_env(test_model, f"127.0.0.1:{free_port()}", WORKER_KAFKA__CONNECT_RETRY_S="0")
    line = _failed_quickly(worker("run", env=env, tmp=tmp_path), 1)
    assert "cannot reach brokers" in line


def test_missing_topics_stop_run_before_the_model_loads(tmp_path, test_model, broker):
    topics = topic_names("preflight")
    names = {f"WORKER_TOPICS__{k.upper()}": v for k, v in topics.items()}
    env = _run_env(test_model, broker.bootstrap_servers, **names)
    line = _failed_quickly(worker("run", env=env, tmp=tmp_path), 1)
    assert f"topics missing on the broker: {topics['content']}," in line
    # No shadow policy in the pack: its topic is not required.
    assert topics["shadow"] not in line


async def test_the_shadow_topic_is_required_only_with_a_shadow_policy(tmp_path, test_model, broker):
    topics = topic_names("preflight-shadow")
    present = [name for key, name in topics.items() if key != "shadow"]
    await create_topics(broker.bootstrap_servers, present, 1)
    names = {f"WORKER_TOPICS__{k.upper()}": v for k, v in topics.items()}
    env = _run_env(test_model, broker.bootstrap_servers, **names)
    env["WORKER_SHADOW__PAIRS"] = "tools:fruit"
    line = _failed_quickly(worker("run", env=env, tmp=tmp_path), 1)
    assert line.startswith(f"error: topics missing on the broker: {topics['shadow']}.")
