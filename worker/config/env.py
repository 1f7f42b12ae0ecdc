"""Settings from the environment, held to the same standard as the YAML file.

pydantic-settings ignores variables that name no setting and takes lists and mappings only
as JSON. Here every ``WORKER_*`` variable must name a setting (a typo such as
``WORKER_ENGNIE__MAX_MODEL_LEN`` or ``WORKER_KAFKA_BOOTSTRAP_SERVERS``, one underscore short,
stops start-up naming the nearest real one), and lists and mappings also take a plain form:

- a list: ``a,b`` (``WORKER_POLICIES__DEFAULT=hate-speech,spam``);
- a mapping of plain values: ``key:value,key:value`` (``WORKER_SHADOW__PAIRS=draft:spam``,
  ``WORKER_ENGINE__EXTRA_ARGS=enforce_eager:true,block_size:32``; values are read as YAML
  scalars where the setting takes any type);
- anything else (a mapping of sections, such as ``routing.policies``) takes JSON only.

A value that fits neither form is a ConfigError naming the variable. Kubernetes' service-link
variables (``WORKER_SERVICE_HOST``, ``WORKER_PORT_8080_TCP``, for a Service named ``worker``)
are left alone: they are never settings.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_settings import EnvSettingsSource

from ..errors import FatalError, nearest

PREFIX = "WORKER_"
_SERVICE_LINK = re.compile(
    r"^WORKER_(?:SERVICE_HOST|SERVICE_PORT(?:_\w+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_\w+)?)?)$"
)
ANY_KEY = "<KEY>"  # a mapping's key in a path: any name


class EnvError(FatalError):
    """A WORKER_* variable that names no setting or whose value cannot be read."""


class StrictEnvSource(EnvSettingsSource):
    """The environment source: unknown WORKER_* refused, plain lists and mappings read."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        loaded = dict(super()._load_env_vars())
        model = typing.cast(type[BaseModel], self.settings_cls)
        for name, value in list(loaded.items()):
            if not name.upper().startswith(PREFIX) or value is None:
                continue
            annotation = env_target(model, name)
            loaded[name] = plain_to_json(name.upper(), value, annotation)
        return loaded


def env_target(model: type[BaseModel], name: str) -> Any:
    """The annotation a WORKER_* variable sets; EnvError naming the nearest real setting."""
    upper = name.upper()
    if _SERVICE_LINK.match(upper):
        return str
    annotation: Any = model
    for part in upper[len(PREFIX) :].split("__"):
        annotation = _step(annotation, part.lower())
        if annotation is None:
            known = sorted(env_names(model))
            pattern = [k.replace(ANY_KEY, "X") for k in known]
            hint = nearest(upper, pattern) or f" (settings are {PREFIX}<SECTION>__<FIELD>)"
            raise EnvError(f"environment variable {upper} names no setting{hint}")
    return annotation


def _step(annotation: Any, part: str) -> Any:
    """The annotation one path segment down, or None when there is no such field."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(part)
            if field is not None:
                return field.annotation
        elif typing.get_origin(member) in (dict, Mapping) and part:
            return typing.get_args(member)[1] if typing.get_args(member) else Any
    return None


def _members(annotation: Any) -> list[Any]:
    """The types an annotation may hold: Optional, unions and Annotated unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def env_names(model: type[BaseModel], prefix: str = PREFIX) -> Iterator[str]:
    """Every variable name that reaches a setting (a mapping's keys as <KEY>)."""
    for member in _members(model):
        if isinstance(member, type) and issubclass(member, BaseModel):
            for field_name, field in member.model_fields.items():
                name = f"{prefix}{field_name.upper()}"
                yield name
                yield from env_names(field.annotation, f"{name}__")
        elif typing.get_origin(member) in (dict, Mapping) and typing.get_args(member):
            yield from env_names(typing.get_args(member)[1], f"{prefix}{ANY_KEY}__")


def plain_to_json(name: str, value: str, annotation: Any) -> str:
    """The value as JSON when the setting is a list or mapping given in the plain form."""
    kind, item = _container(annotation)
    if kind is None or _is_json(value):
        return value
    if kind == "list":
        return json.dumps([part.strip() for part in value.split(",") if part.strip()])
    if kind == "dict" and item is not None:
        return json.dumps(_pairs(name, value, item))
    example = (
        f"; or one variable per value, such as {name}__HATE_SPEECH__THRESHOLD=0.7"
        if name.endswith("ROUTING__POLICIES")
        else ""
    )
    raise EnvError(f"{name} must be a JSON object, got {value[:60]!r}{example}")


def _container(annotation: Any) -> tuple[str | None, Any]:
    """('list', item) / ('dict', plain value type or None) / (None, None) for scalars."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        args = typing.get_args(member)
        if origin in (list, tuple, set, frozenset):
            return "list", args[0] if args else Any
        if origin in (dict, Mapping):
            value_type = args[1] if args else Any
            plain = value_type is Any or value_type in (str, int, float, bool)
            return "dict", value_type if plain else None
        if isinstance(member, type) and issubclass(member, BaseModel):
            return "dict", None
    return None, None


def _pairs(name: str, value: str, item: Any) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        key, colon, raw = part.partition(":")
        if not colon or not key.strip():
            raise EnvError(
                f"{name}: {part!r} is not key:value; write {name}='key:value,key:value' "
                "or a JSON object"
            )
        pairs[key.strip()] = yaml.safe_load(raw.strip()) if item is Any else raw.strip()
    return pairs


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True
