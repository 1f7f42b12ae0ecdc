"""What a score is made from besides the engine: policies, hash banks, the verdict cache
and shadow policies."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .base import Section


class PolicySettings(Section):
    dir: Path = Field(Path("policies"), description="Directory of policy Markdown files.")
    default: list[str] = Field(
        default_factory=list, description="Policies for events naming none; empty = all loaded."
    )
    watch: bool = Field(True, description="Reload policies when the directory changes.")


class CacheSettings(Section):
    """Scores of content seen before, so copies skip the engine (per worker process)."""

    enabled: bool = Field(True, description="Look scores up before the engine.")
    max_entries: int = Field(100_000, ge=1, description="Most scores held.")
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Most memory the held scores may take."
    )
    ttl_s: float = Field(3600.0, gt=0, description="How long a score is served after scoring.")


class HashBankSettings(Section):
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


class ShadowSettings(Section):
    """Draft policies scored beside production ones; their scores never decide a verdict."""

    pairs: dict[str, str] = Field(
        default_factory=dict,
        description="Shadow policy id -> production policy id, besides front matter shadow_of.",
    )
    sample: float = Field(
        1.0, ge=0, le=1, description="Share of events shadowed, chosen by a hash of the event id."
    )
