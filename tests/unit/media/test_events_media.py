"""Events with media: content becomes optional, the media list is checked item by item."""

from __future__ import annotations

import orjson
import pytest

from worker.events import BadEvent, decode_event
from worker.scoring.verdict_cache import cache_key


def event(**fields) -> bytes:
    return orjson.dumps({"id": "e1", **fields})


def test_media_without_content() -> None:
    got = decode_event(event(media=[{"type": "image", "url": "https://cdn/x.png"}]))
    assert got.content is None and got.media[0].url == "https://cdn/x.png"
    assert got.text("image") == "[image]" and got.text("video") == "[video]"
    both = decode_event(event(content="hi", media=[{"type": "video", "data": "AAAA"}]))
    assert both.text("video") == "hi" and both.media[0].where(0) == "media[0]"


def test_text_only_events_unchanged() -> None:
    assert decode_event(event(content="hello")).media == []


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "content is required when there is no media"),
        ({"media": []}, "content is required when there is no media"),
        ({"media": [{"type": "audio", "url": "u"}]}, "media.0.type"),
        ({"media": [{"type": "image"}]}, "exactly one of url and data"),
        ({"media": [{"type": "image", "url": "u", "data": "AA=="}]}, "exactly one of url and data"),
        ({"media": [{"type": "image", "url": 5}]}, "media.0.url"),
        ({"media": {"type": "image", "url": "u"}}, "media"),
        ({"content": "  ", "media": [{"type": "image", "url": "u"}]}, "content is empty"),
    ],
)
def test_bad_media_fields(fields: dict, says: str) -> None:
    with pytest.raises(BadEvent) as caught:
        decode_event(event(**fields))
    assert caught.value.kind == "invalid_event" and says in caught.value.reason


def test_cache_keys_media_by_its_bytes_hash() -> None:
    text = cache_key("m", "v", "[image]")
    assert cache_key("m", "v", "[image]", "") == text
    assert cache_key("m", "v", "[image]", "ab") != text
    assert cache_key("m", "v", "[image]", "ab") != cache_key("m", "v", "[image]", "cd")


async def test_an_event_whose_media_was_not_fetched_is_never_scored_as_text() -> None:
    from worker.scoring.classify import Job, score_jobs

    class NoEngine:
        model_name, max_model_len, tokenizer = "m", 4096, None

        async def score(self, *args, **kwargs):
            raise AssertionError("scored without its media")

    job = Job(decode_event(event(media=[{"type": "image", "url": "https://cdn/x.png"}])), [])
    [scored] = await score_jobs(NoEngine(), [job], "dead_letter", 0)
    assert scored.error is not None and scored.error.kind == "media_rejected"
    assert str(scored.error).startswith("not_fetched")


def test_media_bytes_held_count_against_the_in_flight_bound() -> None:
    from worker.pipeline.intake import Flow, flow, room_for

    assert room_for(10, 100, 0, 1000) == 90
    assert room_for(10, 100, 999, 1000) == 90
    assert room_for(10, 100, 1000, 1000) == 0  # bytes at the bound: pause
    assert flow(room_for(1, 100, 5000, 1000), False, 100) is Flow.PAUSE


def test_an_engine_without_media_dead_letters_them_with_its_reason() -> None:
    from worker.media import MediaRejected
    from worker.scoring.classify import _suffix

    class TextOnly:
        model_name, accepts_media = "m", False

    class FleetWithoutEndpoint(TextOnly):
        no_media = "engine server http://s does not serve /inference/v1/generate"

    for engine, says in ((TextOnly(), "(a text-only model)"), (FleetWithoutEndpoint(), "http://s")):
        with pytest.raises(MediaRejected) as caught:
            _suffix(engine, 1)
        assert caught.value.rule == "model_without_vision" and says in caught.value.detail
