"""Media on golden rows: what a row's ``media`` list may hold, and how it reaches the model.

A row may carry ``media``: a list of ``{"type": "image" | "video", "path" | "url": ...}``
(an optional ``mime``). A ``path`` is a file, relative to the dataset file's folder (or
absolute); a ``url`` is fetched by the worker's guarded fetcher under the ``media``
settings (allowed schemes and hosts, address checks, size limits), exactly as events'
URLs are. Files are read when their batch is scored, then handed to the same media step as
inline data, so both go through the worker's limits and decoders. A file that is missing
when the sample is read makes its row bad; one that fails later (too large, corrupt, a
refused URL) makes it a failure named with its rule, like a dead letter.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...media.refs import MediaRef

KINDS = ("image", "video")


@dataclass(frozen=True)
class MediaSpec:
    """One media item of a row: a file (``path``) or a ``url``."""

    type: str
    path: Path | None = None
    url: str | None = None
    mime: str | None = None

    def ref(self) -> MediaRef:
        """The item as an event would carry it: its file's bytes inline, or its URL."""
        if self.path is None:
            return MediaRef(type=self.type, url=self.url, mime=self.mime)  # type: ignore[arg-type]
        data = base64.b64encode(self.path.read_bytes()).decode()
        return MediaRef(type=self.type, data=data, mime=self.mime)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"[{self.type}: {self.url or (self.path.name if self.path else '')}]"


def parse_media(value: Any, base: Path | None) -> tuple[tuple[MediaSpec, ...], list[str]]:
    """A row's ``media`` field as specs, or the problems with it (files must exist)."""
    if not isinstance(value, list) or not value:
        return (), ["media must be a non-empty list of objects"]
    specs, problems = [], []
    for n, item in enumerate(value):
        spec, problem = _one(item, base)
        if problem:
            problems.append(f"media[{n}]: {problem}")
        elif spec is not None:
            specs.append(spec)
    return tuple(specs), problems


def _one(item: Any, base: Path | None) -> tuple[MediaSpec | None, str | None]:
    if not isinstance(item, dict):
        return None, "must be an object"
    unknown = set(item) - {"type", "path", "url", "mime"}
    if unknown:
        return None, f"unknown field(s): {', '.join(sorted(unknown))}"
    if item.get("type") not in KINDS:
        return None, f"type must be one of {', '.join(KINDS)}"
    sources = [key for key in ("path", "url") if key in item]
    if len(sources) != 1 or not isinstance(item[sources[0]], str) or not item[sources[0]]:
        return None, "give exactly one of path and url, a non-empty string"
    mime = item.get("mime")
    if mime is not None and not isinstance(mime, str):
        return None, "mime must be a string"
    if "url" in item:
        return MediaSpec(item["type"], url=item["url"], mime=mime), None
    path = Path(item["path"])
    path = path if path.is_absolute() or base is None else base / path
    if not path.is_file():
        return None, f"no such file: {path}"
    return MediaSpec(item["type"], path=path, mime=mime), None
