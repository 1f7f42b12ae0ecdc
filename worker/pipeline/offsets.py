"""Per-partition contiguous-completion tracking: which offset is safe to commit.

Offsets are tracked in the order they are consumed, not assumed dense: compaction and
transaction markers leave gaps, so "contiguous" means "every tracked offset below is done".
Each assignment of a partition gets a fresh ``PartitionOffsets``; work still running for a
revoked assignment completes into its orphaned tracker and can no longer move a commit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from aiokafka import TopicPartition

# aiokafka's own (a NamedTuple): partitions pass between the consumer and here unconverted.
TP = TopicPartition


@dataclass(eq=False)
class PartitionOffsets:
    pending: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    position: int | None = None  # next offset to read: every tracked offset below it is done
    committed: int | None = None
    revoked: bool = False

    def track(self, offset: int) -> None:
        if self.pending and offset <= self.pending[-1]:
            raise ValueError(f"offset {offset} tracked out of order after {self.pending[-1]}")
        if self.position is not None and offset < self.position:
            raise ValueError(f"offset {offset} is below the finished position {self.position}")
        self.pending.append(offset)

    def complete(self, offset: int) -> None:
        self.done.add(offset)
        while self.pending and self.pending[0] in self.done:
            finished = self.pending.popleft()
            self.done.discard(finished)
            self.position = finished + 1

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def uncommitted(self) -> int | None:
        """The position to commit, if it moved since the last commit."""
        if self.position is not None and self.position != self.committed:
            return self.position
        return None


class OffsetTracker:
    """The partitions this worker holds now."""

    def __init__(self) -> None:
        self._parts: dict[TP, PartitionOffsets] = {}

    def partition(self, tp: TP) -> PartitionOffsets:
        """The tracker of the current assignment of ``tp``, created on first use."""
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = PartitionOffsets()
        return part

    def to_commit(self, only: set[TP] | None = None) -> dict[TP, int]:
        out = {}
        for tp, part in self._parts.items():
            position = part.uncommitted()
            if position is not None and (only is None or tp in only):
                out[tp] = position
        return out

    def mark_committed(self, positions: dict[TP, int]) -> None:
        for tp, position in positions.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = position

    def revoke(self, tps: set[TP]) -> None:
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is not None:
                part.revoked = True

    def in_flight(self, tps: set[TP] | None = None) -> int:
        return sum(p.in_flight for tp, p in self._parts.items() if tps is None or tp in tps)
