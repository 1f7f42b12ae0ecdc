"""A policy prefix's KV-cache footprint, from a model's config and a token count."""

from __future__ import annotations

from worker.kv_footprint import kv_bytes, kv_shape, policies_kept_hot

LLAMA = {
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "hidden_size": 128,
    "torch_dtype": "float32",
}


def test_every_layer_holds_a_key_and_a_value_per_kv_head_in_whole_blocks():
    shape = kv_shape(LLAMA, "float32")
    assert shape.bytes_per_token_per_layer == 2 * 2 * 64 * 4
    # 100 tokens fill 4 blocks of 32: 128 token slots in each of 2 layers.
    assert kv_bytes(shape, 100, block_size=32) == 128 * 2 * 1024
    assert kv_bytes(shape, 0) == 0


def test_dtype_and_grouped_query_heads_set_the_size():
    config = {**LLAMA, "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": None}
    config["hidden_size"] = 512  # head_dim from hidden / heads when the config has none
    shape = kv_shape(config, kv_cache_dtype="fp8")
    assert (shape.kv_heads, shape.head_dim, shape.bytes_per_value) == (1, 64, 1)
    # auto: the model's own dtype, as vLLM takes it (a float32 model runs in 16 bits)
    assert kv_shape(LLAMA, "auto").bytes_per_value == 2
    assert kv_shape({**LLAMA, "torch_dtype": "float16"}).bytes_per_value == 2
    assert kv_shape(LLAMA, "float32").bytes_per_value == 4


def test_sliding_window_layers_keep_at_most_their_window():
    text = {
        **LLAMA,
        "num_hidden_layers": 6,
        "sliding_window": 512,
        "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
        "torch_dtype": "bfloat16",
    }
    shape = kv_shape({"text_config": text})  # a multimodal config nests the text model
    assert (shape.full_layers, shape.window_layers, shape.window) == (1, 5, 512)
    per_layer = 2 * 2 * 64 * 2
    assert kv_bytes(shape, 3000, 16) == per_layer * (3008 + 5 * 512)


def test_policies_kept_hot_divides_the_cache_by_the_footprint():
    shape = kv_shape(LLAMA, "float32")
    one = kv_bytes(shape, 3000, 16)
    assert policies_kept_hot(shape, 3000, 10 * one + one // 2, 16) == 10
