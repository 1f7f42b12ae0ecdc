"""The brokers and the topics: how the worker connects, and what it reads and writes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from .base import Section


class KafkaSettings(Section):
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


class TopicSettings(Section):
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
