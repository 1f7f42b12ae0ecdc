"""classify's first pass: policies a bank decides never reach the cache or the engine (a
counting engine), the others do, and the verdict says which decided what."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from worker.catalog import compile_catalog
from worker.config import RoutingSettings
from worker.events import ContentEvent, Source, Verdict
from worker.hashbanks import load_banks
from worker.policies import PolicyRegistry, parse_policy
from worker.scoring.classify import Job, build_verdict, score_jobs
from worker.scoring.verdict_cache import VerdictCache

from .test_verdict_cache import CountingEngine

FRUIT = parse_policy("---\nid: fruit\n---\nFlag content that mentions any of: apple, mango.")
TOOLS = parse_policy("---\nid: tools\n---\nFlag content that mentions any of: hammer.")
DRAFT = parse_policy("---\nid: fruit-draft\nshadow_of: fruit\n---\nFlag: mango.")
SOURCE = Source(topic="content", partition=0, offset=0)


@pytest.fixture
def catalog(tokenizer):
    registry = PolicyRegistry([FRUIT, TOOLS, DRAFT])
    return compile_catalog(registry, tokenizer, 4096, RoutingSettings())


def _banks(directory: Path, route: str = "auto"):
    (directory / "removed.yaml").write_text(f"policies: [fruit]\nlabel: 1\nroute: {route}\n")
    (directory / "removed.txt").write_text("raw_text known spam text\n")
    (directory / "memes.yaml").write_text("policies: [fruit, tools]\nlabel: 0\n")
    (directory / "memes.txt").write_text("raw_text a famous meme\n")
    return load_banks(directory, 31)


def _job(catalog, content: str, n: int = 0, policies: tuple[str, ...] = ("fruit", "tools")) -> Job:
    entries = catalog.resolve(list(policies))
    shadows = ((0, catalog.entries["fruit-draft"]),)
    return Job(ContentEvent(id=f"i{n}", content=content), entries, shadows=shadows)


async def test_a_bank_decides_its_policies_and_the_engine_scores_the_rest(
    tokenizer, catalog, tmp_path
):
    engine = CountingEngine(tokenizer)
    banks = _banks(tmp_path)
    cache = VerdictCache(100, 10**6, 60)
    [scored] = await score_jobs(
        engine, [_job(catalog, "known spam text")], "dead_letter", 0, cache, banks
    )
    # Only tools went to the engine: fruit was decided and its shadow dropped with it.
    assert len(engine.requests) == 1
    assert scored.scores is not None and scored.scores[0] is None and scored.scores[1] is not None
    assert scored.shadow_scores == [] and scored.job.shadows == ()
    verdict = build_verdict(scored, "m", SOURCE)
    fruit, tools = orjson.loads(verdict.to_json())["verdicts"]
    assert fruit == {
        "policy": "fruit",
        "policy_version": FRUIT.version,
        "label": 1,
        "score": None,
        "confidence": None,
        "cached": False,
        "source": "hash_match",
        "match": {"bank": "removed", "signal_type": "raw_text", "distance": 0},
    }
    assert tools["source"] == "model" and tools["match"] is None and tools["score"] is not None
    assert verdict.label == 1
    assert Verdict.model_validate(verdict.model_dump()) == verdict


async def test_content_every_policy_of_which_is_decided_costs_no_request(
    tokenizer, catalog, tmp_path
):
    engine = CountingEngine(tokenizer)
    jobs = [_job(catalog, "a famous meme", n) for n in range(3)]
    results = await score_jobs(engine, jobs, "dead_letter", 0, None, _banks(tmp_path))
    assert engine.requests == []
    for scored in results:
        verdict = build_verdict(scored, "m", SOURCE)
        assert [(v.policy, v.label, v.source) for v in verdict.verdicts] == [
            ("fruit", 0, "hash_match"),
            ("tools", 0, "hash_match"),
        ]


@pytest.mark.parametrize("route", ["auto", "review"])
async def test_the_banks_rule_routes_the_item(tokenizer, catalog, tmp_path, route):
    engine = CountingEngine(tokenizer)
    jobs = [_job(catalog, "known spam text", policies=("fruit",))]
    [scored] = await score_jobs(engine, jobs, "dead_letter", 0, None, _banks(tmp_path, route))
    assert engine.requests == []
    assert build_verdict(scored, "m", SOURCE).route == route


async def test_without_a_match_everything_is_scored_as_before(tokenizer, catalog, tmp_path):
    engine = CountingEngine(tokenizer)
    jobs = [_job(catalog, "unrelated words")]
    [scored] = await score_jobs(engine, jobs, "dead_letter", 0, None, _banks(tmp_path))
    assert len(engine.requests) == 3  # fruit, tools and the shadow
    assert scored.job.decided == {} and len(scored.shadow_scores) == 1
    assert all(v.source == "model" for v in build_verdict(scored, "m", SOURCE).verdicts)
