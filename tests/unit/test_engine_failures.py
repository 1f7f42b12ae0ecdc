"""An engine that cannot start: vLLM's error records become one line with the setting."""

from __future__ import annotations

from worker.engine.failures import root_cause, start_error

# What vLLM's processes log when the CPU engine cannot get its KV cache (abridged).
NOTES = """\
WorkerProc failed to start.
Traceback (most recent call last):
  File "vllm/v1/worker/cpu_worker.py", line 120, in determine_available_memory
    raise ValueError(
ValueError: Available memory on node 0 (7.92/9.46 GiB) on kv cache allocation is less than \
requested memory for kv (100000.0 GiB). Decrease --kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE, \
or reduce CPU memory used by other processes.
EngineCore failed to start.
Traceback (most recent call last):
    raise RuntimeError(
RuntimeError: Worker failed with error 'Available memory on node 0 ...', please check the stack \
trace above for the root cause
"""
RELAYED = RuntimeError(
    "Engine core initialization failed. See root cause above. Failed core proc(s): {}"
)


def test_the_root_cause_is_the_first_exception_that_is_not_a_relay() -> None:
    cause = root_cause(NOTES)
    assert cause is not None and cause.startswith("ValueError: Available memory on node 0")


def test_a_memory_failure_names_the_memory_settings() -> None:
    message = str(start_error(RELAYED, NOTES, "m"))
    assert message.startswith("the engine could not start: ValueError: Available memory")
    assert "VLLM_CPU_KVCACHE_SPACE" in message and "engine.gpu_memory_utilization" in message
    assert "\n" not in message and ".." not in message


def test_a_missing_model_names_engine_model() -> None:
    error = OSError("/models/x is not a local folder and is not a valid model identifier")
    message = str(start_error(error, "", "/models/x"))
    assert "Model '/models/x' was not found" in message and "WORKER_ENGINE__MODEL" in message


def test_without_notes_the_error_itself_is_the_cause() -> None:
    message = str(start_error(RELAYED, "", "m"))
    assert "Engine core initialization failed" in message and "engine.model" in message
