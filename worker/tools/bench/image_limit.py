"""The engine's limit on the image workload: every image prompt to ``LLM.generate`` at once.

The same token ids as the worker sends (``images.image_prompts``) with the same frames
(the image files decoded by the worker's own decoder, before the clock starts: fetching and
decoding are the worker's cost, measured on their own). Same engine arguments and sampling
parameters. Each answer is checked against the seeing model's expected label, as the
worker's verdicts are.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ...config import MediaSettings
from ...engine.factory import engine_args, sampling_params
from ...media.decode import decode
from ...prompts import answer_token_ids
from .config import BenchConfig
from .images import ImagePrompt, expected_label, image_prompts, image_workload, images_dir
from .workload import is_test_model


def run_image_engine_limit(config: BenchConfig) -> dict[str, Any]:
    from vllm import LLM

    llm = LLM(**engine_args(config.engine_settings()))
    tokenizer = llm.get_tokenizer()
    no, yes = answer_token_ids(tokenizer)
    prompts = image_prompts(image_workload(config, tokenizer, ""), tokenizer)
    inputs = engine_inputs(prompts, images_dir(config), config.image_size)
    # As in the worker's run, the first tenth of the events is warm-up.
    split = config.image_events // 10 * (len(prompts) // config.image_events)
    llm.generate(inputs[:split], sampling_params(no, yes), use_tqdm=False)
    started = time.perf_counter()
    outputs = llm.generate(inputs[split:], sampling_params(no, yes), use_tqdm=False)
    elapsed = time.perf_counter() - started
    items = len({prompt.event for prompt in prompts[split:]})
    result = {
        "items": items,
        "prompts": len(outputs),
        "elapsed_s": round(elapsed, 3),
        "items_per_s": items / elapsed,
    }
    if is_test_model(config.model):
        answers = [_p_yes(out.outputs[0].logprobs[0], no, yes) for out in outputs]
        result["labels"] = checked(prompts[split:], answers, tokenizer)
    return result


def checked(prompts: list[ImagePrompt], answers: list[float], tokenizer: Any) -> dict[str, int]:
    """Answers (P("1") per prompt) against the seeing model's expected labels."""
    expected = [expected_label(prompt, tokenizer) for prompt in prompts]
    got = [int(p >= 0.5) for p in answers]
    wrong = sum(1 for e, g in zip(expected, got, strict=True) if e != g)
    return {"checked": len(got), "wrong": wrong, "expected_1": sum(expected)}


def engine_inputs(prompts: list[ImagePrompt], folder: Path, size: int) -> list[dict[str, Any]]:
    """Token ids with their decoded image, as the in-process engine is handed them."""
    settings = MediaSettings(max_pixels=max(size * size, MediaSettings().max_pixels))
    frames = {}
    for prompt in prompts:
        if prompt.file not in frames:
            data = (folder / prompt.file).read_bytes()
            frames[prompt.file] = decode("image", data, settings).frames[0]
    return [
        {"prompt_token_ids": p.ids, "multi_modal_data": {"image": [frames[p.file]]}}
        for p in prompts
    ]


def _p_yes(logprobs: dict[int, Any], no: int, yes: int) -> float:
    p_yes = math.exp(logprobs[yes].logprob) if yes in logprobs else 0.0
    p_no = math.exp(logprobs[no].logprob) if no in logprobs else 0.0
    return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.0
