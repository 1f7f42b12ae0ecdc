"""Write a model directory with CoPE-B-A4B's architecture and no weights, for GPU benchmarks.

CoPE-B-A4B is built on Gemma 4 26B-A4B. With ``--engine-arg load_format=dummy`` vLLM runs this
architecture with random weights: the same work per token, answers that mean nothing, which a
throughput benchmark does not read. Use it when the real weights are not at hand:

    python scripts/dummy_model.py .cache/gemma4-26b-a4b
    moderation-worker bench --model .cache/gemma4-26b-a4b --engine-arg load_format=dummy ...

The config is the text stack of Gemma 4 26B-A4B as published (30 layers, hidden 2,816, a
sliding-window layer pattern of five to one, 128 experts with 8 active). The tokenizer is
copied from ``--tokenizer`` (default: the test model's, built if missing): its ids all fall
inside Gemma's vocabulary, and what the benchmark controls is the number of tokens per
policy and per item, not which ones.

It writes the fields vLLM's Gemma 4 model reads (``global_head_dim``,
``num_global_key_value_heads``), as transformers 5.5 to 5.8 name them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
LAYER_PATTERN = ["sliding_attention"] * 5 + ["full_attention"]

GEMMA4_26B_A4B_TEXT = {
    "architectures": ["Gemma4ForCausalLM"],
    "model_type": "gemma4_text",
    "dtype": "bfloat16",
    "vocab_size": 262144,
    "hidden_size": 2816,
    "intermediate_size": 2112,
    "num_hidden_layers": 30,
    "layer_types": LAYER_PATTERN * 5,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "global_head_dim": 512,
    "num_global_key_value_heads": 2,
    "attention_k_eq_v": True,
    "attention_bias": False,
    "enable_moe_block": True,
    "num_experts": 128,
    "top_k_experts": 8,
    "moe_intermediate_size": 704,
    "hidden_size_per_layer_input": 0,
    "num_kv_shared_layers": 0,
    "sliding_window": 1024,
    "final_logit_softcapping": 30.0,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-06,
    "max_position_embeddings": 262144,
    "rope_parameters": {
        "full_attention": {
            "rope_type": "proportional",
            "partial_rotary_factor": 0.25,
            "rope_theta": 1000000.0,
        },
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    },
    "tie_word_embeddings": True,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
}


def write_dummy_model(out: Path, tokenizer_dir: Path) -> Path:
    """Write ``config.json`` and copy the tokenizer files into ``out``; return ``out``."""
    missing = [name for name in TOKENIZER_FILES if not (tokenizer_dir / name).is_file()]
    if missing:
        raise SystemExit(f"{tokenizer_dir} lacks tokenizer files: {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(GEMMA4_26B_A4B_TEXT, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, out / name)
    return out


def _test_model_tokenizer() -> Path:
    from worker.testing.devmodel import DEFAULT_DIR, build_test_model

    return build_test_model(DEFAULT_DIR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write")
    parser.add_argument("--tokenizer", type=Path, help="directory holding tokenizer files")
    args = parser.parse_args()
    out = write_dummy_model(args.out, args.tokenizer or _test_model_tokenizer())
    print(f"wrote {out}: Gemma 4 26B-A4B text architecture; use --engine-arg load_format=dummy")


if __name__ == "__main__":
    main()
