"""Bytes to frames, with Pillow for images and PyAV for video, behind the configured limits.

Pure and blocking: the media step runs it on a thread pool, never on the event loop.
Formats: JPEG, PNG, WebP and GIF images (animated ones sampled like a video), MP4 and WebM
(Matroska) video. Size is checked from the header before any pixel is decoded, so a small
file claiming a huge canvas (a decompression bomb) is refused without the memory it asks for.
Every refusal is a ``MediaRejected`` naming its rule.

Frames are scaled down to ``media.max_side`` (``fit``): a video's as they are sampled, so a
4K clip never holds eight 4K frames; an image's by the media step once its PDQ hash is taken
from the full picture, as the field's tools hash a file.

Images are turned upright by their EXIF Orientation tag (``ImageOps.exif_transpose``), as
every viewer shows a phone photo: the model sees what a person sees. The hash banks do
not: python-threatexchange's and the reference PDQ hashers hash a file's pixels as stored,
ignoring the tag, so lists exported from them match only hashes of the stored pixels; the
first frame as stored is kept beside the upright one for them (``Decoded.as_stored``).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace
from typing import Any

from ..config import MediaSettings
from .refs import MediaKind, MediaRejected

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
# PyAV's names for the MP4/QuickTime and Matroska/WebM demuxers.
VIDEO_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
# A bound on frames decoded to sample a video, whatever its frame rate claims.
MAX_FPS = 120


# EXIF's Orientation tag; 1 (or none) means the pixels are stored upright.
ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Decoded:
    frames: tuple[Any, ...]  # RGB PIL images, upright
    width: int  # as stored (the header's: what the pixel limit is checked on)
    height: int
    duration_s: float | None = None
    # A still image's frame as stored, where its EXIF orientation turned it for ``frames``.
    stored: Any = None

    @property
    def as_stored(self) -> tuple[Any, ...]:
        """The frames as the file stores them, which the hash banks hash."""
        return self.frames if self.stored is None else (self.stored, *self.frames[1:])


def decode(kind: MediaKind, data: bytes, settings: MediaSettings) -> Decoded:
    """The frames of ``data``, which must be of ``kind``."""
    if kind == "image":
        return decode_image(data, settings)
    return decode_video(data, settings)


def decode_image(data: bytes, settings: MediaSettings) -> Decoded:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise MediaRejected("too_many_pixels", str(exc)) from None
    except UnidentifiedImageError:
        raise MediaRejected("not_an_image", f"not a {', '.join(IMAGE_FORMATS)} image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # a header cut short
        raise MediaRejected("corrupt", f"the image cannot be read: {exc}") from None
    width, height = image.size
    _check_pixels(width, height, settings)
    count = getattr(image, "n_frames", 1)
    try:
        turned = _orientation(image) not in (None, 1)
        frames = []
        for index in sample_indexes(count, settings.max_frames):
            image.seek(index)
            frames.append(_upright(image) if turned else image.convert("RGB"))
        stored = image.convert("RGB") if turned and count == 1 else None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaRejected(
            "corrupt", f"the {image.format} image cannot be decoded: {exc}"
        ) from None
    return Decoded(tuple(frames), width, height, stored=stored)


def _orientation(image: Any) -> int | None:
    try:
        return image.getexif().get(ORIENTATION_TAG)
    except Exception:  # EXIF is metadata: a broken block leaves the pixels as they are
        return None


def _upright(image: Any) -> Any:
    """The current frame turned by the image's EXIF orientation, in RGB."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(image).convert("RGB")


def fit(frame: Any, side: int) -> Any:
    """``frame`` scaled down, aspect kept, so that neither side is over ``side`` pixels."""
    if max(frame.size) <= side:
        return frame
    from PIL import Image

    scale = side / max(frame.size)
    size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
    # A box reduction first, then bicubic: half the CPU of bicubic alone on a 12 MP photo,
    # and the model's processor resizes the result again anyway.
    return frame.resize(size, Image.Resampling.BICUBIC, reducing_gap=1.0)


def fit_frames(decoded: Decoded, side: int) -> Decoded:
    """``decoded`` with every frame fitted to ``side``; its size stays the original's."""
    frames = tuple(fit(frame, side) for frame in decoded.frames)
    return replace(decoded, frames=frames, stored=None)  # the stored one was for hashing


def sample_indexes(count: int, most: int) -> list[int]:
    """Up to ``most`` indexes into ``count`` frames, spread evenly, middle of each span."""
    if count <= most:
        return list(range(count))
    return [int((i + 0.5) * count / most) for i in range(most)]


def _check_pixels(width: int, height: int, settings: MediaSettings) -> None:
    if width * height > settings.max_pixels:
        raise MediaRejected(
            "too_many_pixels",
            f"{width}x{height} is over media.max_pixels ({settings.max_pixels})",
        )


def decode_video(data: bytes, settings: MediaSettings) -> Decoded:
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError) as exc:
        raise MediaRejected("not_a_video", f"not an MP4 or WebM video: {exc}") from None
    with container:
        if container.format.name not in VIDEO_CONTAINERS or not container.streams.video:
            raise MediaRejected(
                "not_a_video", f"not an MP4 or WebM video ({container.format.name})"
            )
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_pixels(width, height, settings)
        duration = _duration(container, stream)
        if duration is not None and duration > settings.max_video_s:
            raise MediaRejected(
                "too_long", f"{duration:.1f} s is over media.max_video_s ({settings.max_video_s})"
            )
        try:
            frames = _sample(container, stream, duration, settings)
        except (av.FFmpegError, ValueError) as exc:
            raise MediaRejected("corrupt", f"the video cannot be decoded: {exc}") from None
    if not frames:
        raise MediaRejected("corrupt", "the video has no frame that decodes")
    return Decoded(tuple(frames), width, height, duration)


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base
    return None


def _sample(container: Any, stream: Any, duration: float | None, settings: MediaSettings) -> list:
    """Frames nearest to evenly spread times; decoding stops at the last one needed.

    Without a known duration the first frame stands for the video."""
    most = settings.max_frames
    targets = [duration * (i + 0.5) / most for i in range(most)] if duration else [0.0]
    budget = int(settings.max_video_s * MAX_FPS)  # frames decoded at most
    frames: list[Any] = []
    last = None
    for decoded, frame in enumerate(container.decode(stream)):
        _check_pixels(frame.width, frame.height, settings)
        when = float(frame.time or 0.0)
        while targets and when >= targets[0] - 1e-6:
            targets.pop(0)
            frames.append(fit(frame.to_image().convert("RGB"), settings.max_side))
        last = frame
        if not targets or decoded + 1 >= budget:
            break
    if targets and last is not None:  # the stream ended before the times it claimed
        frames.append(fit(last.to_image().convert("RGB"), settings.max_side))
    return frames
