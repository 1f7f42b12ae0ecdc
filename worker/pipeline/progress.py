"""Waiting for in-flight work to finish: the drain on SIGTERM, and a partition's revoke."""

from __future__ import annotations

import asyncio
import time

from .offsets import TP, OffsetTracker


class Progress:
    def __init__(self, tracker: OffsetTracker) -> None:
        self._tracker = tracker
        self._moved = asyncio.Event()  # set whenever an offset completes
        self.halted = False  # a fatal error: what is in flight will not finish

    def moved(self) -> None:
        self._moved.set()

    def halt(self) -> None:
        self.halted = True
        self._moved.set()

    async def wait_idle(self, tps: set[TP] | None, timeout_s: float) -> int:
        """Wait until nothing is in flight for ``tps`` (all when None); return what is left."""
        deadline = time.monotonic() + timeout_s
        while (left := self._tracker.in_flight(tps)) and not self.halted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return left
            self._moved.clear()
            try:
                await asyncio.wait_for(self._moved.wait(), remaining)
            except TimeoutError:
                pass
        return self._tracker.in_flight(tps)
