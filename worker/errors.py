"""One vocabulary for what went wrong, and so what the worker does about it.

Every error the worker raises on purpose is a ``WorkerError``; its message is one line a
user can act on. Whether waiting and trying again may help is a property of the type, the
class attribute ``retriable`` (as aiokafka's ``KafkaError.retriable``), never a flag set
on one instance. Three kinds decide what happens next:

- ``FatalError``: the worker cannot go on safely. At start-up the command prints the line
  and exits non-zero; while serving, the worker stops without committing unfinished work.
- ``Rejected``: this one input (an event, an output record) can never be handled. It ends
  as a dead letter with ``kind`` (a ``DeadLetterKind``) as its error type.
- ``TransientError``: the same call may succeed later (brokers out of reach, one engine
  request failing); retried within a budget, then treated as fatal or rejected by the caller.

A subclass may say otherwise: brokers out of reach at start-up are a ``FatalError`` once
the budget is spent, yet ``retriable`` until then.

Foreign errors are translated where each library is called, once per library: aiokafka in
kafka.py (and undecodable.py for the records it cannot decode), vLLM and the engine servers'
HTTP in engine/, the Coop API's HTTP in coop/, tokenizers in preflight.py. Nothing past
those modules looks at a foreign exception type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import StrEnum
from typing import ClassVar


class DeadLetterKind(StrEnum):
    """The dead letters' error types (header ``x-dead-letter-error-type``), as documented."""

    # The worker's, for content events and its own outputs.
    EMPTY_VALUE = "empty_value"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_EVENT = "invalid_event"
    UNKNOWN_POLICY = "unknown_policy"
    CONTENT_TOO_LONG = "content_too_long"
    ENGINE_ERROR = "engine_error"
    PUBLISH_FAILED = "publish_failed"
    UNDECODABLE_RECORD = "undecodable_record"
    UNDECODABLE_BATCH = "undecodable_batch"
    # Media on events: refused for good (the reason names the rule), or not to be had now.
    MEDIA_REJECTED = "media_rejected"
    MEDIA_UNAVAILABLE = "media_unavailable"
    # eval decisions, for reviewers' decision records.
    INVALID_DECISION = "invalid_decision"
    # The Coop adapter's, for review records.
    INVALID_REVIEW_RECORD = "invalid_review_record"
    COOP_REFUSED = "coop_refused"


class WorkerError(Exception):
    """Base of the worker's own errors; ``str()`` is the one line to show."""

    retriable: ClassVar[bool] = False  # whether the same call may succeed if tried again
    exit_code: ClassVar[int] = 1  # what a command exits with when this error ends it


class FatalError(WorkerError):
    """The worker cannot go on safely (engine gone, broker refusing our output, bad setup)."""


class UsageError(FatalError):
    """A name or value given on the command line that cannot be used (a policy id that is
    not loaded, say): found before anything slow starts, and exits 2 like a bad option."""

    exit_code = 2


class TransientError(WorkerError):
    """A call that may succeed if tried again later."""

    retriable = True


class Rejected(WorkerError):
    """One input that can never be handled. ``kind`` becomes the dead letter's error type."""

    def __init__(self, kind: DeadLetterKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def nearest(word: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """' (did you mean X?)' for the known word closest to a misspelt one, else ''."""
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=cutoff)
    return f" (did you mean {match[0]!r}?)" if match else ""
