"""The Coop adapter's outbound edge: review records -> Coop reports (webhook.py: callbacks in).

``forward`` consumes the review topic in its own consumer group and posts a report per
(item, policy); offsets are committed once every report of a fetched batch is accepted,
refused for good (then the record is dead-lettered with Coop's answer) or abandoned at stop.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from ..config import Settings
from ..errors import DeadLetterKind, FatalError, TransientError, WorkerError
from ..events import dead_letter_headers
from ..kafka import translated
from ..retry import Backoff, retry
from .reports import NotAReviewRecord, Report, ReportedIndex, reports_for

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
    failing: Backoff | None = None  # while fetches fail: how long to wait before the next
    while not stopping.is_set():
        try:
            with translated("fetching review records"):
                batches = await consumer.getmany(timeout_ms=500)
        except WorkerError as exc:
            if not exc.retriable:
                raise
            failing = failing or Backoff(float("inf"), settings.kafka.connect_backoff_max_s)
            delay = failing.next() or settings.kafka.connect_backoff_max_s
            log.warning("fetch failed; retrying", error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            continue
        failing = None
        for records in batches.values():
            for record in records:
                await _forward_one(settings, producer, session, index, record)
        if batches:
            try:
                with translated("commit"):
                    await consumer.commit()
            except WorkerError as exc:  # the next commit covers these offsets too
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
        await _dead_letter(
            settings, producer, record, DeadLetterKind.INVALID_REVIEW_RECORD, str(exc)
        )
    except CoopRefused as exc:
        await _dead_letter(settings, producer, record, DeadLetterKind.COOP_REFUSED, str(exc))


async def post_report(session: aiohttp.ClientSession, settings: Settings, report: Report) -> None:
    """POST one report; retry what may pass later. Raises CoopRefused or CoopFatal."""
    coop = settings.coop
    assert coop.url is not None
    url = coop.url.rstrip("/") + REPORT_PATH
    headers = {"X-API-KEY": coop.key() or "", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=coop.request_timeout_s)

    async def attempt() -> None:
        try:
            async with session.post(
                url, data=orjson.dumps(report.body), headers=headers, timeout=timeout
            ) as response:
                _check_answer(response.status, await response.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _CoopBusy(f"{type(exc).__name__}: {exc}") from None

    def on_retry(exc: Exception, delay: float) -> None:
        log.warning("report failed; retrying", item=report.item, detail=str(exc)[:200])

    kafka = settings.kafka
    try:
        await retry(
            attempt,
            lambda: Backoff(kafka.connect_retry_s, kafka.connect_backoff_max_s),
            lambda exc: isinstance(exc, _CoopBusy),
            on_retry,
        )
    except _CoopBusy as exc:
        raise CoopFatal(f"Coop at {url} still failing after retries: {exc}") from None


class _CoopBusy(TransientError):
    """Coop out of reach, or answering 5xx or 429: worth another try."""


def _check_answer(status: int, text: str) -> None:
    """Returns for a 2xx; otherwise raises what the answer means for this report."""
    if 200 <= status < 300:
        return
    if status in (401, 403):
        raise CoopFatal(f"Coop refused the API key ({status}): check coop.api_key")
    if 400 <= status < 500 and status != 429:
        raise CoopRefused(f"Coop answered {status}: {text[:500]}")
    raise _CoopBusy(f"Coop answered {status}: {text[:200]}")


async def _dead_letter(
    settings: Settings,
    producer: AIOKafkaProducer,
    record: ConsumerRecord,
    kind: DeadLetterKind,
    reason: str,
) -> None:
    log.info("review record dead-lettered", reason=kind, detail=reason[:300])
    headers = dead_letter_headers(
        list(record.headers), kind, reason, record.topic, record.partition, record.offset
    )
    with translated("dead-lettering a review record"):
        await (
            await producer.send(
                settings.topics.dead_letter, value=record.value, key=record.key, headers=headers
            )
        )
