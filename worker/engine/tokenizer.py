"""Loading the model's tokenizer: the one place a tokenizer library's errors are translated.

A tokenizer that cannot load is the same failure wherever it is loaded (start-up checks,
the remote engine, the tools): an ``EngineStartError`` naming the settings to change.
"""

from __future__ import annotations

from typing import Any

from ..model_files import ModelFilesError, check_name, load_pretrained
from . import EngineStartError


def load_tokenizer(name: str) -> Any:
    """The tokenizer of model ``name`` (a directory or a hub id); EngineStartError if none,
    in seconds also offline (see model_files.py)."""
    try:
        check_name(name)  # before the slow import
        from transformers import AutoTokenizer

        return load_pretrained(AutoTokenizer.from_pretrained, name)
    except ModelFilesError as exc:
        raise EngineStartError(
            f"cannot load the tokenizer of model {name!r}: {exc}. Set engine.model (env "
            "WORKER_ENGINE__MODEL) to a model directory or a hub id, or engine.tokenizer to "
            "where its tokenizer is."
        ) from None
    except Exception as exc:  # transformers raises many kinds for a missing model
        cause = " ".join(str(exc).split())[:300]
        raise EngineStartError(
            f"cannot load the tokenizer of model {name!r} ({type(exc).__name__}: {cause}). "
            "Set engine.model (env WORKER_ENGINE__MODEL) to a model directory or a hub id, "
            "or engine.tokenizer to where its tokenizer is."
        ) from None
