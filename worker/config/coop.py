"""Settings of the Coop adapter (``coop`` section; env ``WORKER_COOP__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class CoopSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="Coop's base URL; reports go to {url}/api/v1/report. Required."
    )
    api_key: SecretStr | None = Field(None, description="The organisation's Coop API key.")
    api_key_file: Path | None = Field(None, description="File holding the API key; wins.")
    public_key_file: Path | None = Field(
        None, description="PEM file of Coop's webhook signature verification key. Required."
    )
    item_type_id: str = Field("content", min_length=1, description="Coop Item Type of items.")
    reporter_type_id: str = Field("service", min_length=1, description="Reporter's Item Type.")
    reporter_id: str = Field("moderation-worker", min_length=1, description="Reporter's id.")
    policies: dict[str, str] = Field(
        default_factory=dict, description="Our policy id -> Coop policy id (default: the same)."
    )
    decisions: dict[str, Literal[0, 1]] = Field(
        default_factory=dict,
        description="Coop action id -> the decision it means (1: meets the policy, 0: not).",
    )
    host: str = Field("0.0.0.0", description="Webhook server address.")
    port: int = Field(8090, ge=0, le=65535, description="Webhook server port.")
    path: str = Field(
        "/coop/actions",
        pattern="^/",
        description="Path of the callback URL to set on each Coop Action.",
    )
    ignore_path: str = Field(
        "/coop/ignore",
        pattern="^/",
        description="Path of the Ignore Callback URL (Coop: Settings -> Review Console).",
    )
    group_id: str = Field("moderation-worker-coop", min_length=1, description="Consumer group.")
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of one report request.")

    def key(self) -> str | None:
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip()
        return self.api_key.get_secret_value() if self.api_key else None

    def coop_policy(self, policy: str) -> str:
        return self.policies.get(policy, policy)

    def our_policy(self, coop_policy: str) -> str | None:
        """Our policy id for a Coop policy id: mapped ones by their map, others as they are."""
        mapped = {coop: ours for ours, coop in self.policies.items()}
        if coop_policy in mapped:
            return mapped[coop_policy]
        return None if coop_policy in self.policies else coop_policy
