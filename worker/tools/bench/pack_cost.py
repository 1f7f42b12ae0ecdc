"""``python -m worker.tools.bench.pack_cost``: loading and reloading a policy pack, measured.

In a process of its own, so that its memory figures are the pack's: seconds (wall and CPU)
and resident memory for loading the pack as the worker does at start-up (read and parse the
files, compile each policy's prompt with the model's tokenizer), then for a reload after
``--edits`` files were edited, one added and one removed, as the worker's watcher reloads
(given the catalog in use). ``--full-reload`` also times such a reload after every file
changed, whose compile runs in a process of its own (its CPU seconds are reported apart).
The pack is put back as it was afterwards. Prints one JSON object.

Memory comes from Linux's ``/proc/self/status``: the resident high-water mark (reset before
each step through ``/proc/self/clear_refs``) above what the process held before the step.
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from ...catalog import Catalog, compile_catalog
from ...config import RoutingSettings
from ...policies import load_policies
from ...prompts import Tokenizer

ADDED = "added-during-reload"


def load(
    directory: Path, tokenizer: Tokenizer, max_model_len: int, previous: Catalog | None = None
) -> tuple[Catalog, dict[str, float]]:
    """The pack compiled as the worker compiles it; seconds reading, compiling, and the CPU
    seconds of both (which a busy machine inflates less than wall time)."""
    wall, cpu = time.perf_counter(), time.process_time()
    registry = load_policies(directory, previous=previous.registry if previous else None)
    read = time.perf_counter()
    catalog = compile_catalog(registry, tokenizer, max_model_len, RoutingSettings(), previous)
    done = time.perf_counter()
    seconds = {"read": read - wall, "compile": done - read, "cpu": time.process_time() - cpu}
    return catalog, {key: round(value, 2) for key, value in seconds.items()}


def measure(
    directory: Path, tokenizer: Tokenizer, max_model_len: int, edits: int, full: bool = False
) -> dict[str, Any]:
    base = _settled_rss()
    catalog, took = load(directory, tokenizer, max_model_len)
    result: dict[str, Any] = {
        "policies": len(catalog.entries),
        "load_s": took["read"],
        "compile_s": took["compile"],
        "load_cpu_s": took["cpu"],
        "load_peak_mib": _mib(_peak() - base),
    }
    held = _settled_rss()
    result["catalog_mib"] = _mib(held - base)
    with edited_pack(directory, edits):
        new, took = load(directory, tokenizer, max_model_len, catalog)
        result["reload_s"] = round(took["read"] + took["compile"], 2)
        result["reload_cpu_s"] = took["cpu"]
        result["reload_peak_mib"] = _mib(_peak() - held)
        result["reload_changed"] = sum(
            catalog.entries.get(pid) is None or catalog.entries[pid].policy != e.policy
            for pid, e in new.entries.items()
        )
        result["reload_removed"] = len(set(catalog.entries) - set(new.entries))
        del new
    if full:
        result.update(_full_reload(directory, tokenizer, max_model_len, catalog, held))
    return result


def _full_reload(
    directory: Path, tokenizer: Tokenizer, max_model_len: int, catalog: Catalog, held: int
) -> dict[str, float]:
    """A reload after every file but one was edited (that one removed, one added), given
    the catalog in use: the compile a whole pack rewritten costs the worker, in the process
    its many changes compile in (``compile_process``), whose CPU seconds are counted apart."""
    with edited_pack(directory, len(list(directory.glob("*.md"))) - 1):
        _settled_rss()
        children = _children_cpu()
        _, took = load(directory, tokenizer, max_model_len, catalog)
        return {
            "full_reload_s": round(took["read"] + took["compile"], 2),
            "full_reload_cpu_s": took["cpu"],
            "full_reload_child_cpu_s": round(_children_cpu() - children, 2),
            "full_reload_peak_mib": _mib(_peak() - held),
        }


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def edited_pack(directory: Path, edits: int) -> Iterator[None]:
    """``edits`` policy files edited, one added, one removed; all put back afterwards."""
    files = sorted(directory.glob("*.md"))
    if len(files) < edits + 1:
        raise ValueError(f"{directory} has {len(files)} policy files; --edits {edits} needs more")
    originals = {path: path.read_bytes() for path in files[:edits]}
    removed = files[-1]
    added = directory / f"{ADDED}.md"
    with tempfile.TemporaryDirectory() as aside:
        kept = Path(aside) / removed.name
        try:
            for path, text in originals.items():
                path.write_bytes(text + b"\nEdited before the reload.\n")
            added.write_text(f"---\nid: {ADDED}\n---\nFlag content that mentions a new word.\n")
            shutil.move(removed, kept)
            yield
        finally:
            for path, text in originals.items():
                path.write_bytes(text)
            added.unlink(missing_ok=True)
            if kept.exists():
                shutil.move(kept, removed)


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: Linux only")


def _settled_rss() -> int:
    """Resident KiB once garbage is collected; the high-water mark starts again from it."""
    gc.collect()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")  # resets the resident high-water mark (VmHWM)
    return _status("VmRSS")


def _peak() -> int:
    return _status("VmHWM")


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.tools.bench.pack_cost")
    parser.add_argument("--model", required=True, help="model directory or hub id (tokenizer)")
    parser.add_argument("--dir", type=Path, required=True, help="the policy pack")
    parser.add_argument("--policies", type=int, help="write this many generated policies first")
    parser.add_argument("--words", default="50:2900", help="their lengths in words, MIN:MAX")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--edits", type=int, default=10, help="files edited before the reload")
    parser.add_argument("--full-reload", action="store_true", help="also a reload from scratch")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    if args.policies:
        from .many import write_many_policies

        low, _, high = args.words.partition(":")
        write_many_policies(args.dir, args.policies, int(low), int(high or low), "7")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    result = measure(args.dir, tokenizer, args.max_model_len, args.edits, args.full_reload)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
