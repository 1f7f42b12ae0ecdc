"""The process around the pipeline: health endpoint and logs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section


class HealthSettings(Section):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    stall_after_s: float = Field(30.0, gt=0, description="/healthz fails when the loop stalls.")
    no_progress_after_s: float = Field(
        120.0,
        gt=0,
        description="/healthz fails when work waits and no verdict, dead letter or commit "
        "came for this long.",
    )


class LogSettings(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    include_content: bool = Field(False, description="Log content text (debugging only).")
