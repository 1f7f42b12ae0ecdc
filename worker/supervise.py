"""Structured concurrency for a process's background work: nothing runs unwatched.

A ``Supervisor`` runs named tasks in one ``asyncio.TaskGroup``: long-lived loops (which
must run until cancelled) and short tasks (a batch, a dead letter). The first to raise, or
a loop that returns on its own, cancels all the others, and leaving the ``async with``
raises ``LoopFailed`` naming that task and its cause. A part that dies therefore ends the
process instead of leaving the rest waiting on it behind green probes. ``finish()`` is the
clean end: it cancels what is left, and the group exits without an error.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

from .errors import FatalError


class LoopFailed(FatalError):
    """A supervised task raised, or a loop ended on its own; ``loop`` names it."""

    def __init__(self, loop: str, cause: BaseException | None) -> None:
        self.loop = loop
        self.cause = cause
        why = describe(cause) if cause is not None else "it ended on its own"
        super().__init__(f"{loop} failed: {why}")

    @property
    def where(self) -> str | None:
        """file:line where the cause was raised (the one line must still lead to the bug)."""
        if self.cause is None or self.cause.__traceback__ is None:
            return None
        frame = traceback.extract_tb(self.cause.__traceback__)[-1]
        return f"{frame.filename}:{frame.lineno}"


class _Ended(Exception):
    """A loop returned while it should have run until cancelled."""


class Supervisor:
    """Named tasks under one TaskGroup; use as ``async with Supervisor() as tasks``."""

    def __init__(self) -> None:
        self._group = asyncio.TaskGroup()
        self._names: dict[asyncio.Task[Any], str] = {}
        self._first: LoopFailed | None = None
        self._finishing = False

    async def __aenter__(self) -> Supervisor:
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._group.__aexit__(kind, exc, tb)
        except BaseExceptionGroup as group:
            failure = self._first or LoopFailed("the supervisor", group.exceptions[0])
            raise failure from failure.cause

    def loop(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        """A loop that runs until cancelled: its end, like its failure, fails the group."""
        self._start(name, self._forever(name, coro))

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        """A task that finishes; its failure fails the group."""
        self._start(name, coro)

    def finish(self) -> None:
        """The clean end: cancel every task still running; the group exits without error."""
        self._finishing = True
        for task in list(self._names):
            task.cancel()

    def _start(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        task = self._group.create_task(coro, name=name)
        self._names[task] = name
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        name = self._names.pop(task)
        if task.cancelled() or self._first is not None:
            return
        error = task.exception()
        if error is not None:  # the TaskGroup cancels the others; this names the first
            self._first = LoopFailed(name, None if isinstance(error, _Ended) else error)

    async def _forever(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        await coro
        if not self._finishing:
            raise _Ended(name)


def describe(exc: BaseException) -> str:
    """``Type: message`` for a foreign error; our own errors' message is the line to show."""
    text = str(exc)
    if isinstance(exc, FatalError) and text:
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
