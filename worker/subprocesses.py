"""Child processes (the embedded broker, benchmark phases, the engine's) that never outlive
their starter.

A worker, benchmark or test run that is killed, even with SIGKILL, must not leave a broker
or an engine running behind it, holding its memory: on Linux each child asks the kernel for
a signal when the thread that started it goes away (the parent-death signal).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def bound_to_parent(command: list[str]) -> list[str]:
    """``command``, run so that it gets SIGTERM when the process that started it dies.

    util-linux's ``setpriv`` sets the parent-death signal and then execs the command, so the
    helper keeps its own pid and its own signal handling. The kernel sends the signal when
    the *thread* that started the helper ends: start helpers from a thread that outlives them
    (the main thread, the event loop's). Where ``setpriv`` is missing (not Linux), the
    command runs as it is and the caller's own clean-up is all there is.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None:
        return command
    return [setpriv, "--pdeathsig", "TERM", "--", *command]


# Set by a process whose children are bound to it: its pid. Children started by
# ``multiprocessing``'s spawn method inherit it and bind themselves as they start.
BIND_ENV = "MODERATION_WORKER_BOUND_TO"
# SIGKILL, not SIGTERM: with the parent gone nobody can take a result, so there is nothing
# to drain, and a graceful teardown can hang; the kernel frees memory (the GPU driver too) as
# the process ends, and the parent's multiprocessing resource tracker unlinks shared memory.
_DEATH_SIGNAL = signal.SIGKILL
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class _Binding:
    """What the at-fork hooks need, set up once per process."""

    libc: ctypes.CDLL | None = None
    forking_pid = 0  # set in the parent just before each fork, read in the child


def bind_children() -> bool:
    """From now on, every Python child this process starts is killed when its starting
    thread ends, and binds its own children the same way.

    For children started by a library (vLLM starts its engine processes through
    ``multiprocessing``), where ``bound_to_parent`` cannot wrap a command. Forked children
    are bound by an at-fork hook; children of the spawn method (a fresh interpreter, which
    vLLM uses on CPUs and wherever CUDA is already initialized) bind themselves when they
    import this package, told to by ``BIND_ENV`` in their environment. Other programs run
    with ``subprocess`` are not touched: wrap those with ``bound_to_parent``. Returns False
    where the kernel has no parent-death signal.
    """
    if sys.platform != "linux":
        return False
    if _Binding.libc is None:
        _Binding.libc = ctypes.CDLL(None, use_errno=True)
        os.register_at_fork(before=_note_forking_pid, after_in_child=_bind_forked)
    os.environ[BIND_ENV] = str(os.getpid())
    return True


def bind_if_spawned_child() -> None:
    """In a child of the spawn method whose parent bound its children: bind to the parent.

    Runs when the child imports this package, which a spawned child of a worker does while
    preparing: it imports the parent's main module (the worker's CLI) before anything else.
    """
    parent = os.environ.get(BIND_ENV)
    if parent is None or "--multiprocessing-fork" not in sys.orig_argv:
        return
    _bind_to(int(parent))
    bind_children()


def _note_forking_pid() -> None:
    _Binding.forking_pid = os.getpid()


def _bind_forked() -> None:
    _bind_to(_Binding.forking_pid)
    os.environ[BIND_ENV] = str(os.getpid())


def _bind_to(parent: int) -> None:
    libc = _Binding.libc or ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, _DEATH_SIGNAL, 0, 0, 0)
    # The parent may have died before the line above: then no signal would ever come.
    if os.getppid() != parent:
        os.kill(os.getpid(), _DEATH_SIGNAL)


class StarterThread:
    """A thread that runs one start-up call and then lives until ``release()``.

    A parent-death signal fires when the *thread* that forked a child ends, not its process.
    A call run on the event loop's thread pool would tie the children to a pool thread that
    may retire while they are still wanted; this thread retires only when their owner has
    shut them down, and ending it then also ends any child that shutdown left behind.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._released = threading.Event()

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` on this thread, awaited without blocking the event loop."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def main() -> None:
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting task, which re-raises it
                _settle(loop, done, functools.partial(done.set_exception, exc))
            else:
                _settle(loop, done, functools.partial(done.set_result, result))
                # Hold no reference while waiting: the owner decides when the result is freed.
                del result
            self._released.wait()

        threading.Thread(target=main, name=self._name, daemon=True).start()
        return await done

    def release(self) -> None:
        self._released.set()


def _settle(
    loop: asyncio.AbstractEventLoop, done: asyncio.Future, settle: Callable[[], object]
) -> None:
    def guarded() -> None:
        if not done.done():  # the awaiting task may have been cancelled
            settle()

    try:
        loop.call_soon_threadsafe(guarded)
    except RuntimeError:  # the loop has closed; nobody is waiting any more
        pass
