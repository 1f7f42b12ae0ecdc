"""The verdict cache: its key, its bounds, and how score_jobs uses it (a counting engine)."""

from __future__ import annotations

import asyncio

import pytest

from worker.catalog import compile_catalog
from worker.config import CacheSettings, RoutingSettings
from worker.engine import Score
from worker.events import ContentEvent
from worker.policies import PolicyRegistry, parse_policy
from worker.scoring.classify import Job, score_jobs
from worker.scoring.verdict_cache import ENTRY_BYTES, VerdictCache, cache_key, make_cache

FRUIT = parse_policy("---\nid: fruit\n---\nFlag content that mentions any of: apple, mango.")
FRUIT_V2 = parse_policy("---\nid: fruit\n---\nFlag content that mentions any of: apple, river.")
DRAFT = parse_policy(
    "---\nid: fruit-draft\nshadow_of: fruit\n---\nFlag content that mentions any of: mango."
)


def test_key_holds_model_policy_version_and_content():
    base = cache_key("m", FRUIT.version, "an apple")
    assert cache_key("m", FRUIT.version, "an apple") == base
    assert cache_key("other", FRUIT.version, "an apple") != base
    assert cache_key("m", FRUIT_V2.version, "an apple") != base
    assert cache_key("m", FRUIT.version, "an apple!") != base
    # Parts cannot run into each other: the same letters split differently differ.
    assert cache_key("ab", "c", "d") != cache_key("a", "bc", "d")


def test_key_sees_content_as_the_prompt_does():
    """A '=' rule line becomes '-' in the prompt, so both texts are the same prompt."""
    assert cache_key("m", "v", "a\n=====\nb") == cache_key("m", "v", "a\n-----\nb")


def test_least_recently_used_leaves_first():
    cache = VerdictCache(max_entries=2, max_bytes=10**9, ttl_s=60)
    cache.put(b"a", Score(0.1, 1, 0))
    cache.put(b"b", Score(0.2, 1, 0))
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", Score(0.3, 1, 0))
    assert cache.get(b"b") is None
    assert cache.get(b"a") == Score(0.1, 1, 0) and cache.get(b"c") is not None


def test_bytes_bound_the_entries():
    cache = VerdictCache(max_entries=1000, max_bytes=3 * ENTRY_BYTES, ttl_s=60)
    assert cache.capacity == 3
    for n in range(10):
        cache.put(bytes([n]), Score(0.5, 1, 0))
    assert len(cache) == 3


def test_scores_expire_after_ttl():
    now = [0.0]
    cache = VerdictCache(max_entries=10, max_bytes=10**6, ttl_s=5, clock=lambda: now[0])
    cache.put(b"k", Score(0.9, 1, 0))
    now[0] = 4.9
    assert cache.get(b"k") is not None
    now[0] = 5.1
    assert cache.get(b"k") is None


def test_disabled_cache_is_none():
    assert make_cache(CacheSettings(enabled=False)) is None
    assert make_cache(CacheSettings()) is not None


class CountingEngine:
    """Answers by a rule on the prompt and counts requests (a unit-test double)."""

    model_name = "m"
    max_model_len = 4096

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.requests: list[list[int]] = []

    async def score(self, prompt_token_ids: list[int]) -> Score:
        self.requests.append(prompt_token_ids)
        await asyncio.sleep(0)
        return Score((len(prompt_token_ids) % 97) / 97, len(prompt_token_ids), 0)

    def close(self) -> None: ...


def _jobs(catalog, contents: list[str]) -> list[Job]:
    jobs = []
    for n, content in enumerate(contents):
        entries = catalog.resolve(None)
        shadows = tuple((0, e) for e in catalog.shadows.get("fruit", ()))
        jobs.append(Job(ContentEvent(id=f"i{n}", content=content), entries, shadows=shadows))
    return jobs


@pytest.fixture
def catalog(tokenizer):
    return compile_catalog(PolicyRegistry([FRUIT, DRAFT]), tokenizer, 4096, RoutingSettings())


async def test_copies_are_scored_once_and_marked(tokenizer, catalog):
    engine = CountingEngine(tokenizer)
    cache = VerdictCache(100, 10**6, 60)
    texts = ["spam wave", "spam wave", "other text", "spam wave"]
    first = await score_jobs(engine, _jobs(catalog, texts), "dead_letter", 0, cache)
    # Two distinct texts, each against the policy and its shadow.
    assert len(engine.requests) == 4
    by_id = {r.job.event.id: r for r in first}
    assert by_id["i0"].scores == by_id["i1"].scores == by_id["i3"].scores
    assert by_id["i0"].shadow_scores == by_id["i3"].shadow_scores
    assert by_id["i0"].cached == () and by_id["i2"].cached == ()
    assert by_id["i1"].cached == (True, True) and by_id["i3"].cached == (True, True)
    assert by_id["i1"].saved_tokens > 0

    again = await score_jobs(engine, _jobs(catalog, ["spam wave"]), "dead_letter", 0, cache)
    assert len(engine.requests) == 4  # answered whole by the cache
    assert again[0].scores == by_id["i0"].scores and again[0].cached == (True, True)


async def test_a_policy_edit_misses_the_cache(tokenizer, catalog):
    engine = CountingEngine(tokenizer)
    cache = VerdictCache(100, 10**6, 60)
    await score_jobs(engine, _jobs(catalog, ["an apple"]), "dead_letter", 0, cache)
    edited = compile_catalog(PolicyRegistry([FRUIT_V2]), tokenizer, 4096, RoutingSettings())
    [scored] = await score_jobs(engine, _jobs(edited, ["an apple"]), "dead_letter", 0, cache)
    assert len(engine.requests) == 3 and scored.cached == ()


async def test_without_a_cache_every_pair_is_a_request(tokenizer, catalog):
    engine = CountingEngine(tokenizer)
    results = await score_jobs(engine, _jobs(catalog, ["x", "x", "x"]), "dead_letter", 0, None)
    assert len(engine.requests) == 6
    assert all(r.cached == () for r in results)


async def test_content_too_long_is_still_an_error(tokenizer, catalog):
    engine = CountingEngine(tokenizer)
    cache = VerdictCache(100, 10**6, 60)
    jobs = _jobs(catalog, ["word " * 5000, "short"])
    results = await score_jobs(engine, jobs, "dead_letter", 0, cache)
    errors = {r.job.event.id: r.error for r in results}
    assert errors["i0"] is not None and errors["i0"].kind == "content_too_long"
    assert errors["i1"] is None and len(engine.requests) == 2
