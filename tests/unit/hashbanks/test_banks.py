"""Matching content against loaded banks: exact text and URLs, video digests, and images by
PDQ within the configured distance (real images, hashed through Pillow and pdqhash)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from worker.hashbanks import load_banks
from worker.hashbanks.signals import (
    DEFAULT_PDQ_DISTANCE,
    SignalError,
    image_pdq,
    text_key,
    url_md5,
)


def _picture(seed: int = 2, box: int = 0) -> Image.Image:
    """A photo-like picture (smooth random shapes, so PDQ rates its quality high), with a
    white box of ``box`` pixels pasted over its corner (a sticker, a caption)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    picture = Image.fromarray(coarse).resize((256, 256), Image.Resampling.BICUBIC)
    if box:
        ImageDraw.Draw(picture).rectangle((0, 0, box, box), fill=(255, 255, 255))
    return picture


def _encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _distance(a: str, b: str) -> int:
    return int.bit_count(int(a, 16) ^ int(b, 16))


def _write(directory: Path, name: str, config: str, signals: str) -> None:
    (directory / f"{name}.yaml").write_text(config)
    (directory / f"{name}.txt").write_text(signals)


ORIGINAL = _encoded(_picture())
# Re-encoded as a smaller, brighter JPEG: what a re-upload looks like.
REUPLOAD = _encoded(
    ImageEnhance.Brightness(_picture()).enhance(1.08).resize((200, 200)), "JPEG", quality=70
)
STICKER = _encoded(_picture(box=40))  # a small box over the corner: still the same picture
COVERED = _encoded(_picture(box=96))  # a larger one: past the confident-match distance


def test_near_duplicates_match_within_the_default_distance(tmp_path):
    original, quality = image_pdq(ORIGINAL)
    assert quality >= 50
    _write(tmp_path, "known", "policies: [spam]\nlabel: 1\n", f"pdq {original}\n")
    banks = load_banks(tmp_path, DEFAULT_PDQ_DISTANCE)
    for copy in (REUPLOAD, STICKER):
        distance = _distance(original, image_pdq(copy)[0])
        assert 0 < distance <= DEFAULT_PDQ_DISTANCE
        [match] = banks.match_image(copy)
        assert (match.bank.name, match.signal_type, match.distance) == ("known", "pdq", distance)
    assert banks.match_image(_encoded(_picture(seed=3))) == []  # another picture


def test_an_image_beyond_the_distance_does_not_match(tmp_path):
    original, _ = image_pdq(ORIGINAL)
    distance = _distance(original, image_pdq(COVERED)[0])
    assert distance > DEFAULT_PDQ_DISTANCE
    _write(tmp_path, "known", "policies: [spam]\nlabel: 1\n", f"pdq {original}\n")
    assert load_banks(tmp_path, DEFAULT_PDQ_DISTANCE).match_image(COVERED) == []
    # The boundary is the configured distance itself: at it a match, one below it none.
    assert [m.distance for m in load_banks(tmp_path, distance).match_image(COVERED)] == [distance]
    assert load_banks(tmp_path, distance - 1).match_image(COVERED) == []


def test_an_image_pillow_cannot_decode_is_an_error_not_a_match(tmp_path):
    _write(tmp_path, "b", "policies: [spam]\nlabel: 1\n", f"pdq {'0' * 64}\n")
    with pytest.raises(SignalError, match="not a decodable image"):
        load_banks(tmp_path, 31).match_image(b"GIF89a but not really")


def test_a_flat_image_is_too_poor_to_match(tmp_path):
    flat = _encoded(Image.new("RGB", (128, 128), (90, 90, 90)))
    digest, quality = image_pdq(flat)
    assert quality < 50
    _write(tmp_path, "b", "policies: [spam]\nlabel: 1\n", f"pdq {digest}\n")
    assert load_banks(tmp_path, 31).match_image(flat) == []


def test_text_matches_as_the_prompt_carries_it(tmp_path):
    _write(
        tmp_path, "spam", "policies: [spam]\nlabel: 1\n",
        "raw_text buy cheap pills\n"
        f"text_sha256 {hashlib.sha256(b'a quiet afternoon').hexdigest()}\n",
    )  # fmt: skip
    banks = load_banks(tmp_path, 31)
    assert [m.signal_type for m in banks.match_text("buy cheap pills")] == ["raw_text"]
    assert [m.signal_type for m in banks.match_text("a quiet afternoon")] == ["text_sha256"]
    assert banks.match_text("buy cheap pills!") == []
    # A rule line of '=' is carried as '-', so both texts are one prompt and one key.
    assert text_key("a\n===\nb") == text_key("a\n---\nb")


def test_urls_named_in_content_match_url_and_url_md5_entries(tmp_path):
    _write(
        tmp_path, "links", "policies: [spam]\nlabel: 1\n",
        f"url https://spam.example/offer\nurl_md5 {url_md5('http://other.example/x')}\n",
    )  # fmt: skip
    banks = load_banks(tmp_path, 31)
    found = banks.match_text("see HTTP://Spam.Example/offer, then (http://other.example/x).")
    assert sorted(m.signal_type for m in found) == ["url", "url_md5"]
    assert banks.match_text("see https://spam.example/offer/more") == []


def test_video_bytes_match_their_digests(tmp_path):
    video = b"\x00\x00\x00\x18ftypmp42 not a real movie"
    _write(
        tmp_path, "clips", "policies: [spam]\nlabel: 1\n",
        f"video_md5 {hashlib.md5(video).hexdigest()}\n",
    )  # fmt: skip
    banks = load_banks(tmp_path, 31)
    assert [m.signal_type for m in banks.match_video(video)] == ["video_md5"]
    assert banks.match_video(video + b"!") == []


def test_a_hash_in_two_banks_names_both_nearest_first(tmp_path):
    base = "0" * 64
    near = "0" * 63 + "7"  # 3 bits away
    _write(tmp_path, "a", "policies: [spam]\nlabel: 1\nsignal_type: pdq\n", f"{near}\n{base}\n")
    _write(tmp_path, "b", "policies: [spam]\nlabel: 0\nsignal_type: pdq\n", f"{near}\n")
    [found] = load_banks(tmp_path, 31).match_pdq([base])
    assert [(m.bank.name, m.distance) for m in found] == [("a", 0), ("b", 3)]
