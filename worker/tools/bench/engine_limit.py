"""Phase 1, the engine's limit: every prompt handed to vLLM's offline ``LLM.generate`` at once.

Nothing streams, nothing waits on Kafka: the scheduler always has every request it could
batch. Same engine arguments, same sampling parameters and same token ids as the worker.
"""

from __future__ import annotations

import time
from typing import Any

from ...engine.factory import engine_args, sampling_params
from ...prompts import answer_token_ids
from .config import BenchConfig
from .stats import cache_summary
from .workload import event_prompts, load_workload


def run_engine_limit(config: BenchConfig) -> dict[str, Any]:
    from vllm import LLM
    from vllm.inputs import TokensPrompt

    llm = LLM(**engine_args(config.engine_settings()))
    tokenizer = llm.get_tokenizer()
    params = sampling_params(*answer_token_ids(tokenizer))
    workload = load_workload(config, tokenizer, config.events, "engine")
    prompts = event_prompts(workload, tokenizer)
    per_event = len(prompts) // len(workload.events)
    split = config.warmup_events * per_event
    warmup, measured = prompts[:split], prompts[split:]

    # The warm-up computes every policy's prefix once, as the worker's warm-up does.
    llm.generate([TokensPrompt(prompt_token_ids=ids) for _, ids in warmup], params, use_tqdm=False)
    started = time.perf_counter()
    outputs = llm.generate(
        [TokensPrompt(prompt_token_ids=ids) for _, ids in measured], params, use_tqdm=False
    )
    elapsed = time.perf_counter() - started
    items = len(workload.events) - config.warmup_events
    usage = [
        (policy, len(ids), out.num_cached_tokens or 0)
        for (policy, ids), out in zip(measured, outputs, strict=True)
    ]
    return {
        "items": items,
        "prompts": len(measured),
        "elapsed_s": round(elapsed, 3),
        "items_per_s": items / elapsed,
        "prompts_per_s": len(measured) / elapsed,
        "cache": cache_summary(usage, workload.prefix_tokens()),
    }
