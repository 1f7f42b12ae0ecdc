"""What every settings section shares: unknown keys are refused, and one error type."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ..errors import FatalError


class ConfigError(FatalError):
    """Invalid configuration. The message names every offending field."""


class Section(BaseModel):
    """A section of the settings; a key it does not define is an error, never ignored."""

    model_config = ConfigDict(extra="forbid")
