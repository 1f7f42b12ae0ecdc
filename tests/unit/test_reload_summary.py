"""A policy reload: its log line stays short however many policies a pack holds, and it
compiles below the CPU priority of serving."""

from __future__ import annotations

from types import SimpleNamespace

from worker.app import reload_summary


def _catalog(versions: dict[str, str]) -> SimpleNamespace:
    entries = {
        pid: SimpleNamespace(policy=SimpleNamespace(version=v)) for pid, v in versions.items()
    }
    return SimpleNamespace(entries=entries)


def test_a_reload_names_what_changed_up_to_a_bound():
    before = _catalog({f"p{n:05}": "a" * 64 for n in range(10_000)})
    after = {f"p{n:05}": "a" * 64 for n in range(1, 10_000)}  # p00000 removed
    after.update({f"p{n:05}": "b" * 64 for n in range(10, 40)})  # 30 edited
    after["new"] = "c" * 64
    summary = reload_summary(before, _catalog(after), named=5)
    assert summary["policies"] == 10_000 and summary["changed"] == 31
    # The first five changed, in id order, with their new versions.
    assert summary["versions"] == {"new": "c" * 12, **{f"p{n:05}": "b" * 12 for n in range(10, 14)}}
    assert summary["removed"] == ["p00000"]
    assert len(str(summary)) < 1000


def test_the_reload_thread_runs_at_a_lower_cpu_priority_than_serving():
    import os
    import threading

    from worker.app import RELOAD_NICENESS, _lower_priority

    seen: dict[str, int] = {}

    def reload_thread() -> None:
        _lower_priority()
        seen["reload"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    serving = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=reload_thread)
    thread.start()
    thread.join()
    assert seen["reload"] == min(19, serving + RELOAD_NICENESS)
    # Only that thread: the calling thread keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == serving
