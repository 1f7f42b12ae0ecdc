"""Engine processes left on this host by a worker that is gone, holding their memory.

A worker killed before its engine processes were bound to it (an older version, or a host
where the kernel has no parent-death signal) leaves them running, and the next engine on the
host then fails for lack of memory with an error that does not say why. This module finds
them so that start-up can name them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

# vLLM titles its processes VLLM::EngineCore, VLLM::Worker, … (its VLLM_PROCESS_NAME_PREFIX).
ENGINE_PREFIX = "VLLM::"


@dataclass(frozen=True)
class Orphan:
    """An engine process whose worker is gone, with the engine processes below it."""

    pid: int
    name: str
    rss_bytes: int  # resident memory of it and its engine children together
    children: tuple[int, ...]

    def describe(self) -> str:
        family = f" with {len(self.children)} child process(es)" if self.children else ""
        return f"process {self.pid} ({self.name}){family} holds {self.rss_bytes / 2**30:.1f} GiB"


def find_orphans() -> list[Orphan]:
    """Engine processes of this host whose starting Python process is gone."""
    orphans = []
    for proc in psutil.process_iter(["name"]):
        try:
            if _is_engine(proc) and not _is_engine(proc.parent()) and _orphaned(proc):
                orphans.append(_measure(proc))
        except psutil.Error:  # ended or not ours while we looked
            continue
    return orphans


def orphans_line(orphans: list[Orphan]) -> str:
    """One line naming the orphans, their memory and how to end them."""
    pids = " ".join(str(pid) for o in orphans for pid in (o.pid, *o.children))
    held = "; ".join(o.describe() for o in orphans)
    return f"engine processes of an earlier worker are still running: {held}; end them: kill {pids}"


def _is_engine(proc: psutil.Process | None) -> bool:
    # A zombie has already freed its memory; it only waits for its new parent to reap it.
    return (
        proc is not None
        and proc.name().startswith(ENGINE_PREFIX)
        and proc.status() != psutil.STATUS_ZOMBIE
    )


def _orphaned(proc: psutil.Process) -> bool:
    # The engine's top process is forked or spawned by the worker's Python, so its parent
    # runs the same executable; after the worker dies it belongs to init or a subreaper.
    parent = proc.parent()
    if parent is not None and parent.pid == os.getpid():  # ours, even where we are pid 1
        return False
    if parent is None or parent.pid == 1:
        return True
    try:
        return parent.exe() != proc.exe()
    except psutil.AccessDenied:  # another user's reaper: not a worker of ours
        return True


def _measure(proc: psutil.Process) -> Orphan:
    family = [proc, *(c for c in proc.children(recursive=True) if _is_engine(c))]
    rss = 0
    for member in family:
        try:
            rss += member.memory_info().rss
        except psutil.Error:
            continue
    return Orphan(proc.pid, proc.name(), rss, tuple(member.pid for member in family[1:]))
