"""Worker settings: environment (``WORKER_*``, nested with ``__``) over an optional YAML file.

Every field is documented in this package because it is the configuration reference: the
README and the Helm chart's values mirror it, and the chart's schema is generated from it.
One module per section (``kafka``, ``engine``, ``routing``, ``scoring``, ``media``,
``service``, ``coop``), the root in ``settings``, the environment read strictly in ``env``,
and ``load`` turning every mistake into one line naming the field.
"""

from .base import ConfigError
from .coop import CoopSettings
from .engine import (
    ENGINE_KINDS,
    BatchSettings,
    EngineSettings,
    LocalEngineSettings,
    RemoteEngineSettings,
)
from .kafka import KafkaSettings, TopicSettings
from .load import load_settings
from .media import MediaSettings
from .routing import Band, RoutingSettings, env_spelling
from .scoring import CacheSettings, HashBankSettings, PolicySettings, ShadowSettings
from .service import HealthSettings, LogSettings
from .settings import Settings

__all__ = [
    "ENGINE_KINDS",
    "Band",
    "BatchSettings",
    "CacheSettings",
    "ConfigError",
    "CoopSettings",
    "EngineSettings",
    "HashBankSettings",
    "HealthSettings",
    "KafkaSettings",
    "LocalEngineSettings",
    "LogSettings",
    "MediaSettings",
    "PolicySettings",
    "RemoteEngineSettings",
    "RoutingSettings",
    "Settings",
    "ShadowSettings",
    "TopicSettings",
    "env_spelling",
    "load_settings",
]
