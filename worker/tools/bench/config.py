"""What one benchmark run measures and on what: sizes, durations, model and engine options.

The config travels to each phase's subprocess as JSON, so every phase rebuilds exactly the
same workload from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ...config import LocalEngineSettings, Settings, load_settings

PHASES = (
    "engine",
    "worker",
    "remote",
    "diy",
    "naive",
    "overhead",
    "cache",
    "shadow",
    "policies",
    "reload",
    "cold",
    "hash",
    "images",
)
DEFAULT_PHASES = ("engine", "worker", "remote", "naive", "overhead")

# On a CPU engine, eager mode starts fast and runs small models faster; a 32-token block
# (the CPU attention's smallest) leaves at most 31 policy tokens outside the prefix cache.
CPU_ENGINE_ARGS: dict[str, Any] = {"enforce_eager": True, "block_size": 32}


@dataclass
class BenchConfig:
    model: str
    policy_dir: Path = Path("policies")
    max_model_len: int = 8192
    engine_args: dict[str, Any] = field(default_factory=dict)
    policy_tokens: int = 2000
    content_tokens: tuple[int, int] = (50, 400)
    policies_per_event: int = 1
    events: int = 600
    warmup_events: int = 100
    levels: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)  # fractions of the saturated rate
    level_rates: tuple[float, ...] = ()  # and fixed rates, items per second
    level_seconds: float = 20.0
    level_warmup_seconds: float = 3.0
    overhead_events: int = 5000
    partitions: int = 3
    # How long the systems' consumers let a broker hold an empty fetch. The embedded broker
    # holds it that long even when records arrive; Apache Kafka answers at once.
    fetch_max_wait_ms: int = 500
    batch: dict[str, Any] = field(default_factory=dict)
    phases: tuple[str, ...] = DEFAULT_PHASES
    # The cache phase: share of events whose content copies an earlier one (Zipf-drawn).
    duplicate_share: float = 0.3
    # The hash phase: share of events whose text the hash banks hold.
    known_share: float = 0.3
    # Share of events the draft policy shadows in the worker systems (0 = no shadow work).
    shadow_sample: float = 0.0
    # The policies phase: how many distinct policies, one run each, and their lengths in
    # words (about a token each on the test model), drawn log-uniformly.
    policy_counts: tuple[int, ...] = (1, 10, 100, 1000, 10000)
    many_policy_words: tuple[int, int] = (50, 2900)
    # The DIY peer's bounds on events in flight, one run each.
    diy_in_flight: tuple[int, ...] = (64, 128, 256)
    # The images phase: events of one image each, the images' side in pixels, and how many
    # fetches and decodes of a photo-like JPEG of that side measure their CPU cost.
    image_events: int = 300
    image_size: int = 1024
    image_cost_runs: int = 50
    seed: int = 7
    wait_timeout_s: float = 600.0
    workdir: Path = Path(".cache/bench")

    def __post_init__(self) -> None:
        low, high = self.content_tokens
        if not 1 <= low <= high:
            raise ValueError(f"content tokens {low}:{high} must satisfy 1 <= min <= max")
        if self.warmup_events >= self.events:
            raise ValueError("warm-up events must be fewer than events")
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown:
            raise ValueError(f"unknown phase(s) {unknown}; choose from {list(PHASES)}")
        if any(not 0 < f <= 2 for f in self.levels):
            raise ValueError("load levels are fractions of the measured maximum, in (0, 2]")
        if any(r <= 0 for r in self.level_rates):
            raise ValueError("fixed load levels must be positive rates")
        if not 0 <= self.duplicate_share < 1:
            raise ValueError("the duplicate share must be in [0, 1)")
        if not self.diy_in_flight or min(self.diy_in_flight) < 1:
            raise ValueError("the DIY peer's in-flight bounds must be positive")
        if self.image_events < 10 or self.image_size < 32 or self.image_cost_runs < 1:
            raise ValueError("images: at least 10 events, 32 pixels a side and one cost run")
        if not 0 <= self.shadow_sample <= 1:
            raise ValueError("the shadow sample must be in [0, 1]")
        if not 0 < self.known_share <= 1:
            raise ValueError("the known share must be in (0, 1]")

    # ---- settings the systems under test run with ----------------------------------------

    def engine_settings(self) -> LocalEngineSettings:
        """Known engine settings go there; the rest pass through as vLLM arguments."""
        fixed = {"kind", "extra_args", "model", "max_model_len"}
        known = set(LocalEngineSettings.model_fields) - fixed
        direct = {k: v for k, v in self.engine_args.items() if k in known}
        extra = {k: v for k, v in self.engine_args.items() if k not in known}
        return LocalEngineSettings(
            model=self.model, max_model_len=self.max_model_len, extra_args=extra, **direct
        )

    def worker_settings(
        self,
        bootstrap: str,
        topics: dict[str, str],
        group: str,
        changes: dict[str, Any] | None = None,
    ) -> Settings:
        sections: dict[str, Any] = dict(
            kafka={
                "bootstrap_servers": bootstrap,
                "enable_idempotence": False,  # the embedded broker refuses it
                "group_id": group,
                # The group timing of the plain aiokafka consumers it is compared with.
                "session_timeout_ms": 10_000,
                "heartbeat_interval_ms": 3_000,
                "fetch_max_wait_ms": self.fetch_max_wait_ms,
            },
            topics={**topics, "create": False},
            engine=self.engine_settings().model_dump(),
            policies={"dir": str(self.policies_dir), "watch": False},
            health={"enabled": False},
            log={"level": "WARNING"},
            batch=self.batch,
            shadow={"sample": self.shadow_sample},
        )
        for section, values in (changes or {}).items():  # a run's changes win, field by field
            sections[section] = {**sections.get(section, {}), **values}
        return load_settings(**sections)

    @property
    def policies_dir(self) -> Path:
        """Where the fitted benchmark policies are written (see workload.py)."""
        return self.workdir / "policies"

    # ---- JSON round trip for subprocesses --------------------------------------------------

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, raw: bytes) -> BenchConfig:
        data = orjson.loads(raw)
        data["policy_dir"] = Path(data["policy_dir"])
        data["workdir"] = Path(data["workdir"])
        data["content_tokens"] = tuple(data["content_tokens"])
        data["levels"] = tuple(data["levels"])
        data["level_rates"] = tuple(data["level_rates"])
        data["phases"] = tuple(data["phases"])
        data["diy_in_flight"] = tuple(data["diy_in_flight"])
        data["policy_counts"] = tuple(data["policy_counts"])
        data["many_policy_words"] = tuple(data["many_policy_words"])
        return cls(**data)
