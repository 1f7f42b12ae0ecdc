"""A media item's bank signals, computed beside decoding: only the types the banks hold,
the same PDQ hash the library gives the file, the file's digests for a video, and none for
a picture too flat to hash."""

from __future__ import annotations

import base64
import hashlib
import io

from PIL import Image

from worker.config import MediaSettings
from worker.hashbanks import NO_SIGNALS, media_signals
from worker.hashbanks.signals import PDQ, VIDEO_MD5, VIDEO_SHA256, frame_pdq, image_pdq
from worker.media.decode import decode
from worker.media.refs import MediaRef
from worker.media.step import MediaStep
from worker.testing import media_samples as samples

SETTINGS = MediaSettings()


def _signals(kind: str, data: bytes, wanted):
    return media_signals(kind, data, decode(kind, data, SETTINGS).frames, wanted)


def test_an_image_is_hashed_from_its_decoded_frame_as_the_library_hashes_the_file():
    for data in (samples.picture(), samples.picture(box=40, fmt="JPEG")):
        signals = _signals("image", data, {PDQ})
        assert (signals.pdq, signals.pdq_quality) == image_pdq(data)
        assert signals.keys == {}


def test_an_animated_image_is_hashed_by_its_first_frame():
    frames = [Image.open(io.BytesIO(samples.picture(seed))).convert("RGB") for seed in (2, 3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    gif = out.getvalue()
    with Image.open(io.BytesIO(gif)) as image:
        first = frame_pdq(image.convert("RGB"))
        image.seek(1)
        second = frame_pdq(image.convert("RGB"))
    signals = _signals("image", gif, {PDQ})
    assert (signals.pdq, signals.pdq_quality) == first != second


def test_a_flat_image_has_no_hash_to_match():
    signals = _signals("image", samples.image((90, 90, 90)), {PDQ})
    assert signals.pdq is None and signals.pdq_quality is not None and signals.pdq_quality < 50


def test_only_the_types_the_banks_hold_are_computed():
    video = samples.video([(255, 255, 255)])
    assert _signals("image", samples.picture(), {VIDEO_MD5}) is NO_SIGNALS
    assert _signals("video", video, {PDQ}) is NO_SIGNALS
    assert _signals("video", video, {VIDEO_MD5, PDQ}).keys == {
        VIDEO_MD5: hashlib.md5(video).hexdigest()
    }
    assert _signals("video", video, {VIDEO_MD5, VIDEO_SHA256}).keys == {
        VIDEO_MD5: hashlib.md5(video).hexdigest(),
        VIDEO_SHA256: hashlib.sha256(video).hexdigest(),
    }


async def test_the_media_step_hashes_what_the_banks_hold_now():
    wanted: set[str] = set()
    step = MediaStep(SETTINGS, wanted=lambda: wanted)
    data = samples.picture()
    ref = MediaRef(type="image", data=base64.b64encode(data).decode())
    try:
        [before] = await step.prepare([ref])
        wanted.add(PDQ)  # banks holding PDQ hashes were loaded meanwhile
        [after] = await step.prepare([ref])
    finally:
        step.close()
    assert before.signals is None
    assert after.signals is not None and after.signals.pdq == image_pdq(data)[0]
