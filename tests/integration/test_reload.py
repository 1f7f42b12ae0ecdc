"""Policies change under a running worker the way a ConfigMap update does: by symlink swap."""

from __future__ import annotations

import asyncio
import os
import sys
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


def _watching(broker, test_model, policies: Path, name: str):
    """Topics named after ``name``, and a worker's settings watching ``policies``."""
    topics = topic_names(name)
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        partitions=1,
        policies={"dir": str(policies), "watch": True},
    )
    return topics, settings


async def _verdict_for(bootstrap: str, topics: dict[str, str], item_id: str, n: int) -> dict:
    await produce(bootstrap, topics["content"], [(None, event(item_id, "a walk by the river"), [])])
    records = await read_topic(bootstrap, topics["results"], at_least=n, timeout=60, settle=0.5)
    [found] = [v for v in verdicts(records) if v["id"] == item_id]
    return found["verdicts"][0]


async def test_symlink_swap_reloads_policies_without_restart(broker, engine, test_model, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    _configmap_version(policies, "..v1", {"fruit": V1})
    topics, settings = _watching(broker, test_model, policies, "reload")
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
    topics, settings = _watching(broker, test_model, policies, "reload-shadow")
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


OTHERS = {"other-1": "Flag content that mentions a lemon.", "other-2": "Flag a kite."}


def _write_pack(directory: Path, fruit: str, note: str) -> None:
    """``fruit`` as the fruit policy's text, ``note`` added to the other ones."""
    texts = {"fruit": fruit, **{pid: f"{body}{note}" for pid, body in OTHERS.items()}}
    for policy_id, text in texts.items():
        (directory / f"{policy_id}.md").write_text(f"---\nid: {policy_id}\n---\n{text}\n")


def _record_children(monkeypatch) -> list[bool]:
    """Per compile process started: whether its halves were taken (False when it died or
    its tokenizer was not trusted). From two changed policies on."""
    from worker import compile_process

    monkeypatch.setattr(compile_process, "APART_AT", 2)
    children: list[bool] = []
    real = compile_process.compile_apart

    def recording(tokenizer, source, policies):
        children.append(False)
        halves = real(tokenizer, source, policies)
        children[-1] = halves is not None
        return halves

    monkeypatch.setattr(compile_process, "compile_apart", recording)
    return children


async def test_a_reload_of_many_changed_policies_compiles_in_a_process_of_its_own(
    broker, engine, test_model, tmp_path, monkeypatch
):
    """A pack rewritten whole compiles in a child with the engine's own tokenizer; a child
    that dies rejects the reload and the policies in use keep serving."""
    from worker import compile_process

    children = _record_children(monkeypatch)
    policies = tmp_path / "policies"
    policies.mkdir()
    _write_pack(policies, V1, "")
    topics, settings = _watching(broker, test_model, policies, "reload-apart")
    await create_topics(broker.bootstrap_servers, list(topics.values()), 1)
    async with RunningWorker(settings, engine) as running:
        assert (await _verdict_for(broker.bootstrap_servers, topics, "before", 1))["label"] == 0
        _write_pack(policies, V2, " Edited.")  # three policy texts change
        entries = lambda: running.worker.catalog.entries  # noqa: E731
        assert await _wait_for(lambda: entries()["fruit"].policy.version == policy_version(V2))
        assert children and all(children)
        after = await _verdict_for(broker.bootstrap_servers, topics, "after", 2)
        assert after["policy_version"] == policy_version(V2) and after["label"] == 1

        dying = [sys.executable, "-c", "import sys; sys.exit(9)"]
        monkeypatch.setattr(compile_process, "bound_to_parent", lambda command: dying)
        started = len(children)
        _write_pack(policies, V1, " Edited again.")
        assert await _wait_for(lambda: len(children) > started)
        await asyncio.sleep(1)
        assert not children[-1] and entries()["fruit"].policy.version == policy_version(V2)
        kept = await _verdict_for(broker.bootstrap_servers, topics, "kept", 3)
        assert kept["policy_version"] == policy_version(V2)
