"""Helper processes (the embedded broker, benchmark phases) that never outlive their starter.

A benchmark or test run that is killed, even with SIGKILL, must not leave a broker or an
engine running behind it: on Linux each helper asks the kernel for SIGTERM when its parent
goes away.
"""

from __future__ import annotations

import shutil
import sys


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
