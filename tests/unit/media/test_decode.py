"""Decoding: every accepted format to frames, and each bad case refused by its rule."""

from __future__ import annotations

import base64

import pytest

from worker.config import MediaSettings
from worker.media.decode import decode, fit, sample_indexes
from worker.media.refs import MediaRejected
from worker.testing import media_samples as samples

RED, BLUE = (255, 0, 0), (0, 0, 255)
SETTINGS = MediaSettings()


def near(pixel: tuple[int, ...], rgb: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, rgb, strict=True))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_each_image_format_gives_one_rgb_frame(fmt: str) -> None:
    decoded = decode("image", samples.image(RED, fmt), SETTINGS)
    assert (decoded.width, decoded.height) == (48, 32)
    assert len(decoded.frames) == 1
    assert decoded.frames[0].mode == "RGB"
    assert near(decoded.frames[0].getpixel((10, 10)), RED)


def test_animated_gif_is_sampled_like_a_video() -> None:
    decoded = decode("image", samples.animated_gif([RED, BLUE, RED, BLUE]), SETTINGS)
    colours = [f.getpixel((5, 5)) for f in decoded.frames]
    assert [near(c, RED) for c in colours] == [True, False, True, False]
    few = decode("image", samples.animated_gif([RED, BLUE] * 10), MediaSettings(max_frames=3))
    assert len(few.frames) == 3


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_video_frames_sampled_evenly_over_its_length(fmt: str) -> None:
    data = samples.video([RED, RED, BLUE, BLUE], fmt)
    decoded = decode("video", data, MediaSettings(max_frames=4))
    assert decoded.duration_s == pytest.approx(4.0, abs=0.3)
    colours = [f.getpixel((16, 16)) for f in decoded.frames]
    assert [near(c, RED, 40) for c in colours] == [True, True, False, False]
    assert all(near(c, BLUE, 40) for c in colours[2:])


def test_sample_indexes() -> None:
    assert sample_indexes(3, 8) == [0, 1, 2]
    assert sample_indexes(100, 4) == [12, 37, 62, 87]


@pytest.mark.parametrize(
    ("kind", "data", "settings", "rule"),
    [
        ("image", samples.png_bomb(), SETTINGS, "too_many_pixels"),
        ("image", samples.png_bomb(20_000, 20_000), SETTINGS, "too_many_pixels"),
        (
            "image",
            samples.image(RED, size=(200, 200)),
            MediaSettings(max_pixels=10_000),
            "too_many_pixels",
        ),
        ("image", samples.corrupt_jpeg(), SETTINGS, "corrupt"),
        ("image", b"<html>not a picture</html>", SETTINGS, "not_an_image"),
        ("image", samples.video([RED]), SETTINGS, "not_an_image"),
        ("video", samples.image(RED), SETTINGS, "not_a_video"),
        ("video", b"\x00\x01garbage" * 100, SETTINGS, "not_a_video"),
        ("video", samples.video([RED] * 5), MediaSettings(max_video_s=2), "too_long"),
        ("video", samples.video([RED], size=64), MediaSettings(max_pixels=1000), "too_many_pixels"),
    ],
)
def test_bad_media_refused_by_its_rule(kind, data, settings, rule) -> None:
    with pytest.raises(MediaRejected) as caught:
        decode(kind, data, settings)
    assert caught.value.rule == rule
    assert caught.value.kind == "media_rejected"
    assert str(caught.value).startswith(f"{rule}: ")


def test_video_frames_are_fitted_to_max_side_as_they_are_sampled() -> None:
    data = samples.video([RED, BLUE], size=160)
    decoded = decode("video", data, MediaSettings(max_frames=2, max_side=64))
    assert (decoded.width, decoded.height) == (160, 160)  # the original's, as reported
    assert [f.size for f in decoded.frames] == [(64, 64), (64, 64)]
    assert near(decoded.frames[1].getpixel((32, 32)), BLUE, 40)


def test_fit_keeps_the_aspect_and_leaves_small_frames_alone() -> None:
    from PIL import Image

    wide = Image.new("RGB", (3000, 1000), RED)
    assert fit(wide, 1536).size == (1536, 512)
    small = Image.new("RGB", (48, 32), RED)
    assert fit(small, 1536) is small


async def test_images_are_hashed_full_size_then_fitted_for_the_engine() -> None:
    from worker.hashbanks.signals import PDQ, image_pdq
    from worker.media.refs import MediaRef
    from worker.media.step import MediaStep

    data = samples.picture()  # 256 x 256
    step = MediaStep(MediaSettings(max_side=64), wanted=lambda: {PDQ})
    ref = MediaRef(type="image", data=base64.b64encode(data).decode())
    try:
        [item] = await step.prepare([ref])
    finally:
        step.close()
    assert [f.size for f in item.frames] == [(64, 64)] and (item.width, item.height) == (256, 256)
    assert item.signals.pdq == image_pdq(data)[0]  # the file's hash, as HMA takes it


def rotated_jpeg(orientation: int) -> bytes:
    """A 64x48 JPEG, red left half and blue right half with smooth noise (so its PDQ hash
    has quality), whose EXIF says to show it turned: 6 = rotate 90 degrees clockwise."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[:, :32] = RED
    pixels[:, 32:] = BLUE
    grain = np.random.default_rng(0).integers(0, 40, (48, 64, 1), dtype=np.uint8)
    image = Image.fromarray(np.clip(pixels.astype(int) + grain - 20, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, exif=exif)
    return out.getvalue()


def test_a_jpeg_is_turned_upright_by_its_exif_orientation() -> None:
    decoded = decode("image", rotated_jpeg(6), SETTINGS)
    [frame] = decoded.frames
    # Turned 90 degrees clockwise: the stored left (red) half is now the top.
    assert frame.size == (48, 64) and (decoded.width, decoded.height) == (64, 48)
    assert near(frame.getpixel((24, 5)), RED, 40) and near(frame.getpixel((24, 58)), BLUE, 40)
    [stored] = decoded.as_stored
    assert stored.size == (64, 48) and near(stored.getpixel((5, 24)), RED, 40)
    upright = decode("image", rotated_jpeg(1), SETTINGS)
    assert upright.frames[0].size == (64, 48) and upright.as_stored == upright.frames


def test_the_hash_banks_hash_the_stored_pixels_as_threatexchange_does() -> None:
    """PDQ lists exported with python-threatexchange hash files as stored, the EXIF tag
    ignored: the worker's PDQ of a turned photo is the library's of the same file."""
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

    from worker.hashbanks.signals import PDQ, frame_pdq, media_signals

    data = rotated_jpeg(6)
    decoded = decode("image", data, SETTINGS)
    library, quality = pdq_from_bytes(data)
    signals = media_signals("image", data, decoded.as_stored, {PDQ})
    assert signals.pdq == library and signals.pdq_quality == quality
    assert frame_pdq(decoded.frames[0])[0] != library  # the upright pixels hash otherwise
