"""Log lines: JSON objects one per line, trace ids, no content unless allowed, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from worker.config import LogSettings
from worker.observability.telemetry import (
    CHATTY_LIBRARIES,
    MASK,
    configure_logging,
    content_field,
    library_level,
    stdlib_formatter,
)


@contextmanager
def configured(settings: LogSettings) -> Iterator[io.StringIO]:
    """configure_logging into a buffer, then put every global it touched back."""
    root, vllm = logging.getLogger(), logging.getLogger("vllm")
    saved = (list(root.handlers), root.level, list(vllm.handlers), vllm.propagate, vllm.level)
    levels = {name: logging.getLogger(name).level for name in CHATTY_LIBRARIES}
    config = structlog.get_config()
    env = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
    buffer = io.StringIO()
    configure_logging(settings, buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level, vllm.handlers[:], vllm.propagate, vllm.level = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.captureWarnings(False)
        structlog.configure(**config)
        if env is None:
            os.environ.pop("VLLM_LOGGING_CONFIG_PATH", None)
        else:
            os.environ["VLLM_LOGGING_CONFIG_PATH"] = env


def lines(buffer: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def test_our_events_are_json_lines_with_the_current_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with configured(LogSettings(format="json")) as buffer:
        log = structlog.get_logger("worker.test")
        with tracer.start_as_current_span("work") as span:
            log.info("inside", item="a-1", partition=2)
        log.info("outside")
    inside, outside = lines(buffer)
    context = span.get_span_context()
    assert inside["event"] == "inside" and inside["level"] == "info"
    assert inside["logger"] == "worker.test" and inside["timestamp"].endswith("Z")
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert inside["item"] == "a-1" and inside["partition"] == 2
    assert "trace_id" not in outside


def test_standard_library_records_come_out_the_same_way() -> None:
    with configured(LogSettings(format="json")) as buffer:
        logging.getLogger("aiokafka.conn").warning("broker %s unreachable", "b-1")
        logging.getLogger("aiokafka.conn").info("dropped below WARNING")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("worker.other").exception("failed")
    warning, failure = lines(buffer)
    assert warning == {
        "event": "broker b-1 unreachable",
        "level": "warning",
        "logger": "aiokafka.conn",
        "timestamp": warning["timestamp"],
    }
    assert failure["level"] == "error" and "RuntimeError: boom" in failure["exception"]
    assert len(buffer.getvalue().splitlines()) == 2  # the traceback stayed inside its line


def test_content_is_dropped_unless_allowed_and_secrets_are_masked() -> None:
    with configured(LogSettings(format="json")) as buffer:
        structlog.get_logger("w").info(
            "e", content="private text", sasl_password="pw", api_token="t", prompt_tokens=7
        )
    [entry] = lines(buffer)
    assert "content" not in entry and "private text" not in buffer.getvalue()
    assert entry["sasl_password"] == MASK and entry["api_token"] == MASK
    assert entry["prompt_tokens"] == 7  # a count, not a token

    with configured(LogSettings(format="json", include_content=True)) as buffer:
        structlog.get_logger("w").info("e", content="private text", password="pw")
    [entry] = lines(buffer)
    assert entry["content"] == "private text" and entry["password"] == MASK


def test_content_field_is_gated_at_the_call_too() -> None:
    assert content_field(LogSettings(), "text") == {}
    allowed = LogSettings(include_content=True)
    assert content_field(allowed, b"bytes \xff") == {"content": "bytes \ufffd"}
    assert content_field(allowed, None) == {}
    assert len(content_field(allowed, "x" * 10_000)["content"]) == 2000


def test_levels_filter_our_events() -> None:
    with configured(LogSettings(format="json", level="WARNING")) as buffer:
        structlog.get_logger("w").info("hidden")
        structlog.get_logger("w").warning("shown")
    assert [e["event"] for e in lines(buffer)] == ["shown"]


@pytest.mark.parametrize(
    ("level", "include_content", "quiet", "expected"),
    [
        ("INFO", False, logging.WARNING, logging.WARNING),
        ("DEBUG", False, logging.WARNING, logging.WARNING),  # library DEBUG carries payloads
        ("DEBUG", True, logging.WARNING, logging.DEBUG),
        ("ERROR", True, logging.WARNING, logging.ERROR),
        ("DEBUG", False, logging.INFO, logging.INFO),
    ],
)
def test_library_levels(level: str, include_content: bool, quiet: int, expected: int) -> None:
    settings = LogSettings(level=level, include_content=include_content)
    assert library_level(settings, quiet) == expected


def test_console_format_is_not_json() -> None:
    with configured(LogSettings(format="console")) as buffer:
        structlog.get_logger("w").info("hello", n=1)
    text = buffer.getvalue()
    assert "hello" in text and "n=1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_vllm_gets_a_logging_config_with_our_formatter() -> None:
    with configured(LogSettings(format="json")):
        path = os.environ["VLLM_LOGGING_CONFIG_PATH"]
        with open(path) as handle:
            config = json.load(handle)
    formatter = config["formatters"]["worker"]
    assert formatter["()"] == "worker.observability.telemetry.stdlib_formatter"
    assert config["loggers"]["vllm"]["handlers"] == ["worker"]
    assert config["loggers"]["vllm"]["level"] == logging.INFO
    # What vLLM's processes will build from it renders a JSON line.
    built = stdlib_formatter(formatter["json_lines"], formatter["include_content"])
    record = logging.LogRecord("vllm.engine", logging.INFO, "f.py", 1, "loaded %s", ("m",), None)
    assert orjson.loads(built.format(record))["event"] == "loaded m"


def test_an_operators_vllm_logging_config_is_left_alone(monkeypatch, tmp_path) -> None:
    theirs = tmp_path / "logging.json"
    monkeypatch.setenv("VLLM_LOGGING_CONFIG_PATH", str(theirs))
    with configured(LogSettings(format="json")):
        assert os.environ["VLLM_LOGGING_CONFIG_PATH"] == str(theirs)


def test_python_warnings_become_log_lines() -> None:
    with configured(LogSettings(format="json")) as buffer:
        warnings.warn("old api", FutureWarning, stacklevel=1)
    [entry] = lines(buffer)
    assert entry["logger"] == "py.warnings" and "FutureWarning: old api" in entry["event"]
