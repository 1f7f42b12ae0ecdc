"""The serving pipeline, in data-flow order: intake, batching, scoring (``worker.scoring``,
the floor below), outcomes, publish, commits (with offsets and progress), and the Worker
that wires them. Each part imports only the parts before it."""

from .worker import Rebalance, Worker

__all__ = ["Rebalance", "Worker"]
