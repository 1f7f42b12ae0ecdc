"""Several images on one event: one prompt per image, or one prompt with all of them?

    PYTHONPATH=. .venv/bin/python scripts/media_items.py [--events 40] [--images 3]

Runs the seeing test model (built on first use) on vLLM's CPU engine and scores the same
events both ways with one policy: per item (``images`` prompts of one image each, the
worker's way; the event's score is the highest) and together (one prompt with every image).
Prints wall time, prompt tokens, tokens served from the prefix cache, and whether the two
ways agree on every label. The test model's vision path is one token per image, so this
measures the engine's per-request and per-image overheads, not a real model's vision cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLOURS = [(255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 255, 0)]
POLICY = "Flag content that mentions any of: river, walnut."


async def main(events: int, images: int) -> None:
    from PIL import Image

    from worker.config import LocalEngineSettings
    from worker.engine.vllm import VllmClassifier
    from worker.policies import Policy, policy_version
    from worker.prompts import assemble, build_policy_prompt, media_suffix, tokenize_contents
    from worker.testing.seeing import DEFAULT_DIR, build_seeing_model

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    model = build_seeing_model(DEFAULT_DIR)
    settings = LocalEngineSettings(
        model=str(model),
        max_model_len=4096,
        extra_args={"enforce_eager": True, "block_size": 32,
                    "limit_mm_per_prompt": {"image": images}},
    )  # fmt: skip
    engine = await VllmClassifier.start(settings)
    try:
        policy = Policy(id="water", title="water", text=POLICY, version=policy_version(POLICY))
        prompt = build_policy_prompt(engine.tokenizer, policy, engine.max_model_len)
        [content] = tokenize_contents(engine.tokenizer, ["[image]"])
        one = assemble(prompt, content, "dead_letter", media_suffix(engine.tokenizer, 1))
        together = assemble(prompt, content, "dead_letter", media_suffix(engine.tokenizer, images))
        posts = [
            [Image.new("RGB", (64, 64), COLOURS[(e + i) % len(COLOURS)]) for i in range(images)]
            for e in range(events)
        ]
        await engine.score(one, media=posts[0][:1])  # warm the policy prefix
        results = {}
        for way in ("per item", "together"):
            started = time.perf_counter()
            if way == "per item":
                scores = await asyncio.gather(
                    *(engine.score(one, media=[image]) for post in posts for image in post)
                )
                labels = [
                    max(s.p_yes for s in scores[e * images : (e + 1) * images]) >= 0.5
                    for e in range(events)
                ]
            else:
                scores = await asyncio.gather(*(engine.score(together, media=p) for p in posts))
                labels = [s.p_yes >= 0.5 for s in scores]
            wall = time.perf_counter() - started
            tokens = sum(s.prompt_tokens for s in scores)
            cached = sum(s.cached_tokens or 0 for s in scores)
            results[way] = labels
            print(
                f"{way:9s}: {len(scores)} requests, {wall:6.2f} s, {events / wall:6.1f} events/s, "
                f"{tokens} prompt tokens (ids sent), {cached} from the prefix cache"
            )
        print("labels agree:", results["per item"] == results["together"])
    finally:
        engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.images))
