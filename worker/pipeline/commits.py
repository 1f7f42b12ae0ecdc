"""Offsets out: commit each partition's contiguous prefix of finished work.

Commits are asked for whenever an offset completes and made at most five times a second;
a failed commit, whatever its cause, is only logged, as the next one carries the same
positions or later ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer

from ..errors import WorkerError
from ..kafka import translated
from .offsets import TP, OffsetTracker

log = structlog.get_logger("worker.pipeline")

COMMIT_INTERVAL_S = 0.2


class Committer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        tracker: OffsetTracker,
        landed: Callable[[], None] = lambda: None,
    ) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._landed = landed  # told of each commit the broker took (work moved)
        self._wanted = asyncio.Event()

    def want(self) -> None:
        """An offset completed: commit soon."""
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.commit()
            await asyncio.sleep(COMMIT_INTERVAL_S)

    async def commit(self, only: set[TP] | None = None) -> None:
        positions = self._tracker.to_commit(only)
        if not positions:
            return
        try:
            with translated("commit"):
                await self._consumer.commit(positions)
        except WorkerError as exc:  # retriable or not: the next commit supersedes this one
            log.warning("commit failed; will retry with the next commit", error=str(exc))
            return
        self._tracker.mark_committed(positions)
        self._landed()
