"""Worker settings: environment (``WORKER_*``, nested with ``__``) over an optional YAML file.

Every field is documented here (the Coop adapter's section in coop_settings.py) because this
is the configuration reference: the README and the Helm chart's values mirror it. The engine
section is a union on ``kind``: each kind's class takes only its own settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from .coop_settings import CoopSettings
from .errors import FatalError, nearest
from .settings_env import EnvError, StrictEnvSource


class ConfigError(FatalError):
    """Invalid configuration. The message names every offending field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(
        "localhost:9092", min_length=1, description="Comma-separated host:port list."
    )
    group_id: str = Field("moderation-worker", min_length=1, description="Consumer group id.")
    client_id: str = Field("moderation-worker", min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (a mounted Secret); wins over the value."
    )
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    enable_idempotence: bool = Field(
        True, description="Idempotent producer. Turn off only for brokers that reject it."
    )
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(45_000, ge=1_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1_000)
    max_poll_records: int = Field(500, ge=1)
    request_timeout_ms: int = Field(40_000, ge=1_000)
    max_request_size: int = Field(1_048_576, ge=1_024, description="Largest record we produce.")
    linger_ms: int = Field(5, ge=0, description="Producer linger, for output batching.")
    fetch_max_bytes: int = Field(
        16_777_216, ge=1_024, description="Most bytes one fetch may buffer (all partitions)."
    )
    max_partition_fetch_bytes: int = Field(
        1_048_576, ge=1_024, description="Most bytes one fetch may buffer per partition."
    )
    fetch_max_wait_ms: int = Field(
        500,
        ge=0,
        description="Longest a broker may hold a fetch while waiting for records. Apache "
        "Kafka answers when records arrive; brokers that wait out the full time add it to "
        "latency at low load.",
    )
    connect_retry_s: float = Field(
        300.0,
        ge=0,
        description="How long to keep retrying brokers that cannot be reached (at start-up "
        "and when publishing) before exiting non-zero; 0 = give up at once.",
    )
    connect_backoff_max_s: float = Field(
        10.0, gt=0, description="Longest wait between two attempts to reach the brokers."
    )

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise ValueError("sasl_mechanism is required when security_protocol is SASL_*")
            if not self.sasl_username:
                raise ValueError("sasl_username is required when security_protocol is SASL_*")
            if self.sasl_password is None and self.sasl_password_file is None:
                raise ValueError("sasl_password or sasl_password_file is required for SASL")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile must be set together")
        return self

    def password(self) -> str | None:
        if self.sasl_password_file is not None:
            return self.sasl_password_file.read_text().strip()
        return self.sasl_password.get_secret_value() if self.sasl_password else None


class TopicSettings(_Section):
    content: str = Field("content", min_length=1, description="Topic the worker consumes.")
    results: str = Field("verdicts", min_length=1, description="Every verdict goes here.")
    review: str = Field(
        "review", min_length=1, description="Uncertain verdicts and audit copies also go here."
    )
    decisions: str = Field(
        "decisions", min_length=1, description="What reviewers decided (docs/review-loop.md)."
    )
    dead_letter: str = Field("dead-letter", min_length=1, description="Events that failed.")
    shadow: str = Field(
        "shadow-verdicts", min_length=1, description="Shadow policies' scores (never verdicts)."
    )
    create: bool = Field(False, description="Create missing topics at start-up.")
    partitions: int = Field(6, ge=1, description="Partitions for topics the worker creates.")
    replication_factor: int = Field(1, ge=1, description="Replication for created topics.")


class BatchSettings(_Section):
    max_items: int = Field(64, ge=1, description="Largest micro-batch handed to the engine.")
    linger_ms: float = Field(10.0, ge=0, description="How long a partial batch waits to fill.")
    max_in_flight: int = Field(
        1024, ge=1, description="Events held at once; above it partitions are paused."
    )


class _Engine(_Section):
    """What every engine takes, whichever ``kind`` it is."""

    kind: Literal["local", "remote"]
    model: str = Field("zentropi-ai/cope-b-a4b", min_length=1, description="Model path or hub id.")
    tokenizer: str | None = None
    served_model_name: str | None = Field(
        None, description="Name written into verdicts; for remote, the name the server serves."
    )
    max_model_len: int | None = Field(None, ge=64)
    overlong: Literal["truncate", "dead_letter"] = Field(
        "dead_letter", description="What to do with content that does not fit max_model_len."
    )
    max_retries: int = Field(2, ge=0, description="Retries of a failed engine request.")


class LocalEngineSettings(_Engine):
    """vLLM in this process; the options below pass through to vLLM's engine arguments."""

    kind: Literal["local"] = Field("local", description="local (default): vLLM in this process.")
    dtype: str = "auto"
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=64)
    tensor_parallel_size: int = Field(1, ge=1)
    quantization: str | None = None
    load_format: str = "auto"
    seed: int = 0
    extra_args: dict[str, Any] = Field(
        default_factory=dict, description="Any further vLLM AsyncEngineArgs, passed verbatim."
    )


class RemoteEngineSettings(_Engine):
    """A vLLM fleet's OpenAI-compatible servers. Only the tokenizer is loaded here (from
    ``tokenizer``, else ``model``); the servers must serve ``served_model_name`` (else
    ``model``) under that name."""

    kind: Literal["remote"] = Field(description="remote: vLLM OpenAI-compatible servers.")
    url: str = Field(
        description="Comma-separated base URLs of vLLM OpenAI-compatible servers "
        "(e.g. http://vllm:8000); requests are spread over them.",
    )
    api_key: SecretStr | None = Field(None, description="Bearer token for the servers.")
    api_key_file: Path | None = Field(
        None, description="File holding the API key (a mounted Secret); wins over api_key."
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for one answer before it counts as failed."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Longest wait to connect.")
    max_concurrency: int = Field(
        256, ge=1, description="Prompts in flight at once (the servers batch them)."
    )
    prompts_per_request: int = Field(
        16,
        ge=1,
        description="Most prompts sent in one request. Prompts waiting at the same moment go "
        "together, which spares the server most of its per-request cost.",
    )
    connect_retry_s: float = Field(
        30.0,
        ge=0,
        description="How long start-up keeps retrying servers that cannot be reached before "
        "exiting. Once running, a server that goes down is waited for without limit.",
    )
    backoff_max_s: float = Field(
        10.0, gt=0, description="Longest wait between two attempts to reach a server."
    )

    @field_validator("url")
    @classmethod
    def _names_a_server(cls, url: str) -> str:
        if not url.replace(",", "").strip():
            raise ValueError("url must name at least one server")
        return url

    def urls(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.url.split(",") if u.strip()]

    def key(self) -> str | None:
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip()
        return self.api_key.get_secret_value() if self.api_key else None


ENGINE_KINDS: dict[str, type[_Engine]] = {
    "local": LocalEngineSettings,
    "remote": RemoteEngineSettings,
}


def _engine_kind(value: Any) -> Any:
    return value.get("kind", "local") if isinstance(value, dict) else getattr(value, "kind", None)


# The classifier engine, by ``kind``: vLLM in this process (the default) or a vLLM fleet.
# Each kind takes only its own settings: another kind's is refused by name.
EngineSettings = Annotated[
    Annotated[LocalEngineSettings, Tag("local")] | Annotated[RemoteEngineSettings, Tag("remote")],
    Discriminator(
        _engine_kind,
        custom_error_type="engine_kind",
        custom_error_message="kind must be 'local' or 'remote'",
    ),
]


class Band(_Section):
    """Scores in [review_low, review_high) are uncertain and go to review as well."""

    threshold: float | None = Field(None, ge=0, le=1, description="Label is 1 when score >= this.")
    review_low: float | None = Field(None, ge=0, le=1)
    review_high: float | None = Field(None, ge=0, le=1)
    audit_label_1: float | None = Field(None, ge=0, le=1, description="Audit share, label 1.")
    audit_label_0: float | None = Field(None, ge=0, le=1, description="Audit share, label 0.")

    @model_validator(mode="after")
    def _band_is_ordered(self) -> Band:
        if None not in (self.review_low, self.review_high) and self.review_low > self.review_high:
            raise ValueError("review_low must not exceed review_high")
        return self


def env_spelling(policy_id: str) -> str:
    """How an id is written inside an environment variable's name."""
    return policy_id.replace("-", "_").replace(".", "_")


class RoutingSettings(_Section):
    threshold: float = Field(0.5, ge=0, le=1, description="Label is 1 when P('1') >= this.")
    review_low: float = Field(0.2, ge=0, le=1, description="Lower edge of the review band.")
    review_high: float = Field(0.8, ge=0, le=1, description="Upper edge (exclusive).")
    # Audit copies: a share of the automatically decided items also goes to review, so that
    # reviewers' decisions can estimate the precision and recall of automatic decisions.
    audit_label_1: float = Field(
        0.0, ge=0, le=1, description="Share of automatic label-1 decisions copied to review."
    )
    audit_label_0: float = Field(
        0.0, ge=0, le=1, description="Share of automatic label-0 decisions copied to review."
    )
    policies: dict[str, Band] = Field(
        default_factory=dict, description="Per-policy overrides; win over policy front matter."
    )

    def override(self, policy_id: str) -> Band | None:
        """The per-policy override for an id, also under the id's env spelling (its '-' and
        '.' as '_': WORKER_ROUTING__POLICIES__HATE_SPEECH__THRESHOLD reaches hate-speech);
        the exact id wins."""
        exact = self.policies.get(policy_id)
        return exact if exact is not None else self.policies.get(env_spelling(policy_id))

    @model_validator(mode="after")
    def _band_is_ordered(self) -> RoutingSettings:
        if self.review_low > self.review_high:
            raise ValueError("review_low must not exceed review_high")
        return self


class PolicySettings(_Section):
    dir: Path = Field(Path("policies"), description="Directory of policy Markdown files.")
    default: list[str] = Field(
        default_factory=list, description="Policies for events naming none; empty = all loaded."
    )
    watch: bool = Field(True, description="Reload policies when the directory changes.")


class CacheSettings(_Section):
    """Scores of content seen before, so copies skip the engine (per worker process)."""

    enabled: bool = Field(True, description="Look scores up before the engine.")
    max_entries: int = Field(100_000, ge=1, description="Most scores held.")
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Most memory the held scores may take."
    )
    ttl_s: float = Field(3600.0, gt=0, description="How long a score is served after scoring.")


class HashBankSettings(_Section):
    """Banks of known content (docs/hash-banks.md), matched before the cache and the model."""

    dir: Path | None = Field(
        None, description="Directory of bank files (a ConfigMap or volume); unset: no banks."
    )
    watch: bool = Field(True, description="Reload the banks when the directory changes.")
    pdq_distance: int = Field(
        31,
        ge=0,
        le=63,
        description="Largest Hamming distance (of 256 bits) at which two PDQ hashes match; "
        "31 is PDQ's confident-match threshold.",
    )


class ShadowSettings(_Section):
    """Draft policies scored beside production ones; their scores never decide a verdict."""

    pairs: dict[str, str] = Field(
        default_factory=dict,
        description="Shadow policy id -> production policy id, besides front matter shadow_of.",
    )
    sample: float = Field(
        1.0, ge=0, le=1, description="Share of events shadowed, chosen by a hash of the event id."
    )


class MediaSettings(_Section):
    """Images and video on events (``media``): where they may come from and how big.

    URLs come from users' posts: only the schemes and host patterns listed here are fetched,
    and never from loopback, private, link-local or metadata addresses unless allowed below.
    """

    enabled: bool = Field(True, description="Accept events carrying media.")
    allowed_schemes: list[str] = Field(
        default_factory=lambda: ["https"], description="URL schemes fetched."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host patterns fetched (fnmatch, e.g. 'cdn.example.com', '*.cdn.example.com'); "
        "empty: no URL is fetched, inline data only.",
    )
    allow_loopback: bool = Field(False, description="Fetch from 127.0.0.0/8 and ::1 (tests only).")
    allow_private: bool = Field(
        False, description="Fetch from private, link-local and metadata addresses."
    )
    max_items: int = Field(4, ge=1, le=64, description="Most media items on one event.")
    max_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest media item, fetched or inline."
    )
    max_event_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Most media bytes on one event, all items."
    )
    max_pixels: int = Field(
        40_000_000, ge=1, description="Largest image or video frame (width x height): bombs stop."
    )
    max_video_s: float = Field(300.0, gt=0, description="Longest video accepted, in seconds.")
    max_frames: int = Field(
        8, ge=1, le=32, description="Frames sampled from a video or animated image."
    )
    max_redirects: int = Field(3, ge=0, description="Redirects followed, each checked again.")
    connect_timeout_s: float = Field(3.0, gt=0, description="Longest wait to connect.")
    read_timeout_s: float = Field(10.0, gt=0, description="Longest wait between two reads.")
    fetch_timeout_s: float = Field(30.0, gt=0, description="Longest one fetch may take.")
    fetch_retries: int = Field(
        2, ge=0, description="Retries of a fetch failing transiently (timeouts, 5xx)."
    )
    max_concurrency: int = Field(16, ge=1, description="Fetches at once.")
    decode_threads: int = Field(2, ge=1, description="Threads decoding media.")
    max_in_flight_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Media bytes held at once; above it partitions are paused.",
    )


class HealthSettings(_Section):
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


class LogSettings(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    include_content: bool = Field(False, description="Log content text (debugging only).")


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
        # environment is read strictly: see settings_env.py.
        return (
            init_settings,
            StrictEnvSource(settings_cls),
            YamlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )


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
