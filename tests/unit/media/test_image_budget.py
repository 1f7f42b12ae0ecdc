"""The prompt budget of an item with images: each image's tokens in the engine come out of
the content's room, and what does not fit follows engine.overlong, or is refused when the
images alone leave no room."""

from __future__ import annotations

import pytest

from worker.policies import Policy, policy_version
from worker.prompts import Images, PolicyPrompt, PromptError, assemble, content_room

TEXT = "Flag content that mentions any of: apple."
POLICY = Policy(id="fruit", title="fruit", text=TEXT, version=policy_version(TEXT))
PREFIX, SUFFIX = (1, 2, 3), (9, 8)
MEDIA_SUFFIX = (7, 9, 8)  # one placeholder (7) before the end of the turn
LEAD_IN = 3


def prompt(room: int) -> PolicyPrompt:
    return PolicyPrompt(POLICY, PREFIX, SUFFIX, room, LEAD_IN)


def content(n: int) -> list[int]:
    return list(range(100, 100 + n))


def test_room_less_the_media_suffix_and_every_images_tokens() -> None:
    assert content_room(prompt(50)) == 50
    assert content_room(prompt(50), MEDIA_SUFFIX) == 49
    assert content_room(prompt(50), MEDIA_SUFFIX, Images(1, 4)) == 45
    assert content_room(prompt(50), MEDIA_SUFFIX, Images(3, 4)) == 37


def test_text_that_fits_alone_but_not_beside_its_image_is_truncated() -> None:
    ids = content(48)
    assert assemble(prompt(50), ids, "dead_letter", MEDIA_SUFFIX)  # fits without the image
    got = assemble(prompt(50), ids, "truncate", MEDIA_SUFFIX, Images(1, 4))
    assert got == [*PREFIX, *ids[:45], *MEDIA_SUFFIX]


def test_or_dead_lettered_as_too_long_naming_policy_images_and_setting() -> None:
    with pytest.raises(PromptError) as caught:
        assemble(prompt(50), content(48), "dead_letter", MEDIA_SUFFIX, Images(2, 4))
    assert caught.value.kind == "content_too_long"
    reason = caught.value.reason
    assert "'fruit'" in reason and "2 images of 4 tokens each" in reason
    assert "engine.overlong" in reason and "engine.max_model_len" in reason
    assert "\n" not in reason


def test_content_within_the_room_is_untouched() -> None:
    ids = content(45)
    got = assemble(prompt(50), ids, "dead_letter", MEDIA_SUFFIX, Images(1, 4))
    assert got == [*PREFIX, *ids, *MEDIA_SUFFIX]


@pytest.mark.parametrize("overlong", ["truncate", "dead_letter"])
def test_images_that_leave_no_room_are_refused_whatever_overlong_says(overlong) -> None:
    # 50 - 1 (suffix) - 4 x 11 = 5 > lead-in: fits; with 12 frames, 1 left: refused.
    assert assemble(prompt(50), content(4), overlong, MEDIA_SUFFIX, Images(11, 4))
    with pytest.raises(PromptError) as caught:
        assemble(prompt(50), content(4), overlong, MEDIA_SUFFIX, Images(12, 4))
    assert caught.value.kind == "media_rejected"
    reason = caught.value.reason
    assert reason.startswith("too_many_image_tokens: 12 images of 4 tokens each take 48")
    assert "media.max_frames" in reason and "engine.max_model_len" in reason


def test_one_image_too_big_names_only_the_context() -> None:
    with pytest.raises(PromptError) as caught:
        assemble(prompt(50), content(4), "truncate", MEDIA_SUFFIX, Images(1, 300))
    assert "media.max_frames" not in caught.value.reason
    assert "raise engine.max_model_len" in caught.value.reason


def test_without_a_count_the_text_budget_stands() -> None:
    ids = content(49)
    assert assemble(prompt(50), ids, "dead_letter", MEDIA_SUFFIX) == [*PREFIX, *ids, *MEDIA_SUFFIX]


class SeeingEngine:
    """Records what it is sent; takes images the seeing model's way (4 tokens each)."""

    model_name, accepts_media, tokens_per_image = "seeing", True, 4

    def __init__(self, tokenizer, max_model_len: int) -> None:
        self.tokenizer, self.max_model_len = tokenizer, max_model_len
        self.sent: list[list[int]] = []

    async def score(self, prompt_token_ids, media=()):
        from worker.engine import Score

        self.sent.append(prompt_token_ids)
        return Score(p_yes=0.9, prompt_tokens=len(prompt_token_ids), cached_tokens=0)


@pytest.mark.parametrize("overlong", ["truncate", "dead_letter"])
async def test_classify_fits_text_and_image_into_the_context(tmp_path, overlong) -> None:
    """Text that fits alone but not with its image: truncated to fit the image's tokens
    beside it, or dead-lettered as content_too_long, never sent to fail in the engine."""
    from PIL import Image
    from transformers import AutoTokenizer

    from worker.catalog import Entry
    from worker.events import decode_event
    from worker.media import FetchedMedia
    from worker.prompts import build_policy_prompt, media_suffix, tokenize_contents
    from worker.routing import Thresholds
    from worker.scoring.classify import Job, score_jobs
    from worker.testing.seeing import build_seeing_model

    tokenizer = AutoTokenizer.from_pretrained(build_seeing_model(tmp_path / "m"))
    limit = 200
    entry = Entry(POLICY, build_policy_prompt(tokenizer, POLICY, limit), Thresholds(0.5, 0, 0))
    room = entry.prompt.max_content_tokens - (len(media_suffix(tokenizer, 1)) - 2)
    text = " ".join(["pear"] * 200)
    [ids] = tokenize_contents(tokenizer, [text])
    text = tokenizer.decode(ids[: room + 1][3:])  # fits the text-only room, not the image's
    assert len(tokenize_contents(tokenizer, [text])[0]) <= entry.prompt.max_content_tokens
    event = decode_event(orjson_event(text))
    frame = Image.new("RGB", (16, 16), (255, 0, 0))
    item = FetchedMedia("image", "media[0]", b"x", "00", frames=(frame,))
    engine = SeeingEngine(tokenizer, limit)
    [scored] = await score_jobs(engine, [Job(event, [entry], media=[item])], overlong, 0)
    if overlong == "dead_letter":
        assert scored.error is not None and scored.error.kind == "content_too_long"
        assert "1 image of 4 tokens each" in scored.error.reason and not engine.sent
        return
    assert scored.error is None
    [sent] = engine.sent
    # In the engine the placeholder becomes the image's 4 tokens, and the answer needs one.
    assert len(sent) - 1 + 4 + 1 <= limit


def orjson_event(text: str) -> bytes:
    import orjson

    return orjson.dumps({"id": "e", "content": text, "media": [{"type": "image", "data": "AA=="}]})
