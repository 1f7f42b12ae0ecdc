"""Logging: structlog, JSON lines by default, a console renderer on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from .config import LogSettings


def configure_logging(settings: LogSettings, stream: TextIO = sys.stdout) -> None:
    """Log lines go to ``stream``: stdout for the worker, stderr where stdout carries data."""
    json_lines = settings.format == "json" or (
        settings.format == "auto" and not sys.stderr.isatty()
    )
    renderer = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    level = logging.getLevelName(settings.level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aiokafka, vLLM) go through the standard library at WARNING and up.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)
