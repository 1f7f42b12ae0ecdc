"""How much KV cache a policy prefix holds on the engine: pure functions of the model's
config (its ``config.json`` as a dict) and a token count.

A prefix kept hot in vLLM's prefix cache holds, in every attention layer, a key and a value
per KV head for each of its tokens, rounded up to whole cache blocks. Layers with a sliding
window (Gemma's local layers) keep at most the window's tokens. So the number of long
policies one engine keeps hot is its KV-cache size divided by their footprints, less the
room the items in flight need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_DTYPE_BYTES = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "half": 2,
    "float": 4,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}


@dataclass(frozen=True)
class KvShape:
    """What one token costs in each kind of attention layer."""

    full_layers: int
    window_layers: int
    window: int | None  # tokens a sliding-window layer keeps
    kv_heads: int
    head_dim: int
    bytes_per_value: int

    @property
    def bytes_per_token_per_layer(self) -> int:
        return 2 * self.kv_heads * self.head_dim * self.bytes_per_value  # a key and a value


def kv_shape(config: Mapping[str, Any], kv_cache_dtype: str | None = None) -> KvShape:
    """The KV shape from a model's config; a multimodal config's ``text_config`` is used.

    ``kv_cache_dtype`` (vLLM's ``kv_cache_dtype``, or the engine's ``dtype``, e.g. ``fp8``,
    ``bfloat16``) wins over the model's own dtype unless it is ``auto``.
    """
    text = config.get("text_config") or config
    layers = int(text["num_hidden_layers"])
    heads = int(text["num_attention_heads"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or text["hidden_size"] // heads)
    dtype = kv_cache_dtype if kv_cache_dtype not in (None, "auto") else _model_dtype(text, config)
    window = text.get("sliding_window")
    kinds = text.get("layer_types") or []
    sliding = sum(1 for kind in kinds if kind == "sliding_attention") if window else 0
    return KvShape(
        full_layers=layers - sliding,
        window_layers=sliding,
        window=int(window) if sliding else None,
        kv_heads=kv_heads,
        head_dim=head_dim,
        bytes_per_value=_DTYPE_BYTES.get(str(dtype).removeprefix("torch."), 2),
    )


def kv_bytes(shape: KvShape, tokens: int, block_size: int = 16) -> int:
    """Bytes of KV cache ``tokens`` of prefix hold, in whole blocks of ``block_size``."""
    full = _blocks(tokens, block_size) * block_size
    windowed = _blocks(min(tokens, shape.window or 0), block_size) * block_size
    per_layer = shape.bytes_per_token_per_layer
    return per_layer * (shape.full_layers * full + shape.window_layers * windowed)


def policies_kept_hot(
    shape: KvShape, prefix_tokens: int, kv_cache_bytes: int, block_size: int = 16
) -> int:
    """How many prefixes of ``prefix_tokens`` fit in ``kv_cache_bytes`` at once."""
    return kv_cache_bytes // max(1, kv_bytes(shape, prefix_tokens, block_size))


def _blocks(tokens: int, block_size: int) -> int:
    return math.ceil(max(0, tokens) / block_size)


def _model_dtype(text: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The dtype vLLM's ``auto`` picks: the model's own, but 16-bit for a float32 model."""
    for source in (text, config):
        for key in ("torch_dtype", "dtype"):
            if source.get(key):
                dtype = str(source[key]).removeprefix("torch.")
                return "bfloat16" if dtype in ("float32", "float") else dtype
    return "bfloat16"
