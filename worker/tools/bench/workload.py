"""The benchmark's inputs: policies fitted to a token length, contents, events, prompts.

Everything is derived from the config and the model's tokenizer, deterministically, so each
phase (each in its own process) sees the same policies, the same contents and, through the
worker's own catalog and prompt code, the same token ids.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

from ...catalog import Catalog, compile_catalog
from ...config import BatchSettings, RoutingSettings
from ...engine import Score
from ...events import ContentEvent
from ...policies import Policy, load_policies
from ...prompts import Tokenizer, assemble, tokenize_contents
from ...scoring.classify import Job, score_jobs
from ...scoring.verdict_cache import VerdictCache
from ...testing.devmodel import MARKER_FILE
from ...testing.words import FILLER_WORDS, TRIGGER_WORDS
from .config import BenchConfig


@dataclass(frozen=True)
class Event:
    id: str
    policies: list[str]
    value: bytes  # the JSON record value


@dataclass(frozen=True)
class Workload:
    catalog: Catalog
    contents: list[str]
    events: list[Event]
    # Each event's label where the workload knows it itself (the image workload's do not
    # follow from the text prompt); None: from the prompts (expected_labels).
    expected: dict[str, int] | None = None

    def prefix_tokens(self) -> dict[str, int]:
        return {pid: len(e.prompt.prefix) for pid, e in self.catalog.entries.items()}


def count_tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def fit_policy_text(tokenizer: Tokenizer, text: str, more: list[str], target: int) -> str:
    """``text`` cut at a line end to at most ``target`` tokens, or extended to about that
    with ``more`` (other policies' text) when it is shorter."""
    source, extra = text, list(more)
    while count_tokens(tokenizer, source) < target and extra:
        source += "\n\n" + extra.pop(0)
    lines = source.splitlines()
    low, high = 1, len(lines)  # largest line count whose text fits the target
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(tokenizer, "\n".join(lines[:mid])) <= target:
            low = mid
        else:
            high = mid - 1
    return "\n".join(lines[:low]).strip()


def write_policies(config: BenchConfig, tokenizer: Tokenizer) -> Path:
    """The pack's policies, each fitted to ``policy_tokens``, written where the worker reads.

    Plus a draft of the first policy as its shadow, fitted to the same length and with a
    prefix of its own (a revision note first): scored only where ``shadow.sample`` asks,
    never named by events.
    """
    pack = list(load_policies(config.policy_dir))
    out = config.policies_dir
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.md"):
        old.unlink()
    texts = []
    for n, policy in enumerate(pack):
        others = [p.text for p in pack[n + 1 :] + pack[:n]]
        # A first line naming a word of the test model's, so that its labels are checkable.
        text = f"{named_line(n)}\n{policy.text}"
        texts.append(fit_policy_text(tokenizer, text, others, config.policy_tokens))
        _write_policy(out / f"{policy.id}.md", policy, texts[-1])
    first = pack[0]
    draft = Policy(f"{first.id}-draft", f"{first.title} (draft)", "", "", shadow_of=first.id)
    revised = f"Revised draft of {first.title}.\n{texts[0]}"
    text = fit_policy_text(tokenizer, revised, [p.text for p in pack[1:]], config.policy_tokens)
    _write_policy(out / f"{draft.id}.md", draft, text)
    return out


def named_line(n: int) -> str:
    """The line that makes the test model answer 1 for content naming the n-th word."""
    return f"Also flag content that mentions {TRIGGER_WORDS[n % len(TRIGGER_WORDS)]}."


def _write_policy(path: Path, policy: Policy, text: str) -> None:
    meta = {"id": policy.id, "title": policy.title}
    if policy.shadow_of:
        meta["shadow_of"] = policy.shadow_of
    front = yaml.safe_dump(meta, sort_keys=False)
    path.write_text(f"---\n{front}---\n{text}\n", encoding="utf-8")


def make_contents(
    tokenizer: Tokenizer, config: BenchConfig, count: int, stream: int = 0
) -> list[str]:
    """Texts of ordinary words, each about a uniformly drawn token count in the range.

    The same ``stream`` gives the same texts; different streams give different ones (a
    repeated content would be served whole from the prefix cache).
    """
    rng = random.Random(f"{config.seed}-{stream}")
    low, high = config.content_tokens
    contents = []
    for n in range(count):
        target = rng.randint(low, high)
        words = [rng.choice(FILLER_WORDS) for _ in range(target)]  # a word is >= 1 token
        if n % 3 == 0:  # a third name three of the words the first eight policies name
            places = rng.sample(range(target), min(3, target))
            for place, word in zip(places, rng.sample(TRIGGER_WORDS[:8], 3), strict=False):
                words[place] = word
        ids = tokenizer.encode(" ".join(words), add_special_tokens=False)[:target]
        contents.append(tokenizer.decode(ids).strip())
    return contents


def copy_sources(count: int, share: float, seed: str, popular: int = 50) -> list[int]:
    """For each event, the event it copies (itself for an original), as in a wave of reposts.

    A ``share`` of the events copy one of the first ``popular`` events, content and
    policies both, drawn with Zipf weights (the k-th is copied about 1/k as often as the
    first): a few texts make most copies.
    """
    rng = random.Random(f"duplicates-{seed}")
    copies = round(share * count)
    pool = min(popular, count - copies)  # a short run still has room for every copy
    weights = [1 / rank**1.1 for rank in range(1, pool + 1)]
    sources = list(range(count))
    for n in rng.sample(range(pool, count), copies):
        sources[n] = rng.choices(range(pool), weights)[0]
    return sources


def make_events(
    config: BenchConfig,
    policy_ids: list[str],
    contents: list[str],
    tag: str,
    sources: list[int] | None = None,
):
    """One event per content; policies rotate so every policy sees the same share.

    With ``sources``, a copy gets the policies of the event it copies.
    """
    k = min(config.policies_per_event, len(policy_ids))
    events = []
    for n, content in enumerate(contents):
        m = sources[n] if sources else n
        chosen = [policy_ids[(m + j) % len(policy_ids)] for j in range(k)]
        item_id = f"{tag}-{n}"
        value = orjson.dumps({"id": item_id, "content": content, "policies": chosen})
        events.append(Event(item_id, chosen, value))
    return events


def load_workload(
    config: BenchConfig,
    tokenizer: Tokenizer,
    count: int,
    tag: str,
    stream: int = 0,
    duplicate_share: float = 0.0,
) -> Workload:
    """The fitted policies (already written) compiled as the worker compiles them."""
    registry = load_policies(config.policies_dir)
    catalog = compile_catalog(registry, tokenizer, config.max_model_len, RoutingSettings())
    contents = make_contents(tokenizer, config, count, stream)
    sources = None
    if duplicate_share:
        sources = copy_sources(count, duplicate_share, f"{config.seed}-{stream}")
        contents = [contents[source] for source in sources]
    events = make_events(config, list(registry.default), contents, tag, sources)
    return Workload(catalog, contents, events)


def event_prompts(workload: Workload, tokenizer: Tokenizer) -> list[tuple[str, list[int]]]:
    """(policy id, token ids) for every (event, policy), built as classify.score_jobs does."""
    content_ids = tokenize_contents(tokenizer, workload.contents)
    prompts = []
    for event, ids in zip(workload.events, content_ids, strict=True):
        for entry in workload.catalog.resolve(event.policies):
            prompts.append((entry.policy.id, assemble(entry.prompt, ids, "truncate")))
    return prompts


def is_test_model(model: str) -> bool:
    """Whether ``model`` is the test model this package builds, whose labels are known."""
    return (Path(model) / MARKER_FILE).is_file()


def expected_labels(workload: Workload, tokenizer: Tokenizer) -> dict[str, int]:
    """Each event's label as the test model gives it (see ``is_test_model``).

    The test model answers 1 exactly when some word of TRIGGER_WORDS occurs twice in the
    prompt (see worker.testing.devmodel), so its labels follow from the prompt's ids.
    """
    if workload.expected is not None:
        return workload.expected
    trigger_ids = {tokenizer.encode(w, add_special_tokens=False)[0] for w in TRIGGER_WORDS}
    labels = iter(repeats(ids, trigger_ids) for _, ids in event_prompts(workload, tokenizer))
    out = {}
    for event in workload.events:
        out[event.id] = int(any([next(labels) for _ in event.policies]))
    return out


def repeats(ids: list[int], trigger_ids: set[int]) -> bool:
    """Whether some trigger word occurs twice: the test model's answer."""
    seen: set[int] = set()
    for token in ids:
        if token in trigger_ids:
            if token in seen:
                return True
            seen.add(token)
    return False


def tokenizer_cost(config: BenchConfig, tokenizer: Tokenizer, count: int) -> dict[str, float]:
    """What tokenizing content costs per item, in batches the size the worker uses."""
    contents = make_contents(tokenizer, config, count, stream=999)
    size = int(config.batch.get("max_items", BatchSettings().max_items))
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(contents), size):
        tokenize_contents(tokenizer, contents[start : start + size])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "items": len(contents),
        "wall_us_per_item": round(wall * 1e6 / len(contents), 1),
        "cpu_us_per_item": round(cpu * 1e6 / len(contents), 1),
    }


class _FixedScores:
    """Answers every prompt at once with the same score: only the cache's own work is timed."""

    def __init__(self, tokenizer: Tokenizer, max_model_len: int) -> None:
        self.model_name = "bench"
        self.max_model_len = max_model_len
        self.tokenizer = tokenizer

    async def score(self, prompt_token_ids: list[int]) -> Score:
        return Score(0.5, len(prompt_token_ids), 0)

    def close(self) -> None:
        pass


async def cache_hit_cost(config: BenchConfig, tokenizer: Tokenizer) -> dict[str, float]:
    """CPU per event answered whole by the verdict cache, in batches the worker's size.

    The batches are scored once to fill the cache, then again: the second pass is all hits
    (keys hashed, scores looked up, results built), with no tokenizing and no engine.
    """
    workload = load_workload(config, tokenizer, min(config.overhead_events, 2000), "hits")
    engine = _FixedScores(tokenizer, config.max_model_len)
    cache = VerdictCache(10**6, 10**9, 3600)
    size = int(config.batch.get("max_items", BatchSettings().max_items))
    jobs = [
        Job(ContentEvent(id=e.id, content=c), workload.catalog.resolve(e.policies))
        for e, c in zip(workload.events, workload.contents, strict=True)
    ]
    batches = [jobs[n : n + size] for n in range(0, len(jobs), size)]
    for batch in batches:
        await score_jobs(engine, batch, "truncate", 0, cache)
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        await score_jobs(engine, batch, "truncate", 0, cache)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "items": len(jobs),
        "wall_us_per_hit": round(wall * 1e6 / len(jobs), 1),
        "cpu_us_per_hit": round(cpu * 1e6 / len(jobs), 1),
    }
