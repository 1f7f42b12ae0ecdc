"""Why the vLLM engine did not start, said in one line.

vLLM starts its engine in other processes. When one of them fails, it logs the cause and
the caller only gets ``RuntimeError: Engine core initialization failed. See root cause
above``, after some sixty lines of tracebacks. While the engine starts, every ERROR record
of vLLM's loggers is also written to a notes file: in this process (and forked ones)
through a handler, in spawned ones through the logging config vLLM reads at import. The
first exception line there is the root cause.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from . import EngineStartError

_CONFIG_ENV = "VLLM_LOGGING_CONFIG_PATH"
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")
# What vLLM's processes say about each other: never the cause itself.
_RELAYED = ("Engine core initialization failed", "Worker failed with error")
_MEMORY = re.compile(r"memory|kv cache", re.IGNORECASE)
_NO_MODEL = re.compile(
    r"Repo id must|not a valid model identifier|does not appear to have a file|"
    r"No such file|Repository Not Found|not a local folder",
    re.IGNORECASE,
)


@contextmanager
def failure_notes() -> Iterator[Path]:
    """While the engine starts: vLLM's error records, all processes, in one file."""
    with tempfile.TemporaryDirectory(prefix="moderation-worker-engine-") as folder:
        notes = Path(folder) / "errors.log"
        notes.touch()
        handler = logging.FileHandler(notes)
        handler.setLevel(logging.ERROR)
        vllm_logger = logging.getLogger("vllm")
        vllm_logger.addHandler(handler)
        given = os.environ.get(_CONFIG_ENV)
        os.environ[_CONFIG_ENV] = str(_config_with_notes(Path(folder), notes, given))
        try:
            yield notes
        finally:
            vllm_logger.removeHandler(handler)
            handler.close()
            if given is None:
                os.environ.pop(_CONFIG_ENV, None)
            else:
                os.environ[_CONFIG_ENV] = given


def _config_with_notes(folder: Path, notes: Path, given: str | None) -> Path:
    """vLLM's logging config (the operator's, ours, or vLLM's default) plus the notes file."""
    if given and Path(given).is_file():
        config = orjson.loads(Path(given).read_bytes())
    else:
        from vllm.logger import DEFAULT_LOGGING_CONFIG

        config = copy.deepcopy(DEFAULT_LOGGING_CONFIG)
    config.setdefault("handlers", {})["engine_failure"] = {
        "class": "logging.FileHandler",
        "filename": str(notes),
        "level": "ERROR",
    }
    vllm_logger = config.setdefault("loggers", {}).setdefault("vllm", {})
    vllm_logger["handlers"] = [*vllm_logger.get("handlers", []), "engine_failure"]
    path = folder / "vllm-logging.json"
    path.write_bytes(orjson.dumps(config))
    return path


def root_cause(notes: str) -> str | None:
    """The first exception line in vLLM's error records that is not a relay of another."""
    for line in notes.splitlines():
        match = _EXCEPTION_LINE.match(line.strip())
        if match and not any(relay in match.group(2) for relay in _RELAYED):
            return f"{match.group(1)}: {match.group(2)}"
    return None


def start_error(exc: BaseException, notes: str, model: str) -> EngineStartError:
    """One line: what stopped the engine, and the setting to change."""
    cause = root_cause(notes) or f"{type(exc).__name__}: {exc}"
    cause = " ".join(cause.split())[:500].rstrip(".")
    if _NO_MODEL.search(cause):
        advice = (
            f"Model {model!r} was not found: set engine.model (env WORKER_ENGINE__MODEL) to a "
            "model directory or a hub id."
        )
    elif _MEMORY.search(cause):
        advice = (
            "Lower engine.gpu_memory_utilization or engine.max_model_len; on a CPU set "
            "VLLM_CPU_KVCACHE_SPACE (GiB of KV cache) to fit the memory that is free."
        )
    else:
        advice = "Check engine.model and the other engine settings."
    return EngineStartError(f"the engine could not start: {cause}. {advice}")
