"""Hash banks on the real broker and engine: banked text is decided by its bank and never
sent to the engine for those policies (its prompts counted per policy), other policies of
the same event go to the model, and banks reload under a running worker, a bad file
keeping the previous banks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from worker.engine import Score

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

BANKED_BAD = "a walk by the river"  # the model: fruit 0, nature 1; bank "removed": fruit 1
BANKED_GOOD = "one apple on the table"  # the model: fruit 1; bank "memes": fruit 0, nature 0
IN_BOTH = "the mango and the meadow"  # in both banks: label 1 wins for fruit
UNBANKED = "nothing here at all"
LATER = "a tiger eats a mango"  # banked only by the reload


class PolicyCountingClassifier:
    """The session's engine, with each prompt counted against the policy whose prefix it has."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.model_name = engine.model_name
        self.max_model_len = engine.max_model_len
        self.tokenizer = engine.tokenizer
        self.prompts: list[list[int]] = []

    async def score(self, prompt_token_ids: list[int]) -> Score:
        self.prompts.append(prompt_token_ids)
        return await self._engine.score(prompt_token_ids)

    def asked(self, prefix: tuple[int, ...]) -> int:
        return sum(tuple(p[: len(prefix)]) == prefix for p in self.prompts)

    def close(self) -> None:  # the session's engine outlives this test
        pass


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_banks(directory: Path, removed: list[str]) -> None:
    _replace(directory / "removed.yaml", "policies: [fruit]\nlabel: 1\n")
    _replace(
        directory / "memes.yaml", "policies: [fruit, nature]\nlabel: 0\nsignal_type: raw_text\n"
    )
    _replace(directory / "memes.txt", f"{BANKED_GOOD}\n{IN_BOTH}\n")
    _replace(directory / "removed.txt", "".join(f"raw_text {text}\n" for text in removed))


async def _verdicts(bootstrap: str, topics: dict[str, str], items: dict[str, str]) -> dict:
    records = [
        (k.encode(), event(k, text, policies=["fruit", "nature"]), []) for k, text in items.items()
    ]
    await produce(bootstrap, topics["content"], records)
    found = await read_topic(bootstrap, topics["results"], ids=items)
    by_id = {v["id"]: v for v in verdicts(found) if v["id"] in items}
    return {k: {p["policy"]: p for p in v["verdicts"]} for k, v in by_id.items()}


async def _until(condition, what: str) -> None:
    for _ in range(80):  # the watcher polls twice a second
        if condition():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _decided(policy: dict) -> tuple:
    match = policy["match"]
    where = (match["bank"], match["signal_type"], match["distance"]) if match else None
    return policy["label"], policy["source"], where


async def test_banked_text_is_decided_without_the_engine_and_banks_reload(
    broker, engine, test_model, tmp_path
):
    banks = tmp_path / "banks"
    banks.mkdir()
    _write_banks(banks, [BANKED_BAD, IN_BOTH])
    topics = topic_names("banks")
    settings = worker_settings(
        broker.bootstrap_servers, test_model, topics, banks={"dir": str(banks), "watch": True}
    )
    await create_topics(broker.bootstrap_servers, list(topics.values()), 3)
    counting = PolicyCountingClassifier(engine)
    async with RunningWorker(settings, counting) as running:
        entries = running.worker.catalog.entries
        fruit, nature = entries["fruit"].prompt.prefix, entries["nature"].prompt.prefix
        got = await _verdicts(
            broker.bootstrap_servers,
            topics,
            {"bad": BANKED_BAD, "good": BANKED_GOOD, "both": IN_BOTH, "none": UNBANKED},
        )
        assert {k: {p: _decided(v) for p, v in pv.items()} for k, pv in got.items()} == {
            "bad": {
                "fruit": (1, "hash_match", ("removed", "raw_text", 0)),
                "nature": (1, "model", None),
            },
            "good": {
                "fruit": (0, "hash_match", ("memes", "raw_text", 0)),
                "nature": (0, "hash_match", ("memes", "raw_text", 0)),
            },
            "both": {
                "fruit": (1, "hash_match", ("removed", "raw_text", 0)),
                "nature": (0, "hash_match", ("memes", "raw_text", 0)),
            },
            "none": {"fruit": (0, "model", None), "nature": (0, "model", None)},
        }
        assert got["bad"]["fruit"]["score"] is None and got["bad"]["nature"]["score"] > 0.5
        # The engine saw fruit only for the unbanked text, nature for the two that no bank
        # decides it for.
        assert (counting.asked(fruit), counting.asked(nature)) == (1, 2)

        # The model labels LATER 1 for fruit; then a bank names it, without a restart, ahead
        # of the verdict cache that now holds the model's score.
        before = await _verdicts(broker.bootstrap_servers, topics, {"later-1": LATER})
        assert _decided(before["later-1"]["fruit"]) == (1, "model", None)
        old = running.worker.banks
        _write_banks(banks, [BANKED_BAD, IN_BOTH, LATER])
        await _until(lambda: running.worker.banks is not old, "the bank reload")
        asked = counting.asked(fruit)
        after = await _verdicts(broker.bootstrap_servers, topics, {"later-2": LATER})
        assert _decided(after["later-2"]["fruit"]) == (1, "hash_match", ("removed", "raw_text", 0))
        assert counting.asked(fruit) == asked

        # A bad entry keeps the banks in use and says which file and line, and why.
        current = running.worker.banks
        with capture_logs() as logs:
            _replace(banks / "removed.txt", f"raw_text {BANKED_BAD}\npdq not-a-hash\n")
            await _until(
                lambda: any(e.get("event", "").startswith("bank reload rejected") for e in logs),
                "the rejected reload",
            )
        [rejected] = [e for e in logs if e["event"].startswith("bank reload rejected")]
        assert rejected["log_level"] == "error"
        assert f"{banks / 'removed.txt'}:2: " in rejected["error"], rejected
        assert running.worker.banks is current
        kept = await _verdicts(broker.bootstrap_servers, topics, {"later-3": LATER})
        assert _decided(kept["later-3"]["fruit"]) == (1, "hash_match", ("removed", "raw_text", 0))
