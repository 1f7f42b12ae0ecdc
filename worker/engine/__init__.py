"""The classifier behind the worker: a protocol, so the pipeline does not know about vLLM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..prompts import Tokenizer


@dataclass(frozen=True)
class Score:
    """One prompt's answer: P("1"), and how much of the prompt came from the prefix cache."""

    p_yes: float
    prompt_tokens: int
    cached_tokens: int | None  # None where the engine does not report it per prompt


class EngineError(Exception):
    """A request the engine failed; ``fatal`` when the engine itself is gone."""

    def __init__(self, reason: str, fatal: bool = False) -> None:
        super().__init__(reason)
        self.fatal = fatal


class Classifier(Protocol):
    model_name: str
    max_model_len: int
    tokenizer: Tokenizer

    async def score(self, prompt_token_ids: list[int]) -> Score:
        """P("1") for one prompt. Raises EngineError."""
        ...

    def close(self) -> None: ...
