"""The supervisor: the first failing task is named, the others are cancelled, and
``finish()`` is a clean end."""

from __future__ import annotations

import asyncio

import pytest

from worker.errors import FatalError
from worker.supervise import LoopFailed, Supervisor


async def _forever(cancelled: list[str], name: str) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append(name)
        raise


async def test_the_first_failure_is_named_and_the_others_are_cancelled() -> None:
    cancelled: list[str] = []

    async def breaks() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("broken")

    with pytest.raises(LoopFailed) as caught:
        async with Supervisor() as tasks:
            tasks.loop("a loop", _forever(cancelled, "a loop"))
            tasks.spawn("a task", _forever(cancelled, "a task"))
            tasks.loop("the bad loop", breaks())
    assert caught.value.loop == "the bad loop"
    assert str(caught.value) == "the bad loop failed: ValueError: broken"
    assert isinstance(caught.value, FatalError) and isinstance(caught.value.cause, ValueError)
    assert caught.value.where.endswith("test_supervise.py:" + caught.value.where.split(":")[-1])
    assert sorted(cancelled) == ["a loop", "a task"]


async def test_our_own_errors_keep_their_line() -> None:
    async def refuses() -> None:
        raise FatalError("engine died: out of memory")

    with pytest.raises(LoopFailed) as caught:
        async with Supervisor() as tasks:
            tasks.spawn("classify task", refuses())
    assert str(caught.value) == "classify task failed: engine died: out of memory"


async def test_a_loop_that_returns_fails_but_a_task_may() -> None:
    cancelled: list[str] = []

    async def returns() -> None:
        await asyncio.sleep(0.01)

    async with Supervisor() as tasks:  # a finished task is fine ...
        tasks.spawn("a task", returns())
    with pytest.raises(LoopFailed) as caught:  # ... a finished loop is not
        async with Supervisor() as tasks:
            tasks.loop("other loop", _forever(cancelled, "other loop"))
            tasks.loop("short loop", returns())
    assert str(caught.value) == "short loop failed: it ended on its own"
    assert caught.value.where is None and cancelled == ["other loop"]


async def test_finish_cancels_what_is_left_and_ends_cleanly() -> None:
    cancelled: list[str] = []

    async def ends_it(tasks: Supervisor) -> None:
        await asyncio.sleep(0.01)
        tasks.finish()

    async with Supervisor() as tasks:
        tasks.loop("a loop", _forever(cancelled, "a loop"))
        tasks.spawn("a task", _forever(cancelled, "a task"))
        tasks.spawn("the end", ends_it(tasks))
    assert sorted(cancelled) == ["a loop", "a task"]
