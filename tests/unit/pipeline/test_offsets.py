import pytest

from worker.pipeline.offsets import OffsetTracker, PartitionOffsets

TP = ("content", 0)


def test_position_moves_only_over_a_finished_prefix():
    part = PartitionOffsets()
    for offset in (10, 11, 12):
        part.track(offset)
    part.complete(12)
    part.complete(11)
    assert part.uncommitted() is None  # 10 is still running
    part.complete(10)
    assert part.uncommitted() == 13
    assert part.in_flight == 0


def test_gaps_in_offsets_are_not_waited_for():
    part = PartitionOffsets()
    for offset in (3, 7, 20):  # compaction and transaction markers leave holes
        part.track(offset)
    part.complete(3)
    part.complete(7)
    assert part.uncommitted() == 8


def test_out_of_order_tracking_is_refused():
    part = PartitionOffsets()
    part.track(5)
    with pytest.raises(ValueError):
        part.track(5)


def test_tracker_reports_each_position_once_until_it_moves():
    tracker = OffsetTracker()
    part = tracker.partition(TP)
    part.track(0)
    part.track(1)
    part.complete(0)
    assert tracker.to_commit() == {TP: 1}
    tracker.mark_committed({TP: 1})
    assert tracker.to_commit() == {}
    part.complete(1)
    assert tracker.to_commit() == {TP: 2}


def test_a_failed_commit_is_offered_again():
    tracker = OffsetTracker()
    part = tracker.partition(TP)
    part.track(0)
    part.complete(0)
    assert tracker.to_commit() == {TP: 1}
    assert tracker.to_commit() == {TP: 1}  # not marked committed: offered again


def test_revoked_assignment_cannot_move_the_new_one():
    tracker = OffsetTracker()
    old = tracker.partition(TP)
    old.track(0)
    tracker.revoke({TP})
    assert old.revoked
    new = tracker.partition(TP)
    assert new is not old
    new.track(0)
    old.complete(0)  # late work of the revoked assignment
    assert tracker.to_commit() == {}
    assert tracker.in_flight() == 1


def test_in_flight_counts_per_partition():
    tracker = OffsetTracker()
    tracker.partition(("a", 0)).track(1)
    tracker.partition(("a", 1)).track(1)
    tracker.partition(("a", 1)).track(2)
    assert tracker.in_flight() == 3
    assert tracker.in_flight({("a", 1)}) == 2
