"""Settings loaded, or one ConfigError line naming every offending field and its
environment variable (with the nearest real name for a misspelt key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import nearest
from .base import ConfigError
from .engine import ENGINE_KINDS
from .env import EnvError
from .settings import Settings


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from env and an optional YAML file; raise ConfigError naming bad fields."""
    try:
        if config_file is not None:
            _check_yaml(config_file)
            cls = type("FileSettings", (Settings,), {})
            cls.model_config = {**Settings.model_config, "yaml_file": config_file}
            return cls(**overrides)
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except EnvError as exc:
        raise ConfigError(str(exc)) from None


def _check_yaml(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")


def _describe(exc: ValidationError) -> str:
    """One line naming every offending field (and its env variable)."""
    problems = []
    for err in exc.errors():
        loc, message = _engine_error(err["loc"], err["type"], err["msg"])
        parts = [str(part) for part in loc]
        field = ".".join(parts) or "(settings)"
        env = "WORKER_" + "__".join(p.upper() for p in parts) if parts else ""
        where = f"{field} (env {env})" if env else field
        if err["type"] == "extra_forbidden" and parts and "not of" not in message:
            message += nearest(parts[-1], _siblings(parts[:-1]))
        problems.append(f"{where}: {message}")
    return "invalid configuration: " + "; ".join(problems)


def _siblings(loc: list[str]) -> list[str]:
    """The field names of the section at ``loc`` (for a misspelt key's nearest match); the
    engine section offers every kind's names."""
    if loc == ["engine"]:
        return sorted({name for model in ENGINE_KINDS.values() for name in model.model_fields})
    model: Any = Settings
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _engine_error(loc: tuple[Any, ...], kind: str, msg: str) -> tuple[tuple[Any, ...], str]:
    """An engine error located at the setting as written: pydantic puts the engine's kind
    in the location (engine.remote.url), and says only "extra" of another kind's setting."""
    if loc[:1] != ("engine",):
        return loc, msg
    if kind == "engine_kind":
        return ("engine", "kind"), msg
    if len(loc) < 2 or loc[1] not in ENGINE_KINDS:
        return loc, msg
    engine, rest = str(loc[1]), loc[2:]
    if kind == "missing":
        msg = f"required when engine.kind is {engine}"
    if kind == "extra_forbidden" and len(rest) == 1:
        owners = [k for k, model in ENGINE_KINDS.items() if rest[0] in model.model_fields]
        if owners:
            msg = f"a setting of engine.kind {' or '.join(owners)}, not of {engine}"
    return ("engine", *rest), msg
