"""``moderation-worker prompt``, run as a user runs it: tokenizer only, no engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.gemma import gemma3_dir
from worker.policies import load_policies
from worker.prompts import render

POLICIES = Path(__file__).resolve().parents[2] / "policies"
CONTENT = "\n\na basket with one mango in it  \n"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "prompt", *args, "--policies", str(POLICIES)],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
        check=False,
    )


def _fruit_text() -> str:
    return load_policies(POLICIES).resolve(["fruit"])[0].text


def test_prints_the_template_render_of_the_card_message(test_model, tokenizer):
    result = _cli(CONTENT, "--policy", "fruit", "--model", str(test_model))
    assert result.returncode == 0, result.stderr
    assert result.stdout == render(tokenizer, _fruit_text(), CONTENT)
    assert (
        "\n\n\nCONTENT\n=======\n\n\n\na basket with one mango in it<end_of_turn>" in result.stdout
    )


def test_ids_are_one_json_list_equal_to_the_full_render(test_model, tokenizer):
    result = _cli(CONTENT, "--policy", "fruit", "--model", str(test_model), "--ids")
    assert result.returncode == 0, result.stderr
    full = tokenizer.encode(render(tokenizer, _fruit_text(), CONTENT), add_special_tokens=False)
    assert orjson.loads(result.stdout) == full
    assert result.stdout.count("\n") == 1


def test_on_gemmas_own_tokenizer():
    from transformers import AutoTokenizer

    gemma = AutoTokenizer.from_pretrained(str(gemma3_dir()))
    result = _cli(CONTENT, "--policy", "fruit", "--model", str(gemma3_dir()), "--ids")
    assert result.returncode == 0, result.stderr
    full = gemma.encode(render(gemma, _fruit_text(), CONTENT), add_special_tokens=False)
    assert orjson.loads(result.stdout) == full


def test_unknown_policy_is_one_clear_line(test_model):
    result = _cli("hi", "--policy", "nope", "--model", str(test_model))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == "error: unknown policy id(s): nope"


@pytest.fixture
def transforming_model(test_model, tmp_path) -> Path:
    """The test model's tokenizer with a template that rewrites content it is given."""
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(test_model / name, tmp_path / name)
    config = orjson.loads((tmp_path / "tokenizer_config.json").read_bytes())
    config["chat_template"] = config["chat_template"].replace("| trim", "| trim | lower")
    (tmp_path / "tokenizer_config.json").write_bytes(orjson.dumps(config))
    return tmp_path


def test_a_model_whose_template_changes_content_is_refused(transforming_model):
    result = _cli("Hi", "--policy", "fruit", "--model", str(transforming_model))
    assert result.returncode == 1 and result.stdout == ""
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith(f"error: model {str(transforming_model)!r}: its chat template")
    assert line.endswith("the worker cannot build exact prompts for this model's template")
    assert "Traceback" not in result.stderr
