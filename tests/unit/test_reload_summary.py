"""The log line of a policy reload stays short however many policies a pack holds."""

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
