"""Signal types: what a bank entry holds, and the same signal computed from content.

The names and hash strings are python-threatexchange's (``SignalType.get_name()``), so a
list exported by its CLI or by HMA loads as it is; each entry is validated and normalized
by the library's own ``validate_signal_str``. Two text types are ours: ``raw_text`` entries
(the library's name for exact text) and ``text_sha256`` entries both match the content after
the prompt's own normalization (``prompts.neutralize_markers``), compared as a sha256, so a
bank can hold the hashes of text it must not keep. Pure functions; images are decoded with
Pillow and hashed with pdqhash, the reference PDQ implementation. ``media_signals`` computes
a fetched item's signals (only the types some bank holds) in the media step's decode pool,
so matching an item on the event loop is lookups only.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError
from threatexchange import common
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.pdq_utils import PDQ_CONFIDENT_MATCH_THRESHOLD
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.raw_text import RawTextSignal
from threatexchange.signal_type.sha256 import VideoSHA256Signal
from threatexchange.signal_type.url import URLSignal
from threatexchange.signal_type.url_md5 import UrlMD5Signal

from ..prompts import neutralize_markers

PDQ = PdqSignal.get_name()  # "pdq"
VIDEO_MD5 = VideoMD5Signal.get_name()  # "video_md5"
VIDEO_SHA256 = VideoSHA256Signal.get_name()  # "video_sha256"
RAW_TEXT = RawTextSignal.get_name()  # "raw_text"
URL = URLSignal.get_name()  # "url"
URL_MD5 = UrlMD5Signal.get_name()  # "url_md5"
TEXT_SHA256 = "text_sha256"  # ours: sha256 of the normalized text, in hex

DEFAULT_PDQ_DISTANCE = PDQ_CONFIDENT_MATCH_THRESHOLD  # 31 of 256 bits
# Below this quality (the library's) a PDQ hash says little about the picture (flat or tiny
# images): such an image is not looked up rather than matched by chance.
PDQ_MIN_QUALITY = PdqSignal.QUALITY_THRESHOLD

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# A URL named in text: a scheme, then anything up to whitespace or a quote or bracket.
_URL_IN_TEXT = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}"


class SignalError(ValueError):
    """An entry that is not a valid signal of its type; the message says why."""


def text_key(content: str) -> str:
    """The text signal of a content: sha256 of what the prompt would carry, in hex."""
    data = neutralize_markers(content).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def url_key(url: str) -> str:
    """A URL as banks compare it: the library's normalization (lowercase, no scheme)."""
    return common.normalize_url(url).decode("utf-8", "surrogatepass")


def urls_in(content: str) -> list[str]:
    """The http(s) URLs named in a text, trailing punctuation left out, in order, once each."""
    found = (m.group(0).rstrip(_URL_TRAILING) for m in _URL_IN_TEXT.finditer(content))
    return list(dict.fromkeys(url for url in found if not url.endswith("://")))


def _validated_text_sha256(value: str) -> str:
    normalized = value.strip().lower()
    if not _SHA256_HEX.match(normalized):
        raise SignalError(f"{value[:80]!r} is not a sha256 in hex (64 hex digits)")
    return normalized


def _library(validate: Callable[[str], str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            return validate(value.strip())
        except ValueError as exc:
            message = str(exc)
            shown = value.strip()[:80]
            raise SignalError(message if shown in message else f"{message}: {shown!r}") from None

    return check


def _url_entry(value: str) -> str:
    url = value.strip()
    if not url:
        raise SignalError("empty URL")
    return url_key(url)


def _text_entry(value: str) -> str:
    if not value.strip():
        raise SignalError("empty text")
    return text_key(value)


# How each supported type's entry becomes the key it is looked up by. Text and URL entries
# become the keys the content is turned into (text_key, url_key, md5 of url_key).
ENTRY_KEYS: dict[str, Callable[[str], str]] = {
    PDQ: _library(PdqSignal.validate_signal_str),
    VIDEO_MD5: _library(VideoMD5Signal.validate_signal_str),
    VIDEO_SHA256: _library(VideoSHA256Signal.validate_signal_str),
    RAW_TEXT: _text_entry,
    TEXT_SHA256: _validated_text_sha256,
    URL: _url_entry,
    URL_MD5: _library(lambda v: VideoMD5Signal.validate_signal_str(v)),  # 32 hex digits
}
# Types whose entries are looked up as text signals (the content's text_key).
TEXT_TYPES = frozenset({RAW_TEXT, TEXT_SHA256})
URL_TYPES = frozenset({URL, URL_MD5})
VIDEO_TYPES = frozenset({VIDEO_MD5, VIDEO_SHA256})


def check_type(signal_type: str) -> None:
    """SignalError unless banks can hold signals of this type."""
    if signal_type not in ENTRY_KEYS:
        supported = ", ".join(sorted(ENTRY_KEYS))
        raise SignalError(f"signal type {signal_type!r} is not supported (supported: {supported})")


def entry_key(signal_type: str, value: str) -> str:
    """The lookup key of one bank entry; SignalError for an unknown type or a bad value."""
    check_type(signal_type)
    return ENTRY_KEYS[signal_type](value)


def url_md5(url: str) -> str:
    """The library's url_md5 of a URL (md5 of its normalized form)."""
    return UrlMD5Signal.hash_from_str(url)


# How a video file's bytes become each exact video signal, the library's way.
VIDEO_KEYS: dict[str, Callable[[bytes], str]] = {
    VIDEO_MD5: VideoMD5Signal.hash_from_bytes,
    VIDEO_SHA256: VideoSHA256Signal.hash_from_bytes,
}


def video_keys(data: bytes) -> dict[str, str]:
    """The video signals of a file's bytes: its MD5 and SHA-256, the library's way."""
    return {signal_type: digest(data) for signal_type, digest in VIDEO_KEYS.items()}


def image_pdq(data: bytes) -> tuple[str, int]:
    """PDQ hash (64 hex digits) and quality (0-100) of an encoded image (its first frame);
    SignalError if Pillow cannot decode it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return frame_pdq(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SignalError(f"not a decodable image: {exc}") from None


def frame_pdq(frame: Any) -> tuple[str, int]:
    """PDQ hash and quality of a decoded RGB picture (a ``PIL.Image`` or an array)."""
    bits, quality = pdqhash.compute(np.asarray(frame))
    return pdq_hex(np.asarray(bits, dtype=np.uint8)), int(quality)


@dataclass(frozen=True)
class MediaSignals:
    """The bank signals of one media item, computed off the event loop.

    ``keys``: the exact signals by type (a video's ``video_md5`` / ``video_sha256``);
    ``pdq``: an image's PDQ hash, None when not computed or its quality is below
    ``PDQ_MIN_QUALITY`` (such a hash says too little to match); ``pdq_quality``: its quality.
    """

    keys: dict[str, str] = field(default_factory=dict)
    pdq: str | None = None
    pdq_quality: int | None = None


NO_SIGNALS = MediaSignals()


def media_signals(
    kind: str, data: bytes, frames: Sequence[Any], wanted: Collection[str]
) -> MediaSignals:
    """The signals of ``wanted`` types (those the loaded banks hold) that an item of ``kind``
    has: PDQ for an image (of its first frame as stored, EXIF orientation not applied, as
    the library hashes a file: ``frames`` as ``Decoded.as_stored`` gives them), the file's
    digests for a video. Nothing is computed for types no bank holds. Blocking: run it
    beside decoding, off the event loop."""
    if kind == "video":
        keys = {t: VIDEO_KEYS[t](data) for t in VIDEO_TYPES if t in wanted}
        return MediaSignals(keys=keys) if keys else NO_SIGNALS
    if PDQ not in wanted:
        return NO_SIGNALS
    # A still image's one frame is its first; an animated one's samples may skip it.
    digest, quality = frame_pdq(frames[0]) if len(frames) == 1 else image_pdq(data)
    return MediaSignals(pdq=digest if quality >= PDQ_MIN_QUALITY else None, pdq_quality=quality)


def pdq_hex(bits: np.ndarray) -> str:
    """256 bits (most significant first, as pdqhash returns them) as PDQ's hex string."""
    return np.packbits(bits).tobytes().hex()


def pdq_bytes(hex_hash: str) -> bytes:
    return bytes.fromhex(hex_hash)
