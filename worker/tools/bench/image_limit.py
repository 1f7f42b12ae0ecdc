"""The engine's limit on the image workload: every image prompt handed to the engine at once.

The worker's own in-process engine (``start_classifier``: vLLM's ``AsyncLLM``) gets every prompt
together, with nothing streaming and nothing waiting on Kafka, fetching or decoding: the
same token ids as the worker sends (``images.image_prompts``) with the same frames (the
files decoded by the worker's decoder before the clock starts). Not the offline
``LLM.generate`` of the text phases: for images it runs the model's processor on every
prompt before the engine starts on any, so that work never overlaps the model's and its
rate is no limit (measured: 17.5 images/s of 1024 pixels where the worker did 29.6).
Each answer is checked against the seeing model's expected label, as the verdicts are.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ...config import MediaSettings
from ...media.decode import decode, fit_frames
from .config import BenchConfig
from .images import ImagePrompt, expected_label, image_prompts, image_workload, images_dir
from .workload import is_test_model


async def run_image_engine_limit(config: BenchConfig) -> dict[str, Any]:
    from ...engine.factory import start_classifier

    engine = await start_classifier(config.engine_settings())
    try:
        return await _measure(engine, config)
    finally:
        engine.close()


async def _measure(engine: Any, config: BenchConfig) -> dict[str, Any]:
    tokenizer = engine.tokenizer
    prompts = image_prompts(image_workload(config, tokenizer, ""), tokenizer)
    frames = decoded_frames(prompts, images_dir(config), config.image_size)
    # As in the worker's run, the first tenth of the events is warm-up.
    split = config.image_events // 10 * (len(prompts) // config.image_events)

    async def score_all(batch: list[ImagePrompt]) -> list[Any]:
        return await asyncio.gather(*(engine.score(p.ids, media=[frames[p.file]]) for p in batch))

    await score_all(prompts[:split])
    started = time.perf_counter()
    scores = await score_all(prompts[split:])
    elapsed = time.perf_counter() - started
    items = len({prompt.event for prompt in prompts[split:]})
    result = {
        "items": items,
        "prompts": len(scores),
        "elapsed_s": round(elapsed, 3),
        "items_per_s": items / elapsed,
    }
    if is_test_model(config.model):
        result["labels"] = checked(prompts[split:], [s.p_yes for s in scores], tokenizer)
    return result


def checked(prompts: list[ImagePrompt], answers: list[float], tokenizer: Any) -> dict[str, int]:
    """Answers (P("1") per prompt) against the seeing model's expected labels."""
    expected = [expected_label(prompt, tokenizer) for prompt in prompts]
    got = [int(p >= 0.5) for p in answers]
    wrong = sum(1 for e, g in zip(expected, got, strict=True) if e != g)
    return {"checked": len(got), "wrong": wrong, "expected_1": sum(expected)}


def decoded_frames(prompts: list[ImagePrompt], folder: Path, size: int) -> dict[str, Any]:
    """Each image file decoded by the worker's decoder, as the worker hands it on."""
    settings = MediaSettings(max_pixels=max(size * size, MediaSettings().max_pixels))
    files = {prompt.file for prompt in prompts}
    return {
        f: fit_frames(
            decode("image", (folder / f).read_bytes(), settings), settings.max_side
        ).frames[0]
        for f in files
    }
