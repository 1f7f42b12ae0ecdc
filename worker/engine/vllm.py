"""The classifier on vLLM's in-process AsyncLLM: one output token, processed logprobs."""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from ..config import LocalEngineSettings
from ..prompts import Tokenizer, answer_token_ids
from ..subprocesses import StarterThread, bind_children
from . import EngineDead, EngineError, EngineStartError, Score
from .failures import failure_notes, start_error
from .image_tokens import engine_tokens_per_image
from .orphans import find_orphans, orphans_line

log = structlog.get_logger("worker.engine")


def engine_args(settings: LocalEngineSettings) -> dict[str, Any]:
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


@dataclass(eq=False)
class EngineStats:
    """What the engine last reported about itself; read by /metrics."""

    kv_cache_usage: float | None = None  # fraction of KV cache blocks in use
    running: int = 0
    waiting: int = 0


def stats_logger(stats: EngineStats) -> Callable[[Any, int], Any]:
    """A vLLM stat logger factory that copies each scheduler report into ``stats``."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _Recorder(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            if scheduler_stats is not None:
                stats.kv_cache_usage = scheduler_stats.kv_cache_usage
                stats.running = scheduler_stats.num_running_reqs
                stats.waiting = scheduler_stats.num_waiting_reqs

        def log_engine_initialized(self) -> None:
            pass

    return _Recorder


def _orphans_error(exc: Exception) -> EngineStartError | None:
    """A failed start while an earlier worker's engine still runs: that is the likeliest
    cause (its memory), which vLLM's own error does not name. None when there is none."""
    orphans = find_orphans()
    if not orphans:
        return None
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return EngineStartError(f"the engine could not start ({reason}) while {orphans_line(orphans)}")


async def _tokens_per_image(classifier: VllmClassifier) -> int | None:
    """The engine's count, off the event loop; None (images then unbudgeted) with a warning
    when this vLLM cannot say."""
    try:
        return await asyncio.to_thread(engine_tokens_per_image, classifier._engine.model_config)
    except Exception as exc:  # an internal vLLM API: a change there must not stop the worker
        log.warning(
            "cannot count an image's tokens; prompts with images are not fitted to "
            "max_model_len, and those that do not fit end as engine_error",
            error=f"{type(exc).__name__}: {exc}",
        )
        return None


class VllmClassifier:
    """Scores token-id prompts. Build with ``await VllmClassifier.start(settings)``."""

    def __init__(
        self,
        engine: Any,
        tokenizer: Tokenizer,
        model_name: str,
        max_model_len: int,
        stats: EngineStats | None = None,
        starter: StarterThread | None = None,
    ):
        self._engine = engine
        self._starter = starter
        self.stats = stats
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_model_len = max_model_len
        self._no, self._yes = answer_token_ids(tokenizer)
        self._params = sampling_params(self._no, self._yes)
        self._ids = itertools.count()
        # A model with a vision path takes images after the content (media_suffix).
        config = getattr(engine, "model_config", None)
        self.accepts_media = bool(getattr(config, "is_multimodal_model", False))
        # The most prompt positions an image takes once the engine expands its placeholder;
        # set by start() for a model that takes images (image_tokens.py).
        self.tokens_per_image: int | None = None

    @classmethod
    async def start(cls, settings: LocalEngineSettings) -> VllmClassifier:
        stats = EngineStats()
        load = _loader(settings, stats)
        if orphans := find_orphans():
            log.warning(orphans_line(orphans))
        # The engine's processes die with the worker, however it dies (SIGKILL included), so
        # they cannot hold the memory the next start needs. vLLM starts them from the loading
        # thread; that thread lives until close(), as the signal fires when it ends.
        bind_children()
        starter = StarterThread("engine-starter")
        # Loading takes a minute: off the event loop, so probes and signals are answered.
        with failure_notes() as notes:
            try:
                engine = (await starter.run(load)).pop()
            except Exception as exc:
                starter.release()
                if (blamed := _orphans_error(exc)) is not None:
                    raise blamed from exc
                raise start_error(exc, notes.read_text(errors="replace"), settings.model) from exc
        try:
            tokenizer = engine.get_tokenizer()
            name = settings.served_model_name or settings.model
            classifier = cls(
                engine, tokenizer, name, engine.model_config.max_model_len, stats, starter
            )
        except Exception:
            engine.shutdown()
            starter.release()
            raise
        del engine  # see close()
        if classifier.accepts_media:
            classifier.tokens_per_image = await _tokens_per_image(classifier)
        return classifier

    async def score(self, prompt_token_ids: list[int], media: Sequence[Any] = ()) -> Score:
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        prompt = (
            TokensPrompt(prompt_token_ids=prompt_token_ids, multi_modal_data={"image": list(media)})
            if media
            else self._render(prompt_token_ids)
        )
        try:
            async for output in self._engine.generate(
                prompt,
                self._params,
                request_id=f"mw-{next(self._ids)}",
            ):
                final = output
        except EngineDeadError as exc:
            raise EngineDead(f"engine died: {exc}") from exc
        except Exception as exc:
            if self._engine.errored:
                raise EngineDead(f"engine died: {exc}") from exc
            raise EngineError(f"engine request failed: {type(exc).__name__}: {exc}") from exc
        if final is None or not final.outputs or not final.outputs[0].logprobs:
            raise EngineError("engine returned no logprobs")
        return Score(
            p_yes=self._p_yes(final.outputs[0].logprobs[0]),
            prompt_tokens=len(prompt_token_ids),
            cached_tokens=final.num_cached_tokens or 0,
        )

    def _render(self, prompt_token_ids: list[int]) -> Any:
        """The prompt as an engine input, made by the engine's renderer.

        A raw ``TokensPrompt`` is deprecated in vLLM and is rendered on a thread pool, one
        hop per request; rendering token ids here is a few dict operations, so it runs
        inline. Engines without a renderer (older vLLM) take the raw prompt.
        """
        from vllm.inputs import TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=prompt_token_ids)
        renderer = getattr(self._engine, "renderer", None)
        if renderer is None or not hasattr(renderer, "render_cmpl"):
            return prompt
        (engine_input,) = renderer.render_cmpl([prompt], renderer.default_cmpl_tok_params)
        return engine_input

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
            # Otherwise the engine lives until interpreter exit, where its __del__ shuts it
            # down again with half the modules gone and prints a TypeError. What kept it:
            # frames of vLLM's first imports stay referenced, and through them start()'s
            # frame and the loading thread's future, so neither holds the engine at the end.
            del engine
            gc.collect()
        if self._starter is not None:
            self._starter.release()


def _loader(settings: LocalEngineSettings, stats: EngineStats) -> Callable[[], list[Any]]:
    """What the starter thread runs: the engine, built, in a box (see close())."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    def load() -> list[Any]:
        engine = AsyncLLM.from_engine_args(
            AsyncEngineArgs(**engine_args(settings)),
            # The worker feeds the engine like an offline batch job. vLLM sizes the
            # scheduler (max_num_batched_tokens, max_num_seqs) by usage context, and its
            # default for an embedded engine is the smallest (2,048 tokens and 128
            # sequences a step, on an H100 too), which starves a GPU; the offline context
            # picks per-hardware sizes (16,384 and 1,024 on an H100). Explicit engine
            # settings still win.
            usage_context=UsageContext.LLM_CLASS,
            stat_loggers=[stats_logger(stats)],
        )
        return [engine]

    return load
