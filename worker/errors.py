"""One vocabulary for what went wrong, and so what the worker does about it.

Every error the worker raises on purpose is a ``WorkerError``; its message is one line a
user can act on. Three kinds decide what happens next:

- ``FatalError``: the worker cannot go on safely. At start-up the command prints the line
  and exits non-zero; while serving, the worker stops without committing unfinished work.
- ``Rejected``: this one input (an event, an output record) can never be handled. It ends
  as a dead letter with ``kind`` as its error type and ``reason`` as its reason.
- ``TransientError``: the same call may succeed later (brokers out of reach, one engine
  request failing); retried within a budget, then treated as fatal or rejected by the caller.

Errors of aiokafka and vLLM are translated into these where they come in (kafka.py,
engine/), so nothing past those modules looks at a foreign exception type.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of the worker's own errors; ``str()`` is the one line to show."""


class FatalError(WorkerError):
    """The worker cannot go on safely (engine gone, broker refusing our output, bad setup)."""


class TransientError(WorkerError):
    """A call that may succeed if tried again later."""


class Rejected(WorkerError):
    """One input that can never be handled. ``kind`` becomes the dead letter's error type."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
