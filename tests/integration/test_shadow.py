"""Shadow policies on live traffic: a draft that disagrees on known items changes no verdict.

The test model answers "1" exactly when the content holds a trigger word its policy names,
so the draft below flips known items both ways: apple 1->0, river 0->1, mango agrees on 1.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.observability import metrics
from worker.policies import policy_version
from worker.tools.evaluate.shadow import compare
from worker.tools.evaluate.shadow import read_topic as read_shadow_topic

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

PRODUCTION = "Flag content that mentions any of: apple, mango."
DRAFT = "Flag content that mentions any of: mango, river."
DRAFT_V2 = "Flag content that mentions any of: apple, mango, river."
TOOLS = "Flag content that mentions any of: anchor, compass."

# content word -> (production label, draft label)
KINDS = {"apple": (1, 0), "mango": (1, 1), "river": (0, 1), "stone": (0, 0)}
PER_KIND = 6


def _write(directory: Path, policy_id: str, body: str, shadow_of: str | None = None) -> None:
    front = f"id: {policy_id}\n" + (f"shadow_of: {shadow_of}\n" if shadow_of else "")
    tmp = directory / f".{policy_id}.tmp"
    tmp.write_text(f"---\n{front}---\n{body}\n")
    os.replace(tmp, directory / f"{policy_id}.md")  # whole files only, as a ConfigMap swap


def _events(prefix: str) -> tuple[list, dict[str, str]]:
    records, kinds = [], {}
    for word in KINDS:
        for n in range(PER_KIND):
            item_id = f"{prefix}-{word}-{n}"
            text = f"note {n} of the day mentions one {word} in passing"
            kinds[item_id] = word
            records.append((item_id.encode(), event(item_id, text, policies=["fruit"]), []))
    return records, kinds


def _scrape() -> dict:
    out = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _decisions(scrape: dict, outcome: str) -> float:
    labels = (("outcome", outcome), ("production", "fruit"), ("shadow", "fruit-draft"))
    return scrape.get(("moderation_shadow_decisions_total", labels), 0.0)


async def test_shadow_policy_changes_no_verdict_and_reloads(broker, engine, test_model, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    _write(policies, "fruit", PRODUCTION)
    _write(policies, "tools", TOOLS)
    _write(policies, "fruit-draft", DRAFT, shadow_of="fruit")
    topics = topic_names("shadow")
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        policies={"dir": str(policies), "watch": True},
        cache={"enabled": False},  # every shadow score from the engine
    )
    await create_topics(broker.bootstrap_servers, list(topics.values()), 3)
    records, kinds = _events("a")
    others = [
        (b"t-1", event("t-1", "an apple and a river", policies=["tools"]), []),
        (b"d-1", event("d-1", "an apple", policies=["fruit-draft"]), []),
    ]
    metrics.setup_metrics()
    before = _scrape()
    async with RunningWorker(settings, engine) as running:
        await produce(broker.bootstrap_servers, topics["content"], records + others)
        results = await read_topic(
            broker.bootstrap_servers, topics["results"], ids=[*kinds, "t-1"], timeout=180
        )
        shadow = await read_topic(broker.bootstrap_servers, topics["shadow"], at_least=len(kinds))
        dead = await read_topic(broker.bootstrap_servers, topics["dead_letter"], at_least=1)
        after = _scrape()

        # Verdicts are production's alone: labels, policies and route.
        got = {v["id"]: v for v in verdicts(results)}
        for item_id, word in kinds.items():
            verdict = got[item_id]
            assert [p["policy"] for p in verdict["verdicts"]] == ["fruit"]
            assert verdict["label"] == KINDS[word][0], item_id
            assert verdict["route"] == "auto"
        assert [p["policy"] for p in got["t-1"]["verdicts"]] == ["tools"]
        review = await read_topic(broker.bootstrap_servers, topics["review"], timeout=2, settle=0)
        assert review == []

        # One shadow record per fruit event, none for tools; the flips are the known ones.
        drafts = [orjson.loads(r.value) for r in shadow]
        assert sorted(d["id"] for d in drafts) == sorted(kinds)
        for record in drafts:
            want_prod, want_draft = KINDS[kinds[record["id"]]]
            assert (record["production_label"], record["shadow_label"]) == (want_prod, want_draft)
            assert record["disagree"] == (want_prod != want_draft)
            assert record["production_version"] == policy_version(PRODUCTION)
            assert record["shadow_version"] == policy_version(DRAFT)
            assert record["production_score"] == got[record["id"]]["verdicts"][0]["score"]
        flips = Counter(d["flip"] for d in drafts)
        assert flips == {"1->0": PER_KIND, "0->1": PER_KIND, "none": 2 * PER_KIND}
        for outcome, count in [("agree", 12), ("flip_1_to_0", 6), ("flip_0_to_1", 6)]:
            assert _decisions(after, outcome) - _decisions(before, outcome) == count, outcome

        # eval shadow reads the topic and counts the same decisions the draft would change.
        [pair] = compare(await read_shadow_topic(settings.kafka, topics["shadow"]))
        assert (pair.events, pair.flips) == (len(kinds), {"0->1": PER_KIND, "1->0": PER_KIND})

        # An event cannot ask for a shadow policy by id: it is dead-lettered, saying why.
        [letter] = [r for r in dead if r.key == b"d-1"]
        headers = dict(letter.headers)
        assert headers["x-dead-letter-error-type"] == b"unknown_policy"
        assert b"shadow polic" in headers["x-dead-letter-reason"]

        # Editing the draft applies without a restart: apple now agrees.
        _write(policies, "fruit-draft", DRAFT_V2, shadow_of="fruit")
        for _ in range(60):
            draft = running.worker.catalog.entries["fruit-draft"].policy
            if draft.version == policy_version(DRAFT_V2):
                break
            await asyncio.sleep(0.25)
        later, later_kinds = _events("b")
        await produce(broker.bootstrap_servers, topics["content"], later)
        shadow = await read_topic(
            broker.bootstrap_servers, topics["shadow"], at_least=len(kinds) + len(later_kinds)
        )
        new = [orjson.loads(r.value) for r in shadow if r.key.startswith(b"b-")]
        assert len(new) == len(later_kinds)
        assert {d["shadow_version"] for d in new} == {policy_version(DRAFT_V2)}
        assert Counter(d["flip"] for d in new) == {"0->1": PER_KIND, "none": 3 * PER_KIND}
