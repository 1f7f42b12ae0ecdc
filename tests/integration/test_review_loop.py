"""The review loop end to end: audit copies from the worker, decisions back, eval decisions.

Real broker, real CPU engine and the test model, whose labels are exact: a reviewer's "truth"
can then be chosen to differ from the model in a known way (here: the reviewer also flags
river for the fruit policy), and the estimates checked against the figures it implies.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime

import orjson
import pytest

from worker.audit import draw

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

CPU_ARGS = {"extra_args": {"enforce_eager": True, "block_size": 32}}
RATE_1, RATE_0 = 0.2, 0.1  # fruit's audit shares for label 1 and label 0
WORDS = {0: " with an apple", 1: " by the river", 2: ""}


def _events() -> tuple[list, dict[str, str]]:
    """1,500 fruit events (apple / river / neither) and 90 nature events (60 with river)."""
    records, kinds = [], {}
    for i in range(1500):
        item = f"f-{i}"
        kinds[item] = ("apple", "river", "none")[i % 3]
        records.append(
            (item.encode(), event(item, f"note {i}{WORDS[i % 3]}", policies=["fruit"]), [])
        )
    for i in range(90):
        item = f"n-{i}"
        kinds[item] = "river" if i < 60 else "none"
        text = f"walk {i}" + (" by the river" if i < 60 else "")
        records.append((item.encode(), event(item, text, policies=["nature"]), []))
    return records, kinds


def _decision(item: str, policy: str, value: int) -> bytes:
    return orjson.dumps(
        {"id": item, "policy": policy, "decision": value, "reviewer": "rev-1",
         "decided_at": datetime.now(UTC).isoformat()}
    )  # fmt: skip


async def test_audit_copies_and_decisions_close_the_loop(broker, engine, test_model, tmp_path):
    topics = topic_names("loop")
    decisions_topic = topics["content"].replace("content", "decisions")
    settings = worker_settings(
        broker.bootstrap_servers,
        test_model,
        topics,
        engine=CPU_ARGS,
        routing={
            "review_low": 0.5,
            "review_high": 0.5,  # no global band: fruit decisions are all automatic
            "policies": {
                "fruit": {"audit_label_1": RATE_1, "audit_label_0": RATE_0},
                "nature": {"review_low": 0.5, "review_high": 1.0},  # its positives go to review
            },
        },
    )
    records, kinds = _events()
    await create_topics(broker.bootstrap_servers, [*topics.values(), decisions_topic], 3)
    await produce(broker.bootstrap_servers, topics["content"], records)
    async with RunningWorker(settings, engine):
        results = await read_topic(
            broker.bootstrap_servers, topics["results"], ids=set(kinds), timeout=900
        )
        review = await read_topic(broker.bootstrap_servers, topics["review"], at_least=60)

    # Every verdict is the model's exact label, routed as configured: audits change nothing.
    by_id = {v["id"]: v for v in verdicts(results)}
    assert set(by_id) == set(kinds)
    for item, kind in kinds.items():
        fruit = item.startswith("f-")
        assert by_id[item]["label"] == int(kind == ("apple" if fruit else "river"))
        assert by_id[item]["route"] == ("review" if not fruit and kind == "river" else "auto")

    copies = {r["id"]: r for r in verdicts(review)}
    band = {i for i, r in copies.items() if r["origin"] == "review_band"}
    audit = {i for i, r in copies.items() if r["origin"] == "audit_sample"}
    assert band == {i for i, k in kinds.items() if i.startswith("n-") and k == "river"}
    rate = {1: RATE_1, 0: RATE_0}
    expected_audit = {
        i for i in kinds if i.startswith("f-") and draw(i, "fruit") < rate[by_id[i]["label"]]
    }
    assert audit == expected_audit  # chosen by the id's hash, exactly
    for label, n in ((1, 500), (0, 1000)):
        got = sum(1 for i in audit if by_id[i]["label"] == label)
        sigma = (n * rate[label] * (1 - rate[label])) ** 0.5
        assert abs(got - n * rate[label]) < 4 * sigma, (label, got)
    for item in audit:
        copy = dict(copies[item])
        assert copy.pop("origin") == "audit_sample"
        assert copy.pop("audit_rates") == {"fruit": rate[by_id[item]["label"]]}
        assert copy == by_id[item]  # the verdict, unchanged, route auto

    # Reviewers: fruit truth is "apple or river"; in the band they agree on 48 of 60.
    decisions = [(None, _decision(i, "fruit", int(kinds[i] != "none")), []) for i in sorted(audit)]
    decisions += [
        (None, _decision(i, "nature", int(n < 48)), []) for n, i in enumerate(sorted(band))
    ]
    bad = [b"not json", orjson.dumps({"id": "x", "policy": "fruit", "decision": 7}), b"[]"]
    decisions += [(None, value, [("trace", b"keep")]) for value in bad]
    await produce(broker.bootstrap_servers, decisions_topic, decisions)

    out = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env |= {
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "WORKER_KAFKA__ENABLE_IDEMPOTENCE": "false",
        "WORKER_TOPICS__DEAD_LETTER": topics["dead_letter"],
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker.cli", "eval", "decisions", decisions_topic,
         "--verdicts", topics["review"], "--out", str(out), "--target-precision", "0.9"],
        capture_output=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    output = (result.stdout + result.stderr).decode()[-5000:]
    assert result.returncode == 1, output  # 1: bad records listed
    data = orjson.loads((out / "report.json").read_bytes())
    figures = {p["policy"]: p for p in data["policies"]}

    sampled = {k: sum(1 for i in audit if kinds[i] == k) for k in ("apple", "river", "none")}
    fruit = figures["fruit"]
    assert fruit["precision"]["value"] == 1.0
    weighted_tp, weighted_fn = sampled["apple"] / RATE_1, sampled["river"] / RATE_0
    assert fruit["recall"]["value"] == pytest.approx(weighted_tp / (weighted_tp + weighted_fn))
    assert fruit["recall"]["low"] < 0.5 < fruit["recall"]["high"]  # true recall: 500 of 1,000
    naive = sampled["apple"] / (sampled["apple"] + sampled["river"])
    assert abs(naive - 0.5) > abs(fruit["recall"]["value"] - 0.5)  # weighting matters
    assert fruit["npv"]["value"] == pytest.approx(
        sampled["none"] / (sampled["none"] + sampled["river"])
    )
    assert figures["nature"]["agreement"]["value"] == pytest.approx(0.8)
    assert data["unmatched"] == [] and len(data["bad_rows"]) == 3 and data["dead_lettered"] == 3
    assert "routing:" in (out / "report.md").read_text()

    dead = await read_topic(broker.bootstrap_servers, topics["dead_letter"], at_least=3)
    kinds_dead = sorted(dict(r.headers)["x-dead-letter-error-type"].decode() for r in dead)
    assert kinds_dead == ["invalid_decision", "invalid_json", "not_an_object"]
    assert all(dict(r.headers)["trace"] == b"keep" for r in dead)
    assert {r.value for r in dead} == set(bad)
