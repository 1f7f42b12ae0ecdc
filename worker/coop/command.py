"""``moderation-worker coop``: run the adapter until SIGTERM.

Everything the adapter needs is checked before it connects, so a missing key or URL stops
start-up with one line naming the setting.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from ..config import Settings
from ..errors import FatalError
from ..kafka import client_options, start_producer
from .adapter import CoopFatal, forward
from .refill import refill_index
from .reports import ReportedIndex
from .signature import PublicKeyError, load_public_key
from .webhook import webhook_app

log = structlog.get_logger("worker.coop")


class AdapterError(FatalError):
    """The adapter cannot start; the message names the setting to change."""


def check(settings: Settings) -> bytes:
    """The public key's PEM, after checking every required setting."""
    coop = settings.coop
    if not coop.url:
        raise AdapterError("coop.url is required (env WORKER_COOP__URL): Coop's base URL")
    if coop.api_key is None and coop.api_key_file is None:
        raise AdapterError("coop.api_key or coop.api_key_file is required (WORKER_COOP__API_KEY)")
    if coop.public_key_file is None:
        raise AdapterError(
            "coop.public_key_file is required (WORKER_COOP__PUBLIC_KEY_FILE): the webhook "
            "signature verification key from Coop's Settings -> API Keys, as PEM"
        )
    if not coop.decisions:
        raise AdapterError(
            "coop.decisions is empty (WORKER_COOP__DECISIONS): map each Coop action id to 0 or 1"
        )
    try:
        pem = coop.public_key_file.read_bytes()
        load_public_key(pem)
    except (OSError, PublicKeyError) as exc:
        raise AdapterError(f"coop.public_key_file {coop.public_key_file}: {exc}") from None
    return pem


async def run_adapter(settings: Settings) -> int:
    """Exit code 0 after SIGTERM; raises AdapterError, CoopFatal, KafkaSetupError, or the
    worker's error for a Kafka call that failed (kafka.translated), each one line."""
    pem = check(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with running(settings, pem, stopping) as forwarding:
        await forwarding
    return 0


@asynccontextmanager
async def running(
    settings: Settings, pem: bytes, stopping: asyncio.Event
) -> AsyncIterator[asyncio.Task[None]]:
    """The webhook server listening and the forwarder running; both stopped on exit."""
    index = ReportedIndex()
    producer = await start_producer(settings.kafka)
    consumer = AIOKafkaConsumer(
        settings.topics.review,
        **client_options(settings.kafka),
        group_id=settings.coop.group_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.kafka.auto_offset_reset,
    )
    runner = web.AppRunner(webhook_app(settings, load_public_key(pem), producer, index))
    try:
        indexed = await refill_index(settings, index, settings.kafka.connect_retry_s)
        log.info("report index refilled from the review topic", reports=indexed)
        await consumer.start()
        await runner.setup()
        await web.TCPSite(runner, settings.coop.host, settings.coop.port).start()
        log.info("coop adapter started", port=settings.coop.port, review=settings.topics.review)
        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(
                forward(settings, consumer, producer, session, index, stopping)
            )
            try:
                yield task
            finally:
                stopping.set()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await runner.cleanup()
        await consumer.stop()
        await producer.stop()


__all__ = ["AdapterError", "CoopFatal", "check", "run_adapter", "running"]
