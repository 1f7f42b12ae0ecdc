"""The serving pipeline, in data-flow order: intake, batching, classify, outcomes, publish,
commits (with offsets and progress), and the Worker that wires them."""

from typing import Any

__all__ = ["Rebalance", "Worker"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, not at import: the parts import one another and the shared
    # modules, and a package that imported its Worker eagerly would close import cycles.
    if name in __all__:
        from . import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
