"""Which server of ``engine.url`` a request goes to, and when a server out of reach is asked
again. Pure bookkeeping (the clock is a parameter), so every rule is unit-tested.

Requests take the servers that answer in turn. A server that stops answering is marked down
and skipped while any other answers; it is then probed on a backoff schedule (the project's
``Backoff``, doubling up to ``engine.backoff_max_s``), and the first probe it answers puts it
back in turn. Without probes a server that came back would never get traffic again while
another stayed up, and after a rolling restart every worker would end on one server.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from ..retry import Backoff


@dataclass(eq=False)
class Endpoint:
    url: str
    down: str | None = None  # why it is out of reach, until it answers again
    probe_at: float = 0.0  # when a server marked down is next asked (time.monotonic)
    _delays: Backoff | None = field(default=None, repr=False)


class Endpoints:
    """The servers in turn, skipping those marked down while any is up."""

    def __init__(self, urls: list[str], backoff_max_s: float = 10.0) -> None:
        self.all = [Endpoint(url) for url in urls]
        self._turn = itertools.cycle(range(len(self.all)))
        self._backoff_max_s = backoff_max_s

    def pick(self) -> Endpoint:
        for _ in self.all:
            endpoint = self.all[next(self._turn)]
            if endpoint.down is None:
                return endpoint
        # Every server is out of reach: each is tried again in turn.
        return self.all[next(self._turn)]

    def mark_down(self, endpoint: Endpoint, reason: str, now: float | None = None) -> bool:
        """Record why ``endpoint`` is out of reach; True when it was up until now (so the
        caller starts probing it). Its first probe is due after the schedule's first delay."""
        newly = endpoint.down is None
        endpoint.down = reason
        if newly:
            endpoint._delays = Backoff(float("inf"), self._backoff_max_s)
            now = _now(now)
            endpoint.probe_at = now + self._next_delay(endpoint, now)
        return newly

    def mark_up(self, endpoint: Endpoint) -> bool:
        """``endpoint`` answered: back in turn. True when it was marked down."""
        was_down = endpoint.down is not None
        endpoint.down = None
        endpoint._delays = None
        return was_down

    def probe_due(self, endpoint: Endpoint, now: float | None = None) -> float | None:
        """Seconds until ``endpoint``'s next probe (0 when due now); None when it is up.

        A due probe that is taken reschedules the next one, further away each time."""
        if endpoint.down is None:
            return None
        now = _now(now)
        wait = endpoint.probe_at - now
        if wait > 0:
            return wait
        endpoint.probe_at = now + self._next_delay(endpoint, now)
        return 0.0

    def _next_delay(self, endpoint: Endpoint, now: float) -> float:
        # An unlimited budget: the schedule never runs out, it only reaches its cap.
        delay = endpoint._delays.next(now) if endpoint._delays else None
        return self._backoff_max_s if delay is None else delay

    @property
    def unready(self) -> str | None:
        """Why nothing can be classified now: every server is out of reach."""
        if all(endpoint.down for endpoint in self.all):
            return "; ".join(str(endpoint.down) for endpoint in self.all)
        return None


def _now(now: float | None) -> float:
    return time.monotonic() if now is None else now
