"""The policy workload: many distinct policies, heavy-tailed popularity, long policies.

A platform with communities brings its own policies: hundreds or thousands, some long. The
worker's speed rests on a policy's prefix staying in the engine's prefix cache; this
workload shows what happens when it cannot. ``count`` policies are written, each a line
naming one of the test model's words (so labels stay checkable) and ordinary words up to a
length drawn log-uniformly between the configured bounds; each event names one policy,
drawn with Zipf weights (the k-th policy about 1/k^1.1 as often as the first).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import orjson

from ...catalog import compile_catalog
from ...config import RoutingSettings
from ...policies import load_policies
from ...prompts import Tokenizer
from ...testing.words import FILLER_WORDS
from .config import BenchConfig
from .workload import Event, Workload, make_contents, named_line

ZIPF_S = 1.1


def policy_lengths(count: int, low: int, high: int, seed: str) -> list[int]:
    """Word counts, log-uniform in [low, high]: many short policies, some long ones.

    A pack of one gets the distribution's mean length, so that the runs it is the baseline
    for (lengths drawn independently of popularity, so the same mean per item) compare
    caching, not policy length.
    """
    if count == 1:
        mean = (high - low) / math.log(high / low) if high > low else low
        return [round(mean)]
    rng = random.Random(f"lengths-{seed}")
    return [round(math.exp(rng.uniform(math.log(low), math.log(high)))) for _ in range(count)]


def zipf_picks(policies: int, events: int, seed: str, s: float = ZIPF_S) -> list[int]:
    """For each event, the rank of the policy it names (0 = the most popular)."""
    rng = random.Random(f"zipf-{seed}")
    weights = [1 / (rank**s) for rank in range(1, policies + 1)]
    return rng.choices(range(policies), weights, k=events)


def write_many_policies(directory: Path, count: int, low: int, high: int, seed: str) -> Path:
    """``count`` policy files (kept when a run with the same parameters wrote them)."""
    stamp = directory / ".written"
    key = f"2:{count}:{low}:{high}:{seed}"  # 2: a pack of one has the mean length
    if stamp.is_file() and stamp.read_text() == key:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.md"):
        old.unlink()
    rng = random.Random(f"policies-{seed}")
    for n, length in enumerate(policy_lengths(count, low, high, seed)):
        words = [rng.choice(FILLER_WORDS) for _ in range(length)]
        lines = [" ".join(words[i : i + 16]) for i in range(0, len(words), 16)]
        text = "\n".join([f"Community rule {n}.", named_line(n), *lines])
        (directory / f"p{n:05}.md").write_text(f"---\nid: p{n:05}\n---\n{text}\n")
    stamp.write_text(key)
    return directory


def many_workload(
    config: BenchConfig,
    tokenizer: Tokenizer,
    directory: Path,
    count: int,
    tag: str,
    top: int | None = None,
) -> Workload:
    """``count`` events over the policies in ``directory`` (the ``top`` most popular only,
    when given), compiled as the worker does."""
    registry = load_policies(directory)
    catalog = compile_catalog(registry, tokenizer, config.max_model_len, RoutingSettings())
    ids = sorted(catalog.entries)
    contents = make_contents(tokenizer, config, count, stream=len(ids))
    events = []
    for n, (rank, content) in enumerate(
        zip(zipf_picks(len(ids), count, tag), contents, strict=True)
    ):
        item_id = f"{tag}-{n}"
        value = orjson.dumps({"id": item_id, "content": content, "policies": [ids[rank]]})
        events.append(Event(item_id, [ids[rank]], value))
    return Workload(catalog, contents, events)
