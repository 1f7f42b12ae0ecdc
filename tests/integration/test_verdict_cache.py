"""The verdict cache on the real engine: copies get the same score without an engine request."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from worker.engine import Score
from worker.policies import policy_version

from .harness import (
    RunningWorker,
    create_topics,
    event,
    produce,
    read_topic,
    topic_names,
    verdicts,
    worker_settings,
)

pytestmark = pytest.mark.integration

V1 = "Flag content that mentions any of: apple, mango."
V2 = "Flag content that mentions any of: river, mango."
WAVE = ["buy cheap apple now", "a quiet day by the river", "nothing to see here"]
COPIES = 8


class CountingClassifier:
    """The session's engine, with every request it receives counted."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.model_name = engine.model_name
        self.max_model_len = engine.max_model_len
        self.tokenizer = engine.tokenizer
        self.requests = 0

    async def score(self, prompt_token_ids: list[int]) -> Score:
        self.requests += 1
        return await self._engine.score(prompt_token_ids)

    def close(self) -> None:  # the session's engine outlives this test
        pass


def _write(directory: Path, body: str) -> None:
    tmp = directory / ".fruit.tmp"
    tmp.write_text(f"---\nid: fruit\n---\n{body}\n")
    os.replace(tmp, directory / "fruit.md")


def _wave(prefix: str) -> tuple[list, dict[str, str]]:
    records, texts = [], {}
    for n in range(COPIES):
        for k, text in enumerate(WAVE):
            item_id = f"{prefix}-{k}-{n}"
            texts[item_id] = text
            records.append((item_id.encode(), event(item_id, text), []))
    return records, texts


async def test_copies_skip_the_engine_and_a_policy_edit_changes_the_key(
    broker, engine, test_model, tmp_path
):
    policies = tmp_path / "policies"
    policies.mkdir()
    _write(policies, V1)
    topics = topic_names("cache")
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        policies={"dir": str(policies), "watch": True},
    )
    await create_topics(broker.bootstrap_servers, list(topics.values()), 3)
    counting = CountingClassifier(engine)
    async with RunningWorker(settings, counting) as running:
        records, texts = _wave("a")
        await produce(broker.bootstrap_servers, topics["content"], records)
        results = await read_topic(broker.bootstrap_servers, topics["results"], ids=texts)
        # One request per distinct text: every copy, in a batch or later, came from the cache.
        assert counting.requests == len(WAVE)
        by_text: dict[str, list[dict]] = {}
        for verdict in verdicts(results):
            by_text.setdefault(texts[verdict["id"]], []).append(verdict["verdicts"][0])
        for text, scored in by_text.items():
            assert len(scored) == COPIES
            assert len({p["score"] for p in scored}) == 1, text  # the same score
            assert sum(not p["cached"] for p in scored) == 1, text  # only the first scored
            assert {p["policy_version"] for p in scored} == {policy_version(V1)}
        assert {t: s[0]["label"] for t, s in by_text.items()} == {
            WAVE[0]: 1,
            WAVE[1]: 0,
            WAVE[2]: 0,
        }

        # A policy edit makes new keys: the same texts go to the engine again, once each.
        _write(policies, V2)
        for _ in range(60):
            if running.worker.catalog.entries["fruit"].policy.version == policy_version(V2):
                break
            await asyncio.sleep(0.25)
        records, later = _wave("b")
        await produce(broker.bootstrap_servers, topics["content"], records)
        results = await read_topic(broker.bootstrap_servers, topics["results"], ids=later)
        assert counting.requests == 2 * len(WAVE)
        fresh = [v for v in verdicts(results) if v["id"] in later]
        labels = {texts_: set() for texts_ in WAVE}
        for verdict in fresh:
            [policy] = verdict["verdicts"]
            assert policy["policy_version"] == policy_version(V2)
            labels[later[verdict["id"]]].add(policy["label"])
        assert labels == {WAVE[0]: {0}, WAVE[1]: {1}, WAVE[2]: {0}}  # no stale score served
        assert sum(not v["verdicts"][0]["cached"] for v in fresh) == len(WAVE)
