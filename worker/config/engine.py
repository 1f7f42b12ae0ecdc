"""The classifier engine, a union on ``kind`` (each kind takes only its own settings), and
the micro-batches that feed it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, SecretStr, Tag, field_validator

from .base import Section


class BatchSettings(Section):
    max_items: int = Field(64, ge=1, description="Largest micro-batch handed to the engine.")
    linger_ms: float = Field(10.0, ge=0, description="How long a partial batch waits to fill.")
    max_in_flight: int = Field(
        1024, ge=1, description="Events held at once; above it partitions are paused."
    )


class _Engine(Section):
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
        64,
        ge=1,
        description="Most prompts sent in one request. Prompts waiting at the same moment go "
        "together (a whole micro-batch at batch.max_items' default), which spares the server "
        "most of its per-request cost.",
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
