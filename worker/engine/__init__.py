"""The classifier behind the worker: a protocol, so the pipeline does not know about vLLM.

Outside this package, code imports this module, ``factory`` (opening an engine),
``tokenizer`` (loading the model's tokenizer, which checks need before any engine) and
``image_tokens`` (what an image takes in a prompt, which ``policies check`` reports) only;
the engines' own modules are private to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import FatalError, TransientError
from ..prompts import Tokenizer


@dataclass(frozen=True)
class Score:
    """One prompt's answer: P("1"), and how much of the prompt came from the prefix cache."""

    p_yes: float
    prompt_tokens: int
    cached_tokens: int | None  # None where the engine does not report it per prompt


class EngineError(TransientError):
    """One request the engine failed; the next may succeed (retriable, as a TransientError)."""


class EngineDead(FatalError):
    """The engine itself is gone: nothing more can be scored in this process."""


class EngineStartError(FatalError):
    """The engine could not start; the message names the cause and the setting to change."""


class Classifier(Protocol):
    model_name: str
    max_model_len: int
    tokenizer: Tokenizer

    async def score(self, prompt_token_ids: list[int], media: Sequence[Any] = ()) -> Score:
        """P("1") for one prompt, with ``media`` (RGB images) attached where its image
        placeholders stand. Raises EngineError, or EngineDead when the engine is gone.

        Engines that take images say so with ``accepts_media = True``, and say the most
        prompt positions one image takes once expanded with ``tokens_per_image`` (None
        where they cannot count it)."""
        ...

    def close(self) -> None: ...
