"""Where a model's files (tokenizer, config) come from, failing in seconds when they cannot.

``from_pretrained`` on a hub id with no network retries for about a minute before it fails.
Here, in order: a local directory is read with ``local_files_only`` (a path that does not
exist is an error at once, never a hub lookup); a hub id is looked up in the local cache
first; only then is the hub asked, after one quick connection test to its endpoint
(``HF_ENDPOINT``), so an unreachable hub is one clear error instead of a minute of retries.
With ``HF_HUB_OFFLINE=1`` the hub is never asked.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .errors import FatalError

T = TypeVar("T")
HUB = "https://huggingface.co"
PROBE_TIMEOUT_S = 5.0
_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class ModelFilesError(FatalError):
    """A model's files cannot be had; the message says why and what to set."""


def load_pretrained(loader: Callable[..., T], name: str) -> T:
    """``loader(name, ...)`` (a ``from_pretrained``) from a directory, the cache or the hub."""
    path = Path(name).expanduser()
    if path.exists():
        return loader(str(path), local_files_only=True)
    check_name(name)
    try:
        return loader(name, local_files_only=True)  # the hub cache, when it holds the files
    except Exception:  # not cached (transformers raises several kinds): ask the hub
        if offline():
            raise
    reason = hub_unreachable()
    if reason is not None:
        raise ModelFilesError(
            f"{name!r} is not in the local cache and the model hub {hub_endpoint()} cannot "
            f"be reached ({reason}); give a local directory, or fill the cache and set "
            "HF_HUB_OFFLINE=1"
        )
    return loader(name)


def check_name(name: str) -> None:
    """ModelFilesError at once for a name that can only be a directory and is not there
    (before anything slow is imported)."""
    if looks_like_path(name) and not Path(name).expanduser().exists():
        raise ModelFilesError(f"{name}: no such directory")


def looks_like_path(name: str) -> bool:
    """A name that can only be a directory (a hub id is 'name' or 'owner/name')."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name


def offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HUB).rstrip("/")


@functools.lru_cache(maxsize=4)
def _probe(endpoint: str) -> str | None:
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached, or None (also when a proxy decides: it is asked)."""
    if any(os.environ.get(name) for name in _PROXIES):
        return None
    return _probe(hub_endpoint())


def pretrained_config(name: str) -> Any:
    """The model's config (transformers' AutoConfig), or None when it cannot be had."""
    from transformers import AutoConfig

    try:
        return load_pretrained(AutoConfig.from_pretrained, name)
    except Exception:  # no config to read: callers fall back on other limits
        return None
