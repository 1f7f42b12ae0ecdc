"""Helper processes (the embedded broker, benchmark phases) never outlive what started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ..conftest import REPO

pytestmark = pytest.mark.integration

START_BROKER = """
from worker.tools.broker import EmbeddedBroker
broker = EmbeddedBroker().start()
print(broker.process.pid, flush=True)
input()
"""


def _gone_within(pids: list[int], timeout_s: float) -> list[int]:
    """The pids still running (zombies count as gone) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [pid for pid in pids if _running(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_broker_dies_with_a_killed_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", START_BROKER],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    broker_pid = None
    try:
        broker_pid = int(parent.stdout.readline())
        assert _running(broker_pid)
        parent.kill()  # SIGKILL: no clean-up of its own runs
        parent.wait(10)
        assert _gone_within([broker_pid], 10) == []
    finally:
        parent.kill()
        if broker_pid is not None and _running(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)


def test_bench_stopped_by_sigterm_stops_its_phase_and_broker(test_model, tmp_path):
    command = [
        *(sys.executable, "-m", "worker.cli", "bench"),
        *("--model", str(test_model), "--phases", "overhead"),
        *("--overhead-events", "20000", "--policy-tokens", "300", "--workdir", str(tmp_path)),
    ]
    bench = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    helpers: list[int] = []
    try:
        for line in bench.stdout:
            if "consuming" in line:  # the first system is running on the embedded broker
                break
        helpers = [p.pid for p in psutil.Process(bench.pid).children(recursive=True)]
        assert len(helpers) >= 2, "expected the broker and a phase process"
        bench.send_signal(signal.SIGTERM)
        rest = bench.stdout.read()
        assert bench.wait(60) == 128 + signal.SIGTERM
        assert "bench stopped" in rest
        assert _gone_within(helpers, 10) == []
    finally:
        bench.kill()
        for pid in helpers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
