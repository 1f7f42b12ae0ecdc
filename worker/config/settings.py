"""The settings root: every section, and where values come from (arguments, then the
environment, then the YAML file)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from .coop import CoopSettings
from .engine import BatchSettings, EngineSettings, LocalEngineSettings
from .env import StrictEnvSource
from .kafka import KafkaSettings, TopicSettings
from .media import MediaSettings
from .routing import RoutingSettings
from .scoring import CacheSettings, HashBankSettings, PolicySettings, ShadowSettings
from .service import HealthSettings, LogSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WORKER_", env_nested_delimiter="__", extra="forbid", yaml_file=None
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    engine: EngineSettings = Field(default_factory=LocalEngineSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    policies: PolicySettings = Field(default_factory=PolicySettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    banks: HashBankSettings = Field(default_factory=HashBankSettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    coop: CoopSettings = Field(default_factory=CoopSettings)  # the Coop adapter's settings
    drain_deadline_s: float = Field(
        30.0, gt=0, description="On SIGTERM, how long in-flight work may take to finish."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then environment, then the YAML file. The
        # environment is read strictly: see env.py.
        return (
            init_settings,
            StrictEnvSource(settings_cls),
            YamlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )
