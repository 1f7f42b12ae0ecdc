"""The process-wide collector settings while workers run."""

from __future__ import annotations

import gc

from worker.observability.collector import YOUNG_GC_THRESHOLD, collector_tuned


def test_collector_is_tuned_while_any_worker_runs_and_restored_after() -> None:
    before = gc.get_threshold()
    with collector_tuned():
        assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
        with collector_tuned():  # a second worker in the same process
            pass
        assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD  # the first still runs
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
