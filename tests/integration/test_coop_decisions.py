"""Every human decision made in Coop reaches the decisions topic, and nothing else does.

Real broker, the adapter as it runs, and ``eval decisions`` as users run it. Coop's side is
recreated from its server code (roostorg/coop): action callbacks have the shape its
ActionPublisher builds (``rules`` from the matching rules, ``actorEmail`` only when a person
acted), Ignore callbacks the ``{id, typeId, data}`` its review console posts to the Ignore
Callback URL, and both are signed as its networking service signs them: RSASSA-PKCS1-v1_5 /
SHA-256 over the exact body bytes, base64 in a ``coop-signature`` header.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from worker.coop.actions import IGNORE_REVIEWER
from worker.coop.command import running
from worker.decisions import decode_decision

from .harness import create_topics, produce, read_topic
from .test_coop import StandIn, _key, _pem, _settings, _sign, _topics, _until

pytestmark = pytest.mark.integration

RATE_1, RATE_0 = 0.2, 0.1
FLAGGED = [f"p{i}" for i in range(6)]  # automatic label 1, audited at RATE_1
CLEARED = [f"c{i}" for i in range(8)]  # automatic label 0, audited at RATE_0
FIGURES = ("precision", "recall", "npv", "agreement")


def _record(item: str, origin: str, labels: dict[str, int], rates: dict[str, float]) -> bytes:
    return orjson.dumps(
        {
            "id": item, "label": max(labels.values()),
            "route": "review" if origin == "review_band" else "auto",
            "verdicts": [
                {"policy": p, "policy_version": f"{p}-v1", "label": label,
                 "score": 0.9 if label else 0.1, "confidence": 0.9} for p, label in labels.items()
            ],
            "model": "m", "source": {"topic": "content", "partition": 0, "offset": 1},
            "metadata": {"text": f"content of {item}"},
            "latency_ms": {"queue": 1, "inference": 1, "total": 2},
            "classified_at": "2026-11-23T10:00:00Z", "origin": origin, "audit_rates": rates,
        }
    )  # fmt: skip


def _review_records() -> list:
    records = [(i, _record(i, "audit_sample", {"fruit": 1}, {"fruit": RATE_1})) for i in FLAGGED]
    records += [(i, _record(i, "audit_sample", {"fruit": 0}, {"fruit": RATE_0})) for i in CLEARED]
    records.append(("b1", _record("b1", "review_band", {"fruit": 1, "nature": 0}, {})))
    return [(item.encode(), value, []) for item, value in records]


def _action(item: str, action: str, policies: list[str], **who) -> dict:
    """The body Coop's ActionPublisher posts: ``actorEmail`` only when a person acted."""
    return {
        "item": {"id": item, "typeId": "post", "typeName": "Post"},
        "policies": [{"id": p, "name": p.title(), "penalty": "MEDIUM"} for p in policies],
        "rules": who.pop("rules", []),
        "action": {"id": action},
        "custom": {},
        **who,
    }


def _ignore(item: str) -> dict:
    """The body Coop's review console posts to the Ignore Callback URL."""
    return {"id": item, "typeId": "post", "data": {"text": f"content of {item}"}}


HUMAN = "mod@example.org"
RULE = [{"id": "rule-7", "name": "Fruit detector"}]


def _human_callbacks() -> list[tuple[str, dict]]:
    """Reviewers: p5 is a false positive, c0 and c1 are missed positives, the rest cleared."""
    calls = [("actions", _action(i, "act-remove", ["coop-fruit"], actorEmail=HUMAN)) for i in FLAGGED[:5]]  # fmt: skip
    calls.append(("actions", _action("p5", "act-keep", ["coop-fruit"], actorEmail=HUMAN)))
    calls += [("actions", _action(i, "act-remove", [], actorEmail=HUMAN)) for i in CLEARED[:2]]
    calls += [("ignore", _ignore(i)) for i in [*CLEARED[2:], "b1"]]
    return calls


def _automated_callbacks() -> list[tuple[str, dict]]:
    """Coop's rules flag every cleared copy, a strike threshold fires on p5, an unmapped
    rule action lands on b1: none of them is a person's decision."""
    calls = [("actions", _action(i, "act-remove", ["coop-fruit"], rules=RULE)) for i in CLEARED]
    calls.append(("actions", _action("p5", "act-remove", [])))  # user strikes: nothing at all
    calls.append(("actions", _action("b1", "act-ban", ["coop-fruit"], rules=RULE)))
    return calls


async def _eval(broker, topics: dict, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env |= {
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "WORKER_KAFKA__ENABLE_IDEMPOTENCE": "false",
        "WORKER_TOPICS__DEAD_LETTER": topics["dead_letter"],
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker.cli", "eval", "decisions", topics["decisions"],
         "--verdicts", topics["review"], "--out", str(out)],
        capture_output=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr).decode()[-5000:]
    data = orjson.loads((out / "report.json").read_bytes())
    return {p["policy"]: {f: p[f] for f in FIGURES} for p in data["policies"]}


async def test_ignore_counts_as_zero_and_automated_actions_never_reach_the_figures(
    broker, tmp_path
):
    topics = _topics("coop-truth")
    key, other = _key(), _key()
    key_file = tmp_path / "coop.pem"
    key_file.write_bytes(_pem(key))
    await create_topics(broker.bootstrap_servers, list(topics.values()), 1)
    await produce(broker.bootstrap_servers, topics["review"], _review_records())

    async with StandIn() as coop:
        settings = _settings(broker, topics, coop.port, key_file)
        base = f"http://127.0.0.1:{settings.coop.port}/coop"
        async with running(settings, key_file.read_bytes(), asyncio.Event()):
            await _until(lambda: len(coop.requests) == len(FLAGGED) + len(CLEARED) + 2)
            async with aiohttp.ClientSession() as http:

                async def post(path: str, payload: dict, signer=key) -> tuple[int, dict]:
                    body = orjson.dumps(payload)  # Coop signs the exact bytes it sends
                    headers = {"Content-Type": "application/json",
                               "coop-signature": _sign(signer, body)}  # fmt: skip
                    async with http.post(f"{base}/{path}", data=body, headers=headers) as r:
                        return r.status, await r.json()

                forged = await post("ignore", _ignore("c2"), signer=other)
                unknown = await post("ignore", _ignore("never-reported"))
                not_ignore = await post("ignore", {"item": {"id": "c2"}})
                human = [await post(path, body) for path, body in _human_callbacks()]
                first = await read_topic(broker.bootstrap_servers, topics["decisions"], at_least=16)
                before = await _eval(broker, topics, tmp_path / "before")
                automated = [await post(path, body) for path, body in _automated_callbacks()]
        after_records = await read_topic(broker.bootstrap_servers, topics["decisions"], at_least=16)
        after = await _eval(broker, topics, tmp_path / "after")

    assert forged[0] == 401 and unknown[0] == 422 and not_ignore[0] == 400
    assert [status for status, _ in human] == [200] * len(human)
    assert [answer["published"] for _, answer in human] == [1] * 8 + [1] * 6 + [2]
    assert all(s == 200 and a["published"] == 0 and a["automated"] for s, a in automated)

    # The decisions topic holds exactly the human decisions, Ignore ones as 0.
    decided = sorted(
        (d.id, d.policy, d.decision, d.reviewer, d.origin)
        for d in map(decode_decision, (r.value for r in after_records))
    )
    expected = [(i, "fruit", 1, HUMAN, "audit_sample") for i in FLAGGED[:5]]
    expected += [("p5", "fruit", 0, HUMAN, "audit_sample")]
    expected += [(i, "fruit", 1, HUMAN, "audit_sample") for i in CLEARED[:2]]
    expected += [(i, "fruit", 0, IGNORE_REVIEWER, "audit_sample") for i in CLEARED[2:]]
    expected += [("b1", p, 0, IGNORE_REVIEWER, "review_band") for p in ("fruit", "nature")]
    assert decided == sorted(expected)
    assert len(after_records) == len(first) == len(expected)

    # The figures: weight 5 per flagged copy, 10 per cleared one; Ignores are the cleared truth.
    fruit = before["fruit"]
    assert fruit["precision"]["value"] == pytest.approx(5 / 6)
    assert fruit["recall"]["value"] == pytest.approx(25 / (25 + 20))
    assert fruit["npv"]["value"] == pytest.approx(6 / 8)
    assert fruit["agreement"]["value"] == 0.0  # b1: model 1, cleared with Ignore
    assert before["nature"]["agreement"]["value"] == 1.0
    assert after == before  # automated actions moved nothing


async def test_after_a_restart_an_ignore_still_decides_what_was_reported(broker, tmp_path):
    topics = _topics("coop-restart")
    key = _key()
    key_file = tmp_path / "coop.pem"
    key_file.write_bytes(_pem(key))
    await create_topics(broker.bootstrap_servers, list(topics.values()), 2)
    await produce(broker.bootstrap_servers, topics["review"], _review_records())
    body = orjson.dumps(_ignore("c3"))
    headers = {"Content-Type": "application/json", "coop-signature": _sign(key, body)}

    async with StandIn() as coop:
        settings = _settings(broker, topics, coop.port, key_file)
        url = f"http://127.0.0.1:{settings.coop.port}/coop/ignore"
        async with running(settings, key_file.read_bytes(), asyncio.Event()):
            await _until(lambda: len(coop.requests) == len(FLAGGED) + len(CLEARED) + 2)
        reported = len(coop.requests)
        # A new process: its memory is empty and the group's offsets say all was reported.
        async with running(settings, key_file.read_bytes(), asyncio.Event()):
            async with aiohttp.ClientSession() as http:
                async with http.post(url, data=body, headers=headers) as response:
                    answer = response.status, await response.json()
        assert len(coop.requests) == reported  # nothing reported again: the index was refilled

    assert answer == (200, {"published": 1})
    (record,) = await read_topic(broker.bootstrap_servers, topics["decisions"], at_least=1)
    decision = decode_decision(record.value)
    assert (decision.id, decision.policy, decision.decision) == ("c3", "fruit", 0)
    assert (decision.policy_version, decision.origin) == ("fruit-v1", "audit_sample")
