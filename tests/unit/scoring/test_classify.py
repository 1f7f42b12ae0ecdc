"""Verdicts as classify.build_verdict writes them."""

from __future__ import annotations

import time

import orjson

from worker.catalog import compile_catalog
from worker.config import RoutingSettings
from worker.engine import Score
from worker.events import ContentEvent, Source, Verdict
from worker.policies import PolicyRegistry, parse_policy
from worker.scoring.classify import Job, Scored, build_verdict

FRUIT = parse_policy("---\nid: fruit\n---\nFlag content that mentions any of: apple, mango.")
TOOLS = parse_policy("---\nid: tools\n---\nFlag content that mentions any of: hammer.")


def _scored(tokenizer, scores: list[float]) -> Scored:
    registry = PolicyRegistry([FRUIT, TOOLS])
    catalog = compile_catalog(registry, tokenizer, 4096, RoutingSettings())
    event = ContentEvent(id="item-1", content="an apple", metadata={"k": [1, {"x": None}]})
    job = Job(event, catalog.resolve(["fruit", "tools"]))
    now = time.monotonic()
    return Scored(
        job, scores=[Score(p, 100, 90) for p in scores], started=now - 0.002, finished=now
    )


def test_built_verdict_is_what_validation_would_make(tokenizer):
    """build_verdict skips validation: what it builds must validate to the same record."""
    verdict = build_verdict(_scored(tokenizer, [0.98, 0.3]), "m", Source.model_construct(
        topic="content", partition=2, offset=7
    ))  # fmt: skip
    validated = Verdict.model_validate(verdict.model_dump())
    assert validated == verdict
    assert orjson.loads(validated.to_json()) == orjson.loads(verdict.to_json())
    data = orjson.loads(verdict.to_json())
    assert data["label"] == 1 and data["route"] == "review"
    assert [v["label"] for v in data["verdicts"]] == [1, 0]
    assert data["source"] == {"topic": "content", "partition": 2, "offset": 7}
    assert data["metadata"] == {"k": [1, {"x": None}]}


def test_integer_scores_are_written_as_floats(tokenizer):
    """As validation did: an engine answering exactly 1 still writes a float score."""
    verdict = build_verdict(
        _scored(tokenizer, [1, 0]), "m", Source(topic="t", partition=0, offset=0)
    )
    scores = [v["score"] for v in orjson.loads(verdict.to_json())["verdicts"]]
    assert scores == [1.0, 0.0]
    assert all(isinstance(s, float) for s in scores)
