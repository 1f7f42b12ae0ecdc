"""The evaluation's one error: it cannot run, and the message says why (exit code 2)."""

from __future__ import annotations

from ...errors import FatalError


class EvalError(FatalError):
    """The evaluation cannot run; the message says why."""
