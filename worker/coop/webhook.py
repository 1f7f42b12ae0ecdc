"""The Coop adapter's inbound edge: Coop's signed callbacks -> records on the decisions topic.

Two routes, ``coop.path`` for action callbacks and ``coop.ignore_path`` for Ignore callbacks,
handled alike: a body whose ``coop-signature`` does not verify is refused with 401 and
published nowhere; a verified one becomes decisions (actions.py), acknowledged by the broker
before Coop gets its 200. An automated action is acknowledged with 200 and published
nowhere: it is not a person's decision. A publish failure answers 503 (Coop retries action
callbacks, not Ignore ones) and logs the decisions it could not publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric import rsa

from ..config import Settings
from ..decisions import Decision
from .actions import BadCallback, Outcome, decisions_from_action, decisions_from_ignore
from .reports import ReportedIndex
from .signature import signature_ok

log = structlog.get_logger("worker.coop")


def webhook_app(
    settings: Settings,
    public_key: rsa.RSAPublicKey,
    producer: AIOKafkaProducer,
    index: ReportedIndex,
) -> web.Application:
    """Coop's action callbacks at ``coop.path``, its Ignore callbacks at ``coop.ignore_path``."""
    callbacks = _Callbacks(settings, public_key, producer, index)
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(settings.coop.path, callbacks.action)
    app.router.add_post(settings.coop.ignore_path, callbacks.ignore)
    return app


class _Callbacks:
    def __init__(
        self,
        settings: Settings,
        public_key: rsa.RSAPublicKey,
        producer: AIOKafkaProducer,
        index: ReportedIndex,
    ) -> None:
        self.settings, self.key, self.producer, self.index = settings, public_key, producer, index

    async def action(self, request: web.Request) -> web.Response:
        coop, index = self.settings.coop, self.index
        return await self._handle(request, lambda p, t: decisions_from_action(p, coop, index, t))

    async def ignore(self, request: web.Request) -> web.Response:
        return await self._handle(request, lambda p, t: decisions_from_ignore(p, self.index, t))

    async def _handle(
        self, request: web.Request, interpret: Callable[[Any, datetime], Outcome]
    ) -> web.Response:
        body = await request.read()
        if not signature_ok(self.key, body, request.headers.get("coop-signature")):
            log.warning("callback refused: missing or bad coop-signature", path=request.path)
            return _json(401, {"error": "missing or invalid coop-signature"})
        try:
            outcome = interpret(orjson.loads(body), datetime.now(UTC))
        except (orjson.JSONDecodeError, BadCallback) as exc:
            log.warning("callback refused: not a Coop callback", path=request.path, error=str(exc))
            return _json(400, {"error": str(exc)})
        if outcome.automated is not None:  # acknowledged, so that Coop does not retry it
            log.info("automated action: not a decision", detail=outcome.automated)
            return _json(200, {"published": 0, "automated": outcome.automated})
        if outcome.refused is not None:
            log.warning("callback carries no decision", path=request.path, reason=outcome.refused)
            return _json(422, {"error": outcome.refused})
        try:
            await self._publish(outcome.decisions)
        except Exception as exc:  # Coop retries a failed action callback: tell it to
            decided = [(d.id, d.policy, d.decision) for d in outcome.decisions]
            log.error("decisions not published", error=str(exc), decisions=decided)
            return _json(503, {"error": f"decisions not published: {type(exc).__name__}"})
        return _json(200, {"published": len(outcome.decisions)})

    async def _publish(self, decisions: list[Decision]) -> None:
        """Send every decision and wait for the broker's acknowledgements."""
        topic = self.settings.topics.decisions
        futures = [
            await self.producer.send(topic, value=d.to_json(), key=d.id.encode()) for d in decisions
        ]
        await asyncio.gather(*futures)
        for d in decisions:
            self.index.decided(d.id, d.policy)


def _json(status: int, data: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")
