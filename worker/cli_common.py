"""What the commands share: their common options, their settings, and failing in one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from .config import ConfigError, Settings, load_settings

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (env WORKER_* wins).")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Model path or hub id (engine.model).")
]
TokenizerOpt = Annotated[
    str | None,
    typer.Option(
        help="Model directory (or hub id) whose tokenizer and context length to use; default "
        "engine.tokenizer, else engine.model. A directory works offline."
    ),
]
PoliciesOpt = Annotated[
    Path | None, typer.Option("--policies", help="Policy directory (policies.dir).")
]


def settings_for(
    config: Path | None,
    model: str | None = None,
    policies: Path | None = None,
    **sections: dict[str, Any],
) -> Settings:
    """The settings a command runs with; a bad setting ends it with one line (exit 2)."""
    overrides: dict[str, Any] = {k: v for k, v in sections.items() if v}
    if model:
        overrides.setdefault("engine", {})["model"] = model
    if policies:
        overrides.setdefault("policies", {})["dir"] = policies
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        die(str(exc))


def tool_settings(config: Path | None, model: str | None, policies: Path | None) -> Settings:
    """Settings for commands whose stdout is their result: their logs, vLLM's too, to stderr."""
    from .observability.telemetry import configure_logging

    settings = settings_for(config, model, policies)
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    configure_logging(settings.log, stream=sys.stderr)
    return settings


def die(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
