"""One event's media made ready to classify: fetched or read inline, decoded, bounded.

``MediaStep.prepare`` runs beside the pipeline, never in its way: fetches share a bounded
number of slots, decoding runs on a small thread pool, and a text-only event never waits
for it. The hash banks' signals of each item (its PDQ hash, its digests) are computed in the
same pool right after decoding, for the signal types the banks hold, so matching it later is
lookups only. Transient fetch failures are retried with the shared retry helper and then end as
``media_unavailable``; everything else refused ends as ``media_rejected`` naming the rule.
The bytes held by items between fetch and verdict are counted (``held``) so that intake
can pause when they pass ``media.max_in_flight_bytes``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from opentelemetry.context import Context

from ..config import MediaSettings
from ..errors import DeadLetterKind, Rejected
from ..hashbanks.signals import MediaSignals, SignalError, media_signals
from ..retry import Backoff, retry
from . import observe
from .decode import Decoded, decode, fit_frames
from .fetch import Resolver, Transport, download, system_resolver
from .refs import (
    FetchedMedia,
    MediaKind,
    MediaRef,
    MediaRejected,
    MediaUnavailable,
    inline_bytes,
)

log = structlog.get_logger("worker.media")


class MediaStep:
    def __init__(
        self,
        settings: MediaSettings,
        resolver: Resolver = system_resolver,
        transport: Transport | None = None,
        wanted: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        """``wanted``: the signal types the hash banks hold now (none: nothing is hashed)."""
        self.settings = settings
        self._wanted = wanted
        self._resolver = resolver
        self._transport = transport
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="media-decode")
        self.held = 0  # bytes of media items fetched and not yet released

    async def prepare(
        self, refs: list[MediaRef], parent: Context | None = None
    ) -> list[FetchedMedia]:
        """Every item of one event, in order; Rejected (media_rejected/_unavailable) if any fails.

        The caller releases ``sum(len(m.data))`` with ``release`` once the event is done.
        """
        if len(refs) > self.settings.max_items:
            raise _rejected(
                "too_many_items",
                f"{len(refs)} items, over media.max_items ({self.settings.max_items})",
            )
        items = await asyncio.gather(
            *(self._one(ref, n, parent) for n, ref in enumerate(refs)), return_exceptions=True
        )
        size = sum(len(i.data) for i in items if isinstance(i, FetchedMedia))
        for item in items:
            if isinstance(item, BaseException):
                raise item
        if size > self.settings.max_event_bytes:
            raise _rejected(
                "too_large", f"{size} media bytes on one event, over media.max_event_bytes"
            )
        self.held += size
        return list(items)  # type: ignore[arg-type]

    def release(self, media: list[FetchedMedia]) -> None:
        self.held -= sum(len(m.data) for m in media)

    async def _one(self, ref: MediaRef, index: int, parent: Context | None) -> FetchedMedia:
        where = ref.where(index)
        started = time.monotonic()
        source = "url" if ref.url is not None else "inline"
        with observe.span(parent, ref.type, where) as span:
            try:
                data, mime = await self._bytes(ref)
                decoded, signals = await asyncio.get_running_loop().run_in_executor(
                    self._pool, _decode_and_hash, ref.type, data, self.settings, self._wanted()
                )
            except MediaRejected as exc:
                observe.record_failure("media_rejected", exc.rule)
                observe.record_item(ref.type, source, "rejected", time.monotonic() - started, 0)
                span.set_attribute("moderation.media.error", str(exc))
                raise MediaRejected(exc.rule, f"{where}: {exc.detail}") from None
            except MediaUnavailable as exc:
                observe.record_failure("media_unavailable", exc.cause)
                observe.record_item(ref.type, source, "unavailable", time.monotonic() - started, 0)
                span.set_attribute("moderation.media.error", str(exc))
                raise Rejected(DeadLetterKind.MEDIA_UNAVAILABLE, f"{where}: {exc}") from None
            observe.record_item(ref.type, source, "ok", time.monotonic() - started, len(data))
            span.set_attribute("moderation.media.bytes", len(data))
        return FetchedMedia(
            kind=ref.type,
            where=where,
            data=data,
            sha256=FetchedMedia.digest(data),
            mime=mime,
            frames=decoded.frames,
            width=decoded.width,
            height=decoded.height,
            duration_s=decoded.duration_s,
            signals=signals,
        )

    async def _bytes(self, ref: MediaRef) -> tuple[bytes, str | None]:
        if ref.data is not None:
            return inline_bytes(ref, self.settings.max_bytes), ref.mime
        url = ref.url
        assert url is not None

        async def attempt() -> Any:
            async with self._slots:
                return await download(
                    url, self.settings, self.settings.max_bytes, self._resolver, self._transport
                )

        def on_retry(exc: Exception, delay: float) -> None:
            log.warning("media fetch failed; retrying", url=url, retry_in_s=delay, error=str(exc))

        got = await retry(
            attempt,
            lambda: Backoff(
                self.settings.fetch_timeout_s, 2.0, first_s=0.2, tries=self.settings.fetch_retries
            ),
            lambda exc: isinstance(exc, MediaUnavailable),
            on_retry,
        )
        return got.data, ref.mime or got.mime

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _decode_and_hash(
    kind: MediaKind, data: bytes, settings: MediaSettings, wanted: Collection[str]
) -> tuple[Decoded, MediaSignals | None]:
    """Decode, compute the signals the banks want from the full-size frames as stored, then
    fit the frames to ``media.max_side``; in the pool, off the event loop."""
    decoded = decode(kind, data, settings)
    signals = None
    if wanted:
        try:
            signals = media_signals(kind, data, decoded.as_stored, wanted)
        except SignalError as exc:  # decoded above, so not expected: matched by nothing then
            log.warning("media item not hashed", error=str(exc))
    return fit_frames(decoded, settings.max_side), signals


def _rejected(rule: str, reason: str) -> MediaRejected:
    observe.record_failure("media_rejected", rule)
    return MediaRejected(rule, reason)
