"""A classifier that answers at once: for measuring the worker's own overhead.

It implements the Classifier protocol with no model behind it. The score is a deterministic
function of the prompt's last tokens (the end of the content and the template), so a
redelivered item gets the same verdict, and the cost does not grow with the policy's length
(``cached_tokens`` is always 0: there is no cache). It still needs the model's tokenizer,
because the worker tokenizes content and builds prompts exactly as it does for a real engine.
"""

from __future__ import annotations

import zlib
from array import array

from ..prompts import Tokenizer, answer_token_ids
from . import EngineError, Score

_TAIL = 64  # tokens hashed; enough to tell contents apart


def _score(bucket: int) -> float:
    """A stream shaped like moderation traffic: most items clearly fine, one in ten clearly
    not, one in twenty uncertain (so the review topic gets its share of copies)."""
    if bucket < 5:
        return 0.5
    if bucket < 15:
        return 0.98
    return 0.02


class InstantClassifier:
    def __init__(
        self, tokenizer: Tokenizer, max_model_len: int = 8192, model_name: str = "instant"
    ) -> None:
        answer_token_ids(tokenizer)  # the same start-up check as the real engine
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.model_name = model_name

    @classmethod
    def from_pretrained(cls, model: str, max_model_len: int = 8192) -> InstantClassifier:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(model), max_model_len)

    async def score(self, prompt_token_ids: list[int]) -> Score:
        if not prompt_token_ids:
            raise EngineError("empty prompt")
        bucket = zlib.crc32(array("q", prompt_token_ids[-_TAIL:]).tobytes()) % 100
        return Score(p_yes=_score(bucket), prompt_tokens=len(prompt_token_ids), cached_tokens=0)

    def close(self) -> None:
        pass
