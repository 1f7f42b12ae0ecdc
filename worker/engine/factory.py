"""Opening an engine: the way in to the concrete engines from outside this package.

The rest of the worker codes against the protocol in ``worker.engine``; what it needs of a
particular engine goes through here: starting the one the settings name (vLLM in this
process, or remote vLLM servers), the instant engine that measures the worker's own
overhead, and the vLLM arguments and sampling of the local engine, for the benchmarks that
drive vLLM directly and must run it exactly as the worker does.
"""

from __future__ import annotations

from ..config import EngineSettings, RemoteEngineSettings
from . import Classifier
from .instant import InstantClassifier
from .remote import RemoteClassifier
from .vllm import VllmClassifier, engine_args, sampling_params

__all__ = ["engine_args", "instant_classifier", "sampling_params", "start_classifier"]


async def start_classifier(settings: EngineSettings) -> Classifier:
    """The engine ``settings`` name, started and checked. Raises EngineStartError."""
    if isinstance(settings, RemoteEngineSettings):
        return await RemoteClassifier.start(settings)
    return await VllmClassifier.start(settings)


def instant_classifier(model: str, max_model_len: int = 8192) -> Classifier:
    """An engine that answers at once, with ``model``'s tokenizer (no model weights)."""
    return InstantClassifier.from_pretrained(model, max_model_len)
