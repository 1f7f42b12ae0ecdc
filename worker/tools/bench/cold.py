"""A micro-batch on a cold policy: how many of its items compute the policy's prefix.

Each trial makes a policy the engine has never seen (about ``COLD_WORDS`` tokens on the test
model) and hands a micro-batch of ``BATCH`` items of it to the worker's scoring core
(``score_jobs``, as the classify stage does) on the in-process engine. vLLM's per-request
count of cached prompt tokens says, item by item, whether it read the prefix from the cache
or computed it: an item that computed it has fewer cached tokens than the prefix's whole
blocks. The prefill tokens of the batch, over the prefix's length, say how many times the
prefix was computed in all.
"""

from __future__ import annotations

import random
from typing import Any

from ...catalog import compile_catalog
from ...config import RoutingSettings
from ...events import ContentEvent
from ...policies import PolicyRegistry, parse_policy
from ...scoring.classify import Job, score_jobs
from ...testing.words import FILLER_WORDS
from .config import BenchConfig
from .recorder import RecordingClassifier
from .workload import make_contents

BATCH = 64
COLD_WORDS = 2900
TRIALS = 3


async def run_cold_batches(config: BenchConfig) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from ...engine.factory import start_classifier

    settings = config.engine_settings()
    block = int(settings.extra_args.get("block_size") or 16)
    engine = await start_classifier(settings)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    try:
        trials = await cold_trials(engine, tokenizer, config, block)
    finally:
        engine.close()
    return {"batch": BATCH, "block_size": block, "trials": trials}


async def cold_trials(
    engine: Any,
    tokenizer: Any,
    config: BenchConfig,
    block: int,
    trials: int = TRIALS,
    batch: int = BATCH,
    words: int = COLD_WORDS,
) -> list[dict[str, Any]]:
    """Each trial a new policy of about ``words`` tokens and a micro-batch of ``batch``."""
    return [
        await _trial(engine, tokenizer, config, (n, block, batch, words)) for n in range(trials)
    ]


async def _trial(engine: Any, tokenizer: Any, config: BenchConfig, shape: tuple) -> dict:
    n, block, batch, length = shape
    rng = random.Random(f"cold-{config.seed}-{n}")
    words = [rng.choice(FILLER_WORDS) for _ in range(length)]
    lines = [" ".join(words[i : i + 16]) for i in range(0, len(words), 16)]
    text = "\n".join([f"Cold policy {n} of this run.", *lines])
    registry = PolicyRegistry([parse_policy(f"---\nid: cold-{n}\n---\n{text}")])
    catalog = compile_catalog(registry, tokenizer, config.max_model_len, RoutingSettings())
    [entry] = catalog.entries.values()
    contents = make_contents(tokenizer, config, batch, stream=1000 + n)
    jobs = [Job(ContentEvent(id=f"c{n}-{i}", content=c), [entry]) for i, c in enumerate(contents)]
    recorder = RecordingClassifier(engine, catalog)
    await score_jobs(recorder, jobs, "truncate", 0, None)
    prefix = len(entry.prompt.prefix)
    whole = prefix // block * block  # what the cache can hold of it
    computed = sum(u.prompt_tokens - u.cached_tokens for u in recorder.usage)
    return {
        "prefix_tokens": prefix,
        "items": len(recorder.usage),
        # An item that read the prefix from the cache has at least its whole blocks cached
        # (more when contents share their first tokens); one that computed it has fewer.
        "items_that_computed_the_prefix": sum(1 for u in recorder.usage if u.cached_tokens < whole),
        "prefill_tokens": computed,
        "prefill_tokens_per_item": round(computed / max(1, len(recorder.usage)), 1),
    }
