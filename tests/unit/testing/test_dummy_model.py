"""scripts/dummy_model.py writes a model directory vLLM can load with random weights."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "scripts" / "dummy_model.py"


def _script():
    spec = importlib.util.spec_from_file_location("dummy_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_writes_the_architecture_and_the_tokenizer(tmp_path, test_model):
    from transformers import AutoConfig, AutoTokenizer

    out = _script().write_dummy_model(tmp_path / "model", Path(test_model))
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == "gemma4_text"
    assert (config.num_hidden_layers, config.hidden_size) == (30, 2816)
    assert (config.num_experts, config.top_k_experts) == (128, 8)
    assert config.layer_types.count("full_attention") == 5
    raw = json.loads((out / "config.json").read_text())
    assert (raw["global_head_dim"], raw["num_global_key_value_heads"]) == (512, 2)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) <= config.vocab_size  # every id the bench sends is a model id


def test_refuses_a_directory_without_a_tokenizer(tmp_path):
    with pytest.raises(SystemExit, match="tokenizer.json"):
        _script().write_dummy_model(tmp_path / "model", tmp_path)
