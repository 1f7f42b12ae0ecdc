"""What an event's ``media`` field holds, what a fetched item becomes, and how either fails.

A ``MediaRef`` names one image or video by URL or carries it inline (base64). A
``FetchedMedia`` holds the item's bytes as received, their sha256 (the verdict cache keys
on it), the frames decoded from them and the hash banks' signals computed beside decoding.
Failures are ``MediaRejected`` (permanent: the rule that refused the item is in the reason)
or ``MediaUnavailable`` (transient: retried, then dead-lettered under that name).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, StrictStr, model_validator

from ..errors import DeadLetterKind, Rejected, TransientError

if TYPE_CHECKING:
    from ..hashbanks.signals import MediaSignals

MediaKind = Literal["image", "video"]


class MediaRejected(Rejected):
    """An item that can never be classified; ``rule`` names the limit or check it failed."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(DeadLetterKind.MEDIA_REJECTED, f"{rule}: {reason}")
        self.rule = rule
        self.detail = reason


class MediaUnavailable(TransientError):
    """A fetch that failed in a way that may pass (timeout, 5xx, connection reset)."""

    def __init__(self, cause: str, reason: str) -> None:
        super().__init__(f"{cause}: {reason}")
        self.cause = cause


class MediaRef(BaseModel):
    """One item of an event's ``media`` list: ``url`` or ``data`` (base64), not both."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: MediaKind
    url: StrictStr | None = None
    data: StrictStr | None = None
    mime: StrictStr | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MediaRef:
        if (self.url is None) == (self.data is None):
            raise ValueError("give exactly one of url and data")
        return self

    def where(self, index: int) -> str:
        """How verdicts and dead letters name the item: its URL, else its index."""
        return self.url if self.url is not None else f"media[{index}]"


def inline_bytes(ref: MediaRef, max_bytes: int) -> bytes:
    """The inline item's bytes, refusing oversized data before decoding it."""
    assert ref.data is not None
    if len(ref.data) * 3 // 4 > max_bytes + 3:
        raise MediaRejected("too_large", f"inline data is over {max_bytes} bytes")
    try:
        data = base64.b64decode(ref.data, validate=True)
    except (binascii.Error, ValueError):
        raise MediaRejected("bad_base64", "inline data is not valid base64") from None
    if len(data) > max_bytes:
        raise MediaRejected("too_large", f"inline data is {len(data)} bytes, over {max_bytes}")
    return data


@dataclass(frozen=True, eq=False)
class FetchedMedia:
    """One item ready to classify: bytes as received, their hash, and its frames.

    ``frames`` are RGB ``PIL.Image`` objects: one for a still image, several sampled
    evenly for a video or an animated image.
    """

    kind: MediaKind
    where: str  # the URL, or media[i] for inline data
    data: bytes
    sha256: str
    mime: str | None = None
    frames: tuple[Any, ...] = field(default=(), repr=False)
    width: int = 0
    height: int = 0
    duration_s: float | None = None
    # The signals the hash banks match (PDQ, video digests), computed in the decode pool
    # for the signal types the banks hold then; None when no bank held any.
    signals: MediaSignals | None = field(default=None, repr=False)

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()
