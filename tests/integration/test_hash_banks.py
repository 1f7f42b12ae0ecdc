"""Hash banks on the real broker and engine: banked text, images and video are decided by
their bank and never sent to the engine for those policies (its prompts counted per
policy), a near-duplicate image within the PDQ distance matches and one beyond it goes to
the model, other policies of the same event go to the model, and banks reload under a
running worker, a bad file keeping the previous banks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.conftest import SEEING_IMAGES
from tests.media_server import MediaServer
from worker.engine import Score
from worker.hashbanks.signals import DEFAULT_PDQ_DISTANCE, image_pdq
from worker.observability import metrics
from worker.testing import media_samples as samples

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
        self.accepts_media = engine.accepts_media
        self.prompts: list[list[int]] = []

    async def score(self, prompt_token_ids: list[int], media: Sequence[Any] = ()) -> Score:
        self.prompts.append(prompt_token_ids)
        if media:
            return await self._engine.score(prompt_token_ids, media=media)
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


# Photo-like pictures the seeing model sees nothing in (fruit 0, nature 0), so every label 1
# for fruit below is the bank's. A box of 8 pixels over the corner is a near duplicate; one
# of 96 is past PDQ's confident-match distance.
# Two banked pictures (each sent once: a copy could be answered by the verdict cache or by
# another batch's request, and the engine's count would depend on timing) and a meme.
ORIGINAL, OTHER, MEME = samples.picture(), samples.picture(seed=7), samples.picture(seed=5)
NEAR, FAR = samples.picture(box=8, fmt="JPEG"), samples.picture(box=96)
CLIP = samples.video([(255, 255, 255)])  # white frames: nothing to see either
MEDIA = {"allowed_schemes": ["http"], "allowed_hosts": ["127.0.0.1"], "allow_loopback": True,
         "max_frames": SEEING_IMAGES}  # fmt: skip


def _pdq_distance(a: bytes, b: bytes) -> int:
    return int.bit_count(int(image_pdq(a)[0], 16) ^ int(image_pdq(b)[0], 16))


def _write_media_banks(directory: Path) -> None:
    _replace(directory / "removed.yaml", "policies: [fruit]\nlabel: 1\n")
    _replace(
        directory / "removed.txt",
        f"pdq {image_pdq(ORIGINAL)[0]}\npdq {image_pdq(OTHER)[0]}\n"
        f"video_md5 {hashlib.md5(CLIP).hexdigest()}\n",
    )
    _replace(directory / "memes.yaml", "policies: [fruit, nature]\nlabel: 0\n")
    _replace(directory / "memes.txt", f"pdq {image_pdq(MEME)[0]}\n")


def _inline(kind: str, data: bytes) -> dict:
    return {"type": kind, "data": base64.b64encode(data).decode()}


def _hash_matches() -> dict[tuple[str, str], float]:
    metrics.setup_metrics()  # once per process; later calls are no-ops
    text = generate_latest(REGISTRY).decode()
    return {
        (sample.labels["bank"], sample.labels["signal_type"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "moderation_hash_bank_matches_total"
    }


async def test_banked_images_and_video_are_decided_without_the_engine(
    broker, seeing_model, seeing_engine, tmp_path
):
    near, far = _pdq_distance(ORIGINAL, NEAR), _pdq_distance(ORIGINAL, FAR)
    assert 0 < near <= DEFAULT_PDQ_DISTANCE < far, (near, far)
    banks = tmp_path / "banks"
    banks.mkdir()
    _write_media_banks(banks)
    topics = topic_names("banks-media")
    settings = worker_settings(
        broker.bootstrap_servers, seeing_model, topics, banks={"dir": str(banks)}, media=MEDIA
    )
    await create_topics(broker.bootstrap_servers, list(topics.values()), 3)
    server = await MediaServer().start()
    items = {
        "image-url": [{"type": "image", "url": server.add("original.png", ORIGINAL)}],
        "near": [_inline("image", NEAR)],
        "far": [_inline("image", FAR)],
        "video": [_inline("video", CLIP)],
        "meme": [_inline("image", MEME)],
        "meme-and-bad": [_inline("image", MEME), _inline("image", OTHER)],
    }
    captions = {"near": "the river at dawn"}  # the model labels it 1 for nature
    records = [
        (k.encode(), orjson.dumps({"id": k, "media": media, "policies": ["fruit", "nature"],
                                   **({"content": captions[k]} if k in captions else {})}), [])
        for k, media in items.items()
    ]  # fmt: skip
    counted_before = _hash_matches()
    counting = PolicyCountingClassifier(seeing_engine)
    try:
        async with RunningWorker(settings, counting) as running:
            entries = running.worker.catalog.entries
            fruit, nature = entries["fruit"].prompt.prefix, entries["nature"].prompt.prefix
            await produce(broker.bootstrap_servers, topics["content"], records)
            found = await read_topic(broker.bootstrap_servers, topics["results"], ids=items)
    finally:
        await server.stop()
    by_id = {v["id"]: v for v in verdicts(found) if v["id"] in items}
    got = {k: {p["policy"]: _decided(p) for p in v["verdicts"]} for k, v in by_id.items()}
    assert got == {
        "image-url": {
            "fruit": (1, "hash_match", ("removed", "pdq", 0)),
            "nature": (0, "model", None),
        },
        "near": {
            "fruit": (1, "hash_match", ("removed", "pdq", near)),
            "nature": (1, "model", None),  # the caption, seen by the model
        },
        "far": {"fruit": (0, "model", None), "nature": (0, "model", None)},
        "video": {
            "fruit": (1, "hash_match", ("removed", "video_md5", 0)),
            "nature": (0, "model", None),
        },
        "meme": {
            "fruit": (0, "hash_match", ("memes", "pdq", 0)),
            "nature": (0, "hash_match", ("memes", "pdq", 0)),
        },
        # Known good cannot hide known bad; nor decide for the event while one item is unknown.
        "meme-and-bad": {
            "fruit": (1, "hash_match", ("removed", "pdq", 0)),
            "nature": (0, "model", None),
        },
    }
    assert type(by_id["near"]["verdicts"][0]["match"]["distance"]) is int
    # The engine saw fruit only for the far picture; nature for every item but the meme alone.
    assert (counting.asked(fruit), counting.asked(nature)) == (1, 6)
    counted = _hash_matches()
    assert {
        kind: counted.get(kind, 0) - counted_before.get(kind, 0)
        for kind in [("removed", "pdq"), ("removed", "video_md5"), ("memes", "pdq")]
    } == {("removed", "pdq"): 3, ("removed", "video_md5"): 1, ("memes", "pdq"): 2}
