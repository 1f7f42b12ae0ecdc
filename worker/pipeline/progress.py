"""Whether work moves: the drain on SIGTERM, a partition's revoke, and the stall probe.

Work moves when an offset completes (a verdict or a dead letter is out) or a commit lands.
While work waits and nothing moves for ``health.no_progress_after_s``, the worker is stuck
even if its event loop still beats, and liveness says so.
"""

from __future__ import annotations

import asyncio
import time

from .offsets import TP, OffsetTracker


class Progress:
    def __init__(self, tracker: OffsetTracker) -> None:
        self._tracker = tracker
        self._moved = asyncio.Event()  # set whenever an offset completes
        # Plain values, read by the health server's thread: when work last moved (or when
        # none was waiting), and how much waited at intake's last look.
        self.last_moved = time.monotonic()
        self.waiting = 0

    def moved(self) -> None:
        self.last_moved = time.monotonic()
        self._moved.set()

    def sample(self, in_flight: int) -> None:
        """Intake's look at the work waiting, at each fetch: none waiting, none stalled."""
        self.waiting = in_flight
        if not in_flight:
            self.last_moved = time.monotonic()

    def stalled(self, limit_s: float, now: float | None = None) -> str | None:
        """Why work is stuck (nothing moved for ``limit_s`` while some waits), else None."""
        quiet = (time.monotonic() if now is None else now) - self.last_moved
        return stall_reason(self.waiting, quiet, limit_s)

    async def wait_idle(self, tps: set[TP] | None, timeout_s: float) -> int:
        """Wait until nothing is in flight for ``tps`` (all when None); return what is left."""
        deadline = time.monotonic() + timeout_s
        while left := self._tracker.in_flight(tps):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return left
            self._moved.clear()
            try:
                await asyncio.wait_for(self._moved.wait(), remaining)
            except TimeoutError:
                pass
        return 0


def stall_reason(waiting: int, quiet_s: float, limit_s: float) -> str | None:
    if waiting and quiet_s > limit_s:
        return (
            f"no verdict, dead letter or commit for {quiet_s:.1f}s while {waiting} items "
            f"wait (limit {limit_s}s, health.no_progress_after_s)"
        )
    return None
