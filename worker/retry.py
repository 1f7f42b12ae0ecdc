"""Waiting between attempts: one backoff schedule and one retry loop for every caller.

Every delay is jittered: pods that lost the same broker or engine server at the same moment
must not come back to it in lockstep. Whether a failure is worth another attempt is the
error type's ``retriable`` (errors.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import WorkerError

T = TypeVar("T")
_RANDOM = random.Random()  # spreads retries out; it guards nothing


def retriable(exc: BaseException) -> bool:
    """One of our errors whose type says that trying again may help."""
    return isinstance(exc, WorkerError) and exc.retriable


class Backoff:
    """Delays between attempts: doubling up to a cap, within a time budget and a try count.

    The budget starts at the first failure; ``next()`` is None once it or the tries are spent.
    Each delay is drawn between half and all of the schedule's step ("equal jitter"), so
    waits stay near the schedule and never shrink to nothing.
    """

    def __init__(
        self,
        budget_s: float,
        cap_s: float,
        first_s: float = 0.5,
        tries: int | None = None,
        rng: random.Random = _RANDOM,
    ) -> None:
        self._rng = rng
        self._budget_s = budget_s
        self._cap_s = cap_s
        self._delay = min(first_s, cap_s)
        self._tries = tries
        self._deadline: float | None = None
        self.waited = 0

    def next(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        if self._deadline is None:
            self._deadline = now + self._budget_s
        left = self._deadline - now
        if left <= 0 or (self._tries is not None and self.waited >= self._tries):
            return None
        step = self._delay
        self._delay = min(self._delay * 2, self._cap_s)
        self.waited += 1
        return min(self._rng.uniform(step / 2, step), left)


async def retry(
    step: Callable[[], Awaitable[T]],
    schedule: Callable[[], Backoff],
    retriable: Callable[[Exception], bool] = retriable,
    on_retry: Callable[[Exception, float], None] = lambda exc, delay: None,
) -> T:
    """Run ``step`` until it succeeds, sleeping by ``schedule`` after each retriable failure.

    The schedule is made at the first failure (most calls never need one). A failure that is
    not retriable, or one after the schedule is spent, is raised as it is.
    """
    delays: Backoff | None = None
    while True:
        try:
            return await step()
        except Exception as exc:
            if not retriable(exc):
                raise
            delays = delays or schedule()
            delay = delays.next()
            if delay is None:
                raise
            on_retry(exc, delay)
            await asyncio.sleep(delay)
