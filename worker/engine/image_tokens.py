"""How many prompt positions one image (one frame) takes in the engine, from vLLM's own
processing of the model.

The chat template writes a placeholder per image and vLLM's processor for the model expands
it into the image's tokens (Gemma 4: a begin-of-image token, up to 280 soft tokens and an
end-of-image token; the seeing test model: 4). The count is read the way vLLM sizes its own
buffers at start-up: its processor turns its dummy image of the size that gives the most
tokens (``get_dummy_mm_inputs``) into a prompt, and the length of that image's placeholder
range is every position it takes, not only its embeddings. It is the most an image can take:
images the processor gives fewer tokens fit with room to spare.

The in-process engine asks its own model config. The remote engine and ``policies check``
have no engine: they build the same config from the model's files (where the tokenizer is
read from), which needs the ``vllm`` package (both worker images have it) and takes seconds,
so it is asked only of models whose config has a vision part.
"""

from __future__ import annotations

from typing import Any

from ..model_files import pretrained_config


def engine_tokens_per_image(model_config: Any) -> int | None:
    """The most prompt positions one image takes for the model of vLLM's ``model_config``;
    None when the model takes no images. Blocking (it runs the model's processor once)."""
    from vllm.multimodal import MULTIMODAL_REGISTRY

    if not getattr(model_config, "is_multimodal_model", False):
        return None
    processor = MULTIMODAL_REGISTRY.create_processor(model_config)
    if "image" not in processor.info.supported_mm_limits:
        return None
    inputs = processor.get_dummy_mm_inputs({"image": 1})
    return max(placeholder.length for placeholder in inputs["mm_placeholders"]["image"])


def model_tokens_per_image(model: str) -> int | None:
    """``engine_tokens_per_image`` for the model whose files are at ``model`` (a directory or
    a hub id), with no engine; None when its config has no vision part. Raises
    ImageTokensUnknown saying why it cannot be counted."""
    config = pretrained_config(model)
    if config is None:
        raise ImageTokensUnknown(f"no model config at {model!r} to count an image's tokens")
    if getattr(config, "vision_config", None) is None:
        return None
    try:
        from vllm.config import ModelConfig

        return engine_tokens_per_image(ModelConfig(model=model, tokenizer=model))
    except Exception as exc:  # vLLM raises many kinds for files it cannot use
        cause = " ".join(str(exc).split())[:300]
        raise ImageTokensUnknown(
            f"cannot count the tokens of an image for model {model!r} "
            f"({type(exc).__name__}: {cause})"
        ) from None


class ImageTokensUnknown(Exception):
    """The model's files do not say how many tokens an image takes; the message says why."""
