"""The classifier on vLLM's in-process AsyncLLM: one output token, processed logprobs."""

from __future__ import annotations

import itertools
import math
from typing import Any

from ..config import EngineSettings
from ..prompts import Tokenizer, answer_token_ids
from . import EngineError, Score


def engine_args(settings: EngineSettings) -> dict[str, Any]:
    """vLLM AsyncEngineArgs from our settings. Prefix caching and logprob mode are not optional."""
    args: dict[str, Any] = {
        "model": settings.model,
        "tokenizer": settings.tokenizer,
        "served_model_name": settings.served_model_name,
        "dtype": settings.dtype,
        "max_model_len": settings.max_model_len,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "max_num_seqs": settings.max_num_seqs,
        "max_num_batched_tokens": settings.max_num_batched_tokens,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "quantization": settings.quantization,
        "load_format": settings.load_format,
        "seed": settings.seed,
        **settings.extra_args,
    }
    args = {k: v for k, v in args.items() if v is not None}
    args.update(
        enable_prefix_caching=True,
        logprobs_mode="processed_logprobs",
        max_logprobs=max(2, int(settings.extra_args.get("max_logprobs", 2))),
        disable_log_stats=False,
    )
    return args


def sampling_params(no: int, yes: int) -> Any:
    """One greedy token restricted to the two answers, with both answers' logprobs."""
    from vllm import SamplingParams

    return SamplingParams(
        max_tokens=1,
        temperature=0.0,
        allowed_token_ids=[no, yes],
        logprobs=2,
        detokenize=False,
    )


class VllmClassifier:
    """Scores token-id prompts. Build with ``await VllmClassifier.start(settings)``."""

    def __init__(self, engine: Any, tokenizer: Tokenizer, model_name: str, max_model_len: int):
        self._engine = engine
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_model_len = max_model_len
        self._no, self._yes = answer_token_ids(tokenizer)
        self._params = sampling_params(self._no, self._yes)
        self._ids = itertools.count()

    @classmethod
    async def start(cls, settings: EngineSettings) -> VllmClassifier:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args(settings)))
        try:
            tokenizer = engine.get_tokenizer()
            name = settings.served_model_name or settings.model
            return cls(engine, tokenizer, name, engine.model_config.max_model_len)
        except Exception:
            engine.shutdown()
            raise

    async def score(self, prompt_token_ids: list[int]) -> Score:
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        try:
            async for output in self._engine.generate(
                TokensPrompt(prompt_token_ids=prompt_token_ids),
                self._params,
                request_id=f"mw-{next(self._ids)}",
            ):
                final = output
        except EngineDeadError as exc:
            raise EngineError(f"engine died: {exc}", fatal=True) from exc
        except Exception as exc:
            if self._engine.errored:
                raise EngineError(f"engine died: {exc}", fatal=True) from exc
            raise EngineError(f"engine request failed: {type(exc).__name__}: {exc}") from exc
        if final is None or not final.outputs or not final.outputs[0].logprobs:
            raise EngineError("engine returned no logprobs")
        return Score(
            p_yes=self._p_yes(final.outputs[0].logprobs[0]),
            prompt_tokens=len(prompt_token_ids),
            cached_tokens=final.num_cached_tokens or 0,
        )

    def _p_yes(self, logprobs: dict[int, Any]) -> float:
        # Processed logprobs are taken after the allowed-token mask, so the two sum to one;
        # normalising anyway guards against rounding.
        yes = math.exp(logprobs[self._yes].logprob) if self._yes in logprobs else 0.0
        no = math.exp(logprobs[self._no].logprob) if self._no in logprobs else 0.0
        total = yes + no
        if total <= 0:
            raise EngineError("engine returned neither answer token")
        return yes / total

    @property
    def dead(self) -> bool:
        return self._engine is None or bool(self._engine.errored)

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()
