"""Policies change under a running worker the way a ConfigMap update does: by symlink swap."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

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


def _configmap_version(root: Path, name: str, policies: dict[str, str]) -> None:
    """Write a version directory and point ..data at it atomically, as the kubelet does."""
    version = root / name
    version.mkdir()
    for policy_id, body in policies.items():
        (version / f"{policy_id}.md").write_text(f"---\nid: {policy_id}\n---\n{body}\n")
    link = root / "..data_tmp"
    link.symlink_to(name)
    os.replace(link, root / "..data")
    for policy_id in policies:
        visible = root / f"{policy_id}.md"
        if not visible.is_symlink():
            visible.symlink_to(f"..data/{policy_id}.md")


async def _verdict_for(bootstrap: str, topics: dict[str, str], item_id: str, n: int) -> dict:
    await produce(bootstrap, topics["content"], [(None, event(item_id, "a walk by the river"), [])])
    records = await read_topic(bootstrap, topics["results"], at_least=n, timeout=60, settle=0.5)
    [found] = [v for v in verdicts(records) if v["id"] == item_id]
    return found["verdicts"][0]


async def test_symlink_swap_reloads_policies_without_restart(broker, engine, test_model, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    _configmap_version(policies, "..v1", {"fruit": V1})
    topics = topic_names("reload")
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        partitions=1,
        policies={"dir": str(policies), "watch": True},
    )
    await create_topics(broker.bootstrap_servers, list(topics.values()), 1)
    async with RunningWorker(settings, engine) as running:
        before = await _verdict_for(broker.bootstrap_servers, topics, "before", 1)
        assert before["policy_version"] == policy_version(V1) and before["label"] == 0

        _configmap_version(policies, "..v2", {"fruit": V2})
        for _ in range(60):  # the watcher polls; give it a few seconds
            if running.worker.catalog.entries["fruit"].policy.version == policy_version(V2):
                break
            await asyncio.sleep(0.25)
        after = await _verdict_for(broker.bootstrap_servers, topics, "after", 2)
        assert after["policy_version"] == policy_version(V2) and after["label"] == 1

        # An invalid update keeps the last good set.
        _configmap_version(policies, "..v3", {"fruit": ""})
        await asyncio.sleep(3)
        assert running.worker.catalog.entries["fruit"].policy.version == policy_version(V2)
        kept = await _verdict_for(broker.bootstrap_servers, topics, "kept", 3)
        assert kept["policy_version"] == policy_version(V2)


async def _wait_for(condition, seconds: float = 15) -> bool:
    for _ in range(int(seconds / 0.25)):
        if condition():
            return True
        await asyncio.sleep(0.25)
    return False


async def test_a_reload_adding_the_first_shadow_policy_needs_its_topic(
    broker, engine, test_model, tmp_path
):
    """With no shadow policy the shadow topic is not required at start-up; a reload that adds
    one is refused until the topic exists, and the previous policies keep serving."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fruit.md").write_text(f"---\nid: fruit\n---\n{V1}\n")
    topics = topic_names("reload-shadow")
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        partitions=1,
        policies={"dir": str(policies), "watch": True},
    )
    settings.topics.create = False
    present = [name for key, name in topics.items() if key != "shadow"]
    await create_topics(broker.bootstrap_servers, present, 1)
    async with RunningWorker(settings, engine) as running:
        draft = f"---\nid: fruit-v2\nshadow_of: fruit\n---\n{V2}\n"
        (policies / "fruit-v2.md").write_text(draft)
        await asyncio.sleep(4)  # the watcher polls every half second
        assert "fruit-v2" not in running.worker.catalog.entries  # refused: no shadow topic

        await create_topics(broker.bootstrap_servers, [topics["shadow"]], 1)
        (policies / "fruit-v2.md").write_text(draft + "\n")  # a change, for the watcher
        assert await _wait_for(lambda: "fruit-v2" in running.worker.catalog.entries)
