"""The command line, run as a user runs it."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys

import orjson
import pytest

from worker.hashbanks.signals import image_pdq
from worker.testing import media_samples as samples

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


def test_classify_shows_what_a_hash_bank_decided(test_model, tmp_path):
    (tmp_path / "memes.yaml").write_text("policies: [fruit]\nlabel: 0\nsignal_type: raw_text\n")
    (tmp_path / "memes.txt").write_text("a basket with one mango in it\n")
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
        env={**CPU_ENV, "WORKER_BANKS__DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    fruit, nature = orjson.loads(result.stdout)["verdicts"]
    # The model says 1 for fruit (the test above); the known-good bank says 0.
    assert (fruit["label"], fruit["source"], fruit["score"]) == (0, "hash_match", None)
    assert fruit["match"] == {"bank": "memes", "signal_type": "raw_text", "distance": 0}
    assert (nature["label"], nature["source"]) == (0, "model")


def test_classify_shows_an_image_a_hash_bank_decided(seeing_model, tmp_path):
    picture = samples.picture()
    (tmp_path / "removed.yaml").write_text("policies: [fruit]\nlabel: 1\nsignal_type: pdq\n")
    (tmp_path / "removed.txt").write_text(f"{image_pdq(samples.picture(box=8))[0]}\n")
    line = {"id": "img", "media": [{"type": "image", "data": base64.b64encode(picture).decode()}]}
    result = _cli(
        "classify",
        "-p",
        "fruit",
        "-p",
        "nature",
        "--model",
        str(seeing_model),
        "--policies",
        str(TEST_POLICIES),
        stdin=orjson.dumps(line) + b"\n",
        env={**CPU_ENV, "WORKER_BANKS__DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    verdict = orjson.loads(result.stdout)
    fruit, nature = verdict["verdicts"]
    # The seeing model sees nothing in the picture; the bank holds a near copy of it.
    distance = int.bit_count(
        int(image_pdq(picture)[0], 16) ^ int(image_pdq(samples.picture(box=8))[0], 16)
    )
    assert 0 < distance <= 31
    assert (fruit["label"], fruit["source"], fruit["score"]) == (1, "hash_match", None)
    assert fruit["match"] == {"bank": "removed", "signal_type": "pdq", "distance": distance}
    assert (nature["label"], nature["source"]) == (0, "model")
    assert verdict["media"][0]["where"] == "media[0]"


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
    # Each prefix's KV-cache footprint on the test model (2 layers, 2 KV heads of 64, run in
    # bf16: 1 KiB per token): a few MiB for prompts of a few thousand tokens.
    rows = [line for line in out.splitlines() if "id hate-speech" in line]
    mib = re.findall(r"([0-9]+\.[0-9]) MiB of KV cache", rows[0])
    assert mib and 0.5 < float(mib[0]) < 20, rows


def test_policies_check_rejects_a_bad_pack(tmp_path, test_model):
    (tmp_path / "a.md").write_text("---\nid: a\n---\n")
    result = _cli("policies", "check", str(tmp_path), "--tokenizer", str(test_model))
    assert result.returncode == 1
    assert "error    a.md: policy body is empty" in result.stdout.decode()


def _published_pack(directory):
    """Plain Markdown and text, as published packs come: no front matter."""
    (directory / "Boats.md").write_text(
        "# Boat gear\n\nFlag content that mentions any of: anchor.\n"
    )
    (directory / "orchard.txt").write_text("Flag content that mentions any of: mango.\n")
    (directory / "nature.md").write_text((TEST_POLICIES / "nature.md").read_text())
    return directory


def test_policies_check_says_where_each_id_comes_from(tmp_path, test_model):
    pack = _published_pack(tmp_path)
    result = _cli("policies", "check", str(pack), "--tokenizer", str(test_model))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "loaded   Boats.md: id boats (file name), title 'Boat gear'" in out
    assert "loaded   orchard.txt: id orchard (file name), title 'orchard'" in out
    assert "loaded   nature.md: id nature (front matter), title 'Nature mentions" in out


def test_policies_without_front_matter_steer_the_model(tmp_path, test_model):
    pack = _published_pack(tmp_path)
    events = [
        {"id": "boat", "content": "a boat with an anchor"},
        {"id": "fruit", "content": "a ripe mango"},
    ]
    result = _cli(
        "classify", "-p", "boats", "-p", "orchard", "-p", "nature",
        "--model", str(test_model), "--policies", str(pack), env=CPU_ENV,
        stdin=b"\n".join(orjson.dumps(e) for e in events),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    lines = [orjson.loads(line) for line in result.stdout.decode().strip().splitlines()]
    labels = {v["id"]: {p["policy"]: p["label"] for p in v["verdicts"]} for v in lines}
    assert labels == {
        "boat": {"boats": 1, "orchard": 0, "nature": 0},
        "fruit": {"boats": 0, "orchard": 1, "nature": 0},
    }


def test_bad_config_stops_start_up_naming_the_field(tmp_path):
    result = _cli("run", env={"WORKER_BATCH__MAX_IN_FLIGHT": "-3"})
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "batch.max_in_flight" in err and "WORKER_BATCH__MAX_IN_FLIGHT" in err
    assert "Traceback" not in err


def test_demo_shows_decisions_review_and_dead_letters(test_model):
    """Without --model the demo runs the test model on policies it follows (built beforehand
    by the fixture into the same .cache directory)."""
    env = {**CPU_ENV, "COLUMNS": "200"}  # one table row per line
    result = _cli("demo", "--events", "12", env=env, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()[-3000:]
    out = result.stdout.decode()
    rows, images = {}, {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 6 and cells[1].startswith("demo-"):
            rows[cells[1]] = (cells[0], cells[3], cells[4])  # topic, label, route
        if len(cells) == 6 and cells[1].startswith("image-"):
            images[cells[1]] = cells[3]
    assert len(rows) == 12, out
    # The model sees: a red square shows an apple (fruit), a blue one a river (no policy).
    assert images == {"image-0": "1", "image-1": "0"}, out
    # The samples cycle through: apple (fruit), otter (wildlife: review), none, mango and
    # falcon (both), none, none.
    expected = [("1", "auto"), ("1", "review"), ("0", "auto"), ("1", "review")]
    expected += [("0", "auto"), ("0", "auto")]
    for n in range(12):
        assert rows[f"demo-{n}"][1:] == expected[n % 6], (n, out)
    assert out.count("dead-letter") >= 3
    assert "answers 1 exactly when the content names a word its policy lists" in out
