"""Logging: structlog, one JSON object per line by default, a console renderer on a terminal.

Our own events and the standard library's (aiokafka, vLLM) go through one handler and one
renderer, so a log pipeline sees a single format. Every line carries the current
OpenTelemetry trace and span ids. Content text is dropped unless ``log.include_content``
is set; values under secret-looking keys are always masked.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from ..config import LogSettings

CONTENT_KEYS = frozenset({"content"})
CONTENT_LIMIT = 2000  # characters of content a line may carry, when allowed at all
_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|secret|token|api_key|apikey|authorization|credentials?)$", re.I
)
MASK = "[redacted]"
# Libraries that talk too much at INFO: they log at WARNING. Their DEBUG output carries record
# values and prompts, so it is let through only when content may be logged too.
CHATTY_LIBRARIES = ("aiokafka", "kafka", "httpx", "urllib3", "filelock")
_VLLM_CONFIG_PREFIX = "moderation-worker-vllm-logging-"


def add_trace_context(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """trace_id / span_id of the current OpenTelemetry span, as W3C hex."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


class Redact:
    """Drop content text (unless allowed) and mask values under secret-looking keys."""

    def __init__(self, include_content: bool) -> None:
        self.include_content = include_content

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        for key in list(event):
            if key in CONTENT_KEYS and not self.include_content:
                del event[key]
            elif _SECRET_KEY.search(key) and event[key] is not None:
                event[key] = MASK
        return event


def _shared_processors(include_content: bool) -> list[Processor]:
    """What every line gets, whether it came from structlog or the standard library."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
        Redact(include_content),
    ]


def stdlib_formatter(json_lines: bool = True, include_content: bool = False) -> logging.Formatter:
    """The formatter of our handler; also named in the logging config vLLM's processes load."""
    renderer: Processor = (
        structlog.processors.JSONRenderer(default=str)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(include_content),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def library_level(settings: LogSettings, quiet: int) -> int:
    """A library's level: at least ``quiet``, unless DEBUG with content allowed."""
    level = logging.getLevelName(settings.level)
    if settings.include_content and level <= logging.DEBUG:
        return level
    return max(level, quiet)


class _WorkerHandler(logging.StreamHandler):
    """Marks the handler we installed, so configuring again replaces it."""


def configure_logging(settings: LogSettings, stream: TextIO = sys.stdout) -> None:
    """Log lines go to ``stream``: stdout for the worker, stderr where stdout carries data."""
    json_lines = settings.format == "json" or (settings.format == "auto" and not _isatty(stream))
    level = logging.getLevelName(settings.level)
    structlog.configure(
        processors=[
            *_shared_processors(settings.include_content),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = _WorkerHandler(stream)
    handler.setFormatter(stdlib_formatter(json_lines, settings.include_content))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WorkerHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings become log lines too, not bare stderr
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(library_level(settings, quiet=logging.WARNING))
    _route_vllm_logs(handler, stream, json_lines, settings)


def _route_vllm_logs(
    handler: logging.Handler, stream: TextIO, json_lines: bool, settings: LogSettings
) -> None:
    """vLLM configures its own logger at import, in this process and in its engine processes.

    An already imported vLLM is pointed at our handler; for imports to come (the engine
    processes included) we hand vLLM a logging config naming our formatter, unless the
    operator gave one (VLLM_LOGGING_CONFIG_PATH).
    """
    vllm_logger = logging.getLogger("vllm")
    if vllm_logger.handlers:
        vllm_logger.handlers = [handler]
        vllm_logger.propagate = False
        vllm_logger.setLevel(library_level(settings, quiet=logging.INFO))
    given = os.environ.get("VLLM_LOGGING_CONFIG_PATH", "")
    if given and not Path(given).name.startswith(_VLLM_CONFIG_PREFIX):
        return
    path = _write_vllm_config(_stream_name(stream), json_lines, settings)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)


def _stream_name(stream: TextIO) -> str:
    return "ext://sys.stderr" if stream is sys.stderr else "ext://sys.stdout"


def _write_vllm_config(stream: str, json_lines: bool, settings: LogSettings) -> Path:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "worker": {
                "()": f"{__name__}.stdlib_formatter",
                "json_lines": json_lines,
                "include_content": settings.include_content,
            }
        },
        "handlers": {
            "worker": {"class": "logging.StreamHandler", "formatter": "worker", "stream": stream}
        },
        "loggers": {
            "vllm": {
                "handlers": ["worker"],
                "level": library_level(settings, quiet=logging.INFO),
                "propagate": False,
            }
        },
    }
    path = Path(tempfile.gettempdir()) / f"{_VLLM_CONFIG_PREFIX}{os.getpid()}.json"
    path.write_bytes(orjson.dumps(config))
    return path


def content_field(settings: LogSettings, content: str | bytes | None) -> dict[str, str]:
    """``{"content": ...}`` for a log call when ``log.include_content`` allows it, else {}.

    Gated at the call as well as in the processors: a process that never configured logging
    (a library user, a test) must not print content either.
    """
    if not settings.include_content or content is None:
        return {}
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    return {"content": content[:CONTENT_LIMIT]}


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
