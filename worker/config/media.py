"""Images and video on events: where they may be fetched from, and every bound."""

from __future__ import annotations

from pydantic import Field

from .base import Section


class MediaSettings(Section):
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
    max_side: int = Field(
        1536,
        ge=64,
        description="Frames larger than this on their longer side are scaled down to it (after "
        "hashing) before they reach the engine: vision processors resize to under a thousand "
        "pixels anyway, and full-size frames cost memory, CPU and, to remote servers, bytes.",
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
