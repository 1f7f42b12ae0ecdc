"""The Coop adapter's two edges: review records -> Coop reports, Coop callbacks -> decisions.

``forward`` consumes the review topic in its own consumer group and posts a report per
(item, policy); offsets are committed once every report of a fetched batch is accepted,
refused for good (then the record is dead-lettered with Coop's answer) or abandoned at stop.
``webhook_app`` serves Coop's action and Ignore callbacks: a body whose ``coop-signature``
does not verify is refused with 401 and published nowhere; a verified one becomes decisions
on the decisions topic, acknowledged by the broker before Coop gets its 200, unless it is an
automated action (acknowledged, published nowhere: it is not a person's decision).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric import rsa

from ..config import Settings
from ..decisions import Decision
from ..errors import FatalError, WorkerError
from ..events import dead_letter_headers
from ..retry import Backoff
from .actions import BadCallback, Outcome, decisions_from_action, decisions_from_ignore
from .reports import NotAReviewRecord, Report, ReportedIndex, reports_for
from .signature import signature_ok

log = structlog.get_logger("worker.coop")

REPORT_PATH = "/api/v1/report"


class CoopRefused(WorkerError):
    """Coop will never take this report (a 4xx other than auth and rate limits)."""


class CoopFatal(FatalError):
    """Coop refuses our credentials, or stays out of reach past the retry budget."""


# ---- review records -> reports ------------------------------------------------------------


async def forward(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    session: aiohttp.ClientSession,
    index: ReportedIndex,
    stopping: asyncio.Event,
) -> None:
    """Post every review record as reports until ``stopping`` is set. Raises CoopFatal."""
    while not stopping.is_set():
        try:
            batches = await consumer.getmany(timeout_ms=500)
        except KafkaError as exc:
            log.warning("fetch failed; retrying", error=str(exc))
            await asyncio.sleep(1.0)
            continue
        for records in batches.values():
            for record in records:
                await _forward_one(settings, producer, session, index, record)
        if batches:
            try:
                await consumer.commit()
            except KafkaError as exc:  # the next commit covers these offsets too
                log.warning("commit failed; will retry with the next commit", error=str(exc))


async def _forward_one(
    settings: Settings,
    producer: AIOKafkaProducer,
    session: aiohttp.ClientSession,
    index: ReportedIndex,
    record: ConsumerRecord,
) -> None:
    try:
        reports = reports_for(orjson.loads(record.value or b"null"), settings.coop)
        for report in reports:
            await post_report(session, settings, report)
            index.add(report.item, report.policy, report.reported)
    except (orjson.JSONDecodeError, NotAReviewRecord) as exc:
        await _dead_letter(settings, producer, record, "invalid_review_record", str(exc))
    except CoopRefused as exc:
        await _dead_letter(settings, producer, record, "coop_refused", str(exc))


async def post_report(session: aiohttp.ClientSession, settings: Settings, report: Report) -> None:
    """POST one report; retry what may pass later. Raises CoopRefused or CoopFatal."""
    coop = settings.coop
    assert coop.url is not None
    url = coop.url.rstrip("/") + REPORT_PATH
    headers = {"X-API-KEY": coop.key() or "", "Content-Type": "application/json"}
    delays = Backoff(settings.kafka.connect_retry_s, settings.kafka.connect_backoff_max_s)
    timeout = aiohttp.ClientTimeout(total=coop.request_timeout_s)
    while True:
        try:
            async with session.post(
                url, data=orjson.dumps(report.body), headers=headers, timeout=timeout
            ) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, text = None, f"{type(exc).__name__}: {exc}"
        if status is not None and 200 <= status < 300:
            return
        if status in (401, 403):
            raise CoopFatal(f"Coop refused the API key ({status}): check coop.api_key")
        if status is not None and 400 <= status < 500 and status != 429:
            raise CoopRefused(f"Coop answered {status}: {text[:500]}")
        delay = delays.next()
        if delay is None:
            raise CoopFatal(f"Coop at {url} still failing after retries: {status or text}")
        log.warning("report failed; retrying", item=report.item, status=status, detail=text[:200])
        await asyncio.sleep(delay)


async def _dead_letter(
    settings: Settings, producer: AIOKafkaProducer, record: ConsumerRecord, kind: str, reason: str
) -> None:
    log.info("review record dead-lettered", reason=kind, detail=reason[:300])
    headers = dead_letter_headers(
        list(record.headers), kind, reason, record.topic, record.partition, record.offset
    )
    await (
        await producer.send(
            settings.topics.dead_letter, value=record.value, key=record.key, headers=headers
        )
    )


# ---- Coop callbacks -> decisions ----------------------------------------------------------


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
            return _json(400, {"error": str(exc)})
        if outcome.automated is not None:  # acknowledged, so that Coop does not retry it
            log.info("automated action: not a decision", detail=outcome.automated)
            return _json(200, {"published": 0, "automated": outcome.automated})
        if outcome.refused is not None:
            log.warning("callback carries no decision", reason=outcome.refused)
            return _json(422, {"error": outcome.refused})
        try:
            await self._publish(outcome.decisions)
        except Exception as exc:  # Coop retries a failed delivery: tell it to
            log.error("decisions not published", error=str(exc))
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
