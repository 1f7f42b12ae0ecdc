"""The Coop adapter against the real broker and a local server standing in for Coop's API.

Coop itself cannot run here, so its side is built from its documented contract
(roostorg/coop docs/api/report.md, actions.md, development/api-auth.md): the stand-in checks
what a report request carries; callbacks are signed as Coop signs them, with a key made here.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from worker.config import load_settings
from worker.coop.command import running
from worker.decisions import decode_decision

from .harness import create_topics, produce, read_topic, topic_names

pytestmark = pytest.mark.integration

API_KEY = "org-key-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _sign(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def _review(item: str, origin: str, rates: dict, policies=("fruit", "nature")) -> bytes:
    return orjson.dumps(
        {
            "id": item, "label": 1, "route": "review" if origin == "review_band" else "auto",
            "verdicts": [
                {"policy": p, "policy_version": f"{p}-v1", "label": 1, "score": 0.75,
                 "confidence": 0.75} for p in policies
            ],
            "model": "m", "source": {"topic": "content", "partition": 0, "offset": 1},
            "metadata": {"text": f"content of {item}"},
            "latency_ms": {"queue": 1, "inference": 1, "total": 2},
            "classified_at": "2026-11-23T10:00:00Z", "origin": origin, "audit_rates": rates,
        }
    )  # fmt: skip


class StandIn:
    """Coop's report endpoint as documented: 201 with a reportId; 400 for one refused item."""

    def __init__(self) -> None:
        self.requests: list = []
        self.port = _free_port()

    async def report(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.headers.copy(), body))
        if body["reportedItem"]["id"] == "refused":
            return web.json_response({"error": "data does not match the item type"}, status=400)
        return web.json_response({"reportId": f"r-{len(self.requests)}"}, status=201)

    async def __aenter__(self) -> StandIn:
        app = web.Application()
        app.router.add_post("/api/v1/report", self.report)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


def _settings(broker, topics: dict, coop_port: int, public_key: Path):
    return load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers, "enable_idempotence": False,
               "connect_retry_s": 5},
        topics=topics,
        coop={
            "url": f"http://127.0.0.1:{coop_port}", "api_key": API_KEY,
            "public_key_file": str(public_key), "item_type_id": "post",
            "reporter_type_id": "service-user", "reporter_id": "mw",
            "policies": {"fruit": "coop-fruit"}, "decisions": {"act-remove": 1, "act-keep": 0},
            "host": "127.0.0.1", "port": _free_port(), "group_id": f"coop-{topics['review']}",
        },
    )  # fmt: skip


def _topics(prefix: str) -> dict:
    names = topic_names(prefix)
    names["decisions"] = names["content"].replace("content", "decisions")
    return names


async def _until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_review_records_become_documented_report_requests(broker, tmp_path):
    topics = _topics("coop-report")
    key_file = tmp_path / "coop.pem"
    key_file.write_bytes(_pem(_key()))
    await create_topics(broker.bootstrap_servers, list(topics.values()), 1)
    await produce(
        broker.bootstrap_servers,
        topics["review"],
        [
            (b"band-1", _review("band-1", "review_band", {}), []),
            (b"audit-1", _review("audit-1", "audit_sample", {"fruit": 0.2}), []),
            (b"refused", _review("refused", "review_band", {}, ("nature",)), []),
            (None, b"not a review record", [("keep", b"me")]),
        ],
    )
    async with StandIn() as coop:
        settings = _settings(broker, topics, coop.port, key_file)
        async with running(settings, key_file.read_bytes(), asyncio.Event()) as forwarding:
            await _until(lambda: len(coop.requests) == 4 or forwarding.done())
            dead = await read_topic(broker.bootstrap_servers, topics["dead_letter"], at_least=2)
            assert not forwarding.done()  # a refused report is dead-lettered, not fatal

    sent = [body for _, body in coop.requests]
    assert all(headers["X-API-KEY"] == API_KEY for headers, _ in coop.requests)
    assert all(h["Content-Type"] == "application/json" for h, _ in coop.requests)
    reporter = {"kind": "user", "typeId": "service-user", "id": "mw"}
    assert sent[0] == {
        "reporter": reporter,
        "reportedAt": "2026-11-23T10:00:00Z",
        "reportedForReason": {
            "policyId": "coop-fruit",
            "reason": "moderation-worker uncertain score: policy fruit, model label 1, score 0.750",
        },
        "reportedItem": {"id": "band-1", "typeId": "post", "data": {"text": "content of band-1"}},
    }
    assert sent[1]["reportedForReason"]["policyId"] == "nature"  # unmapped: the same id
    # The audit copy sampled fruit only: one report, saying so.
    assert sent[2]["reportedItem"]["id"] == "audit-1"
    assert sent[2]["reportedForReason"]["reason"].startswith(
        "moderation-worker audit sample (rate 0.2)"
    )
    assert [b["reportedItem"]["id"] for b in sent] == ["band-1", "band-1", "audit-1", "refused"]

    reasons = {dict(r.headers)["x-dead-letter-error-type"]: r for r in dead}
    assert set(reasons) == {b"coop_refused", b"invalid_review_record"}
    assert b"400" in dict(reasons[b"coop_refused"].headers)["x-dead-letter-reason"]
    assert reasons[b"invalid_review_record"].value == b"not a review record"
    assert dict(reasons[b"invalid_review_record"].headers)["keep"] == b"me"


async def test_signed_callbacks_become_decisions_and_unsigned_ones_are_refused(broker, tmp_path):
    topics = _topics("coop-hook")
    key, other = _key(), _key()
    key_file = tmp_path / "coop.pem"
    key_file.write_bytes(_pem(key))
    await create_topics(broker.bootstrap_servers, list(topics.values()), 1)
    await produce(
        broker.bootstrap_servers,
        topics["review"],
        [(b"a1", _review("a1", "audit_sample", {"fruit": 0.2}), [])],
    )
    callback = {
        "item": {"id": "a1", "typeId": "post"},
        "action": {"id": "act-remove"},
        "policies": [{"id": "coop-fruit", "name": "Fruit", "penalty": "LOW"}],
        "rules": [],
        "actorEmail": "mod@example.org",
    }
    body = orjson.dumps(callback)
    async with StandIn() as coop:
        settings = _settings(broker, topics, coop.port, key_file)
        url = f"http://127.0.0.1:{settings.coop.port}/coop/actions"
        async with running(settings, key_file.read_bytes(), asyncio.Event()):
            await _until(lambda: len(coop.requests) == 1)  # reported: the adapter knows a1
            async with aiohttp.ClientSession() as http:

                async def post(data: bytes, headers: dict) -> tuple[int, dict]:
                    async with http.post(url, data=data, headers=headers) as response:
                        return response.status, await response.json()

                refused = [
                    await post(body, {}),
                    await post(body, {"coop-signature": _sign(other, body)}),
                    await post(body + b" ", {"coop-signature": _sign(key, body)}),
                    await post(body, {"coop-signature": "not base64 !!"}),
                ]
                accepted = await post(body, {"Coop-Signature": _sign(key, body)})
                keep = orjson.dumps({**callback, "action": {"id": "act-keep"}, "actorEmail": "m2"})
                kept = await post(keep, {"coop-signature": _sign(key, keep)})
                unknown = orjson.dumps({**callback, "action": {"id": "act-ban"}})
                unmapped = await post(unknown, {"coop-signature": _sign(key, unknown)})
                broken = b'{"item": 1}'
                bad_body = await post(broken, {"coop-signature": _sign(key, broken)})

    assert [status for status, _ in refused] == [401, 401, 401, 401]
    assert accepted == (200, {"published": 1}) and kept == (200, {"published": 1})
    assert unmapped[0] == 422 and "act-ban" in unmapped[1]["error"]
    assert bad_body[0] == 400
    records = await read_topic(broker.bootstrap_servers, topics["decisions"], at_least=2)
    decisions = [decode_decision(r.value) for r in records]
    assert len(decisions) == 2  # nothing from the refused ones
    first, second = decisions
    assert (first.id, first.policy, first.decision, first.reviewer) == (
        "a1",
        "fruit",
        1,
        "mod@example.org",
    )
    assert (first.policy_version, first.origin) == ("fruit-v1", "audit_sample")
    assert (second.decision, second.reviewer) == (0, "m2")
    assert records[0].key == b"a1"
