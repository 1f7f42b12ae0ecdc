"""A killed worker leaves nothing running: its engine processes end with it.

SIGKILL reaches only the worker's own process here (an OOM kill, a supervisor's hard stop),
not its process family as losing a pod does: the engine processes must end by themselves,
within seconds, and the stream must still complete with nothing lost. Engine processes left
by an earlier worker are named, with their memory, by the next start.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import psutil
import pytest

from worker.engine.orphans import find_orphans, orphans_line

from .harness import (
    committed,
    create_topics,
    read_topic,
    stream_around_kills,
    topic_names,
    verdicts,
    worker_settings,
)
from .procs import WorkerProcess

pytestmark = pytest.mark.integration

KILLS = 3
TOTAL = 1500
IDS = {f"o-{n}" for n in range(TOTAL)}
RATE = 30  # events per second: slower than the worker, so work is in flight at each kill
KILL_AFTER_S = 3.0  # after the worker took its partitions
HELD_BACK = 300  # produced once the kills are done, so every kill lands mid-stream
GONE_WITHIN_S = 10.0


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _seconds_until_gone(pids: list[int], timeout_s: float) -> float | None:
    """How long until none of ``pids`` runs (zombies count as gone); None if past timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not any(_running(pid) for pid in pids):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def _end(pids: list[int]) -> None:
    """Make sure a failing test leaves no engine behind on the machine."""
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


async def test_killing_the_worker_alone_ends_its_engine(
    broker, test_model, tmp_path, record_property
):
    bootstrap = broker.bootstrap_servers
    topics = topic_names("orphans")
    settings = worker_settings(
        bootstrap,
        test_model,
        topics,
        engine={"extra_args": {"enforce_eager": True, "block_size": 32}},
        batch={"max_items": 16, "linger_ms": 5, "max_in_flight": 64},
    )
    await create_topics(bootstrap, list(topics.values()), 3)
    kills_done = asyncio.Event()
    streaming = asyncio.create_task(
        stream_around_kills(bootstrap, topics["content"], "o", TOTAL, HELD_BACK, RATE, kills_done)
    )
    worker = WorkerProcess(settings, tmp_path, "orphans")
    engines: list[int] = []
    gone_after: list[float] = []
    try:
        for _ in range(KILLS):
            mark = worker.log_size()
            worker.start()
            await asyncio.to_thread(worker.wait_log, "partitions assigned", 300, mark)
            await asyncio.sleep(KILL_AFTER_S)
            pids = worker.engine_pids()
            engines += pids
            assert len(pids) >= 2, f"expected EngineCore and Worker, found {pids}"
            worker.kill_worker_only()
            seconds = await asyncio.to_thread(_seconds_until_gone, pids, GONE_WITHIN_S)
            assert seconds is not None, f"engine processes {pids} outlived the killed worker"
            gone_after.append(seconds)
            print(f"kill {len(gone_after)}: engine processes {pids} gone after {seconds:.2f} s")
            done = verdicts(await read_topic(bootstrap, topics["results"], settle=0.2))
            assert len({v["id"] for v in done}) < TOTAL, "a kill came after the work was done"
        kills_done.set()
        await streaming
        mark = worker.log_size()
        worker.start()
        await asyncio.to_thread(worker.wait_log, "partitions assigned", 300, mark)
        results = await read_topic(bootstrap, topics["results"], ids=IDS, timeout=300, settle=3)
        assert await asyncio.to_thread(worker.terminate) == 0
    finally:
        streaming.cancel()
        if worker.process and worker.process.poll() is None:
            worker.kill()
        _end(engines)

    labels = {v["id"]: v["label"] for v in verdicts(results)}
    assert set(labels) == IDS, worker.tail()
    assert all(labels[f"o-{n}"] == n % 2 for n in range(TOTAL))
    positions = await committed(bootstrap, settings.kafka.group_id, topics["content"])
    assert sum(p or 0 for p in positions.values()) == TOTAL
    # No start found engine processes of the one before it (the machine may hold others').
    warnings = [line for line in worker.log.read_text().splitlines() if "earlier worker" in line]
    assert not [pid for pid in engines if any(f"process {pid} " in w for w in warnings)]
    record_property("engine_gone_after_s", [round(s, 2) for s in gone_after])


# A process titled like a vLLM engine process whose parent has gone, holding memory: what a
# worker killed before this fix left behind. The middle process exits so that the holder is
# re-parented; the holder ends itself after a while should the test's clean-up not run.
FAKE_ORPHAN = """
import os, sys, time, setproctitle
if os.fork():
    os._exit(0)
setproctitle.setproctitle("VLLM::EngineCore")
held = b"x" * (int(sys.argv[1]) << 20)
print(os.getpid(), flush=True)
time.sleep(120)
"""


@pytest.fixture
def fake_orphan():
    starter = subprocess.Popen(
        [sys.executable, "-c", FAKE_ORPHAN, "300"], stdout=subprocess.PIPE, text=True
    )
    pid = int(starter.stdout.readline())
    starter.wait(10)
    yield pid
    _end([pid])


def test_an_orphan_is_named_with_its_memory(fake_orphan):
    found = {o.pid: o for o in find_orphans()}
    assert fake_orphan in found, found
    orphan = found[fake_orphan]
    assert orphan.rss_bytes >= 300 << 20
    line = orphans_line([orphan])
    assert f"process {fake_orphan} (VLLM::EngineCore) holds 0.3 GiB" in line
    assert line.endswith(f"kill {fake_orphan}")


async def test_a_failed_start_names_the_orphans(fake_orphan, tmp_path):
    from worker.config import LocalEngineSettings
    from worker.engine import EngineStartError
    from worker.engine.vllm import VllmClassifier

    # Any start that fails while orphans run names them; a missing model fails in seconds.
    with pytest.raises(EngineStartError) as failed:
        await VllmClassifier.start(LocalEngineSettings(model=str(tmp_path / "no-model")))
    message = str(failed.value)
    assert message.startswith("the engine could not start (")
    assert f"process {fake_orphan} (VLLM::EngineCore) holds" in message
    assert "\n" not in message


def test_a_living_workers_engine_is_no_orphan():
    # The parent of this fake engine process is alive, as a running worker's would be.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import setproctitle, time; setproctitle.setproctitle('VLLM::EngineCore');"
            "print(flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdout.readline()
        assert holder.pid not in {o.pid for o in find_orphans()}
    finally:
        holder.kill()
        holder.wait(10)


# A program that starts one child by each of multiprocessing's methods from a StarterThread,
# as the worker starts its engine, and prints the children's pids. It imports the package
# at the top, as the worker's CLI does, so spawned children bind themselves as they start.
STARTER = """
import asyncio, multiprocessing, sys, time
import worker
from worker.subprocesses import StarterThread, bind_children

def main():
    bind_children()
    def start():
        children = [multiprocessing.get_context(m).Process(target=time.sleep, args=(60,))
                    for m in ("fork", "spawn")]
        for child in children:
            child.start()
        return children
    async def run():
        children = await StarterThread("starter").run(start)
        print(*(c.pid for c in children), flush=True)
        await asyncio.sleep(60)
    asyncio.run(run())

if __name__ == "__main__":
    main()
"""


def test_children_started_either_way_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "starter.py"
    script.write_text(STARTER)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(children) == 2 and all(_running(pid) for pid in children)
        parent.kill()  # SIGKILL: no clean-up of its own runs
        parent.wait(10)
        assert _seconds_until_gone(children, GONE_WITHIN_S) is not None
    finally:
        parent.kill()
        _end(children)
