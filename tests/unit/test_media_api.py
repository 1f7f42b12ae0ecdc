"""Media prompts for the remote engine: the token-in request, its reply, what a refusal at
start-up means, and frames sent as lossless BMP data URIs."""

from __future__ import annotations

import base64
import io
import math

import pytest
from PIL import Image

from worker.engine import EngineError
from worker.engine.media_api import (
    generate_body,
    image_parts,
    media_refusal,
    score_generate_reply,
)
from worker.engine.openai_api import classify_status

NO, YES = 15, 16


def reply(top: list[tuple[int, float]], cached: int | None = None) -> dict:
    usage = {"prompt_tokens": 40}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    content = [{"token_id": top[0][0], "logprob": top[0][1], "top_logprobs": [
        {"token_id": token, "logprob": logprob} for token, logprob in top
    ]}]  # fmt: skip
    return {"choices": [{"index": 0, "logprobs": {"content": content}}], "usage": usage}


def test_body_sends_the_ids_and_frames_and_asks_what_the_in_process_engine_asks():
    parts = [{"type": "image_url", "url": "data:image/bmp;base64,AA=="}]
    body = generate_body("m", [1, 2, 3], parts, NO, YES)
    assert body == {
        "model": "m",
        "token_ids": [1, 2, 3],
        "content_parts": parts,
        "sampling_params": {
            "max_tokens": 1,
            "temperature": 0.0,
            "allowed_token_ids": [NO, YES],
            "logprobs": 2,
            "detokenize": False,
        },
        "output_mode": "tokens",
    }


def test_score_is_p_yes_normalised_over_the_two_answers_with_the_cache_count():
    score = score_generate_reply(
        reply([(NO, math.log(0.6)), (YES, math.log(0.3))], cached=32), NO, YES, 75
    )
    assert score.p_yes == pytest.approx(1 / 3)
    assert (score.prompt_tokens, score.cached_tokens) == (75, 32)
    alone = score_generate_reply(reply([(YES, -0.01)]), NO, YES, 75)
    assert alone.p_yes == 1.0 and alone.cached_tokens is None


@pytest.mark.parametrize(
    "bad",
    [{}, {"choices": []}, {"choices": [{"logprobs": None}]}, {"choices": [{}, {}]}],
)
def test_replies_without_usable_logprobs_are_engine_errors(bad):
    with pytest.raises(EngineError, match="no logprobs"):
        score_generate_reply(bad, NO, YES, 10)


def test_neither_answer_is_an_engine_error():
    with pytest.raises(EngineError, match="neither answer"):
        score_generate_reply(reply([(99, -0.1)]), NO, YES, 10)


def test_start_up_refusals_name_the_server_flag_or_the_servers_reason():
    disabled = '{"error": {"message": "Scale-out endpoints are disabled. Restart vllm serve '
    disabled += 'with --enable-scale-out to enable them."}}'
    for status, body in ((403, disabled), (404, '{"detail": "Not Found"}')):
        reason = media_refusal(status, body, "http://s")
        assert reason is not None and "--enable-scale-out" in reason and "http://s" in reason
    text_only = media_refusal(400, '{"error": {"message": "not a multimodal model"}}', "http://s")
    assert text_only is not None and "not a multimodal model" in text_only
    # A rejected key or a server out of reach is not a refusal of media.
    assert media_refusal(403, '{"detail": "Unauthorized"}', "http://s") is None
    assert media_refusal(503, "", "http://s") is None


def test_a_server_restarted_without_the_endpoint_fails_requests_and_is_not_waited_for():
    refusal = classify_status(403, "Restart vllm serve with --enable-scale-out", "http://s")
    assert refusal.unavailable is False and "--enable-scale-out" in refusal.reason
    assert classify_status(403, "Unauthorized", "http://s").unavailable is True


def test_frames_travel_as_lossless_bmp_encoded_once_per_frame():
    noise = Image.frombytes("RGB", (31, 17), bytes(range(256)) * 7)
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    parts = image_parts([noise, red])
    assert [p["type"] for p in parts] == ["image_url", "image_url"]
    for part, frame in zip(parts, (noise, red), strict=True):
        prefix, data = part["url"].split(",", 1)
        assert prefix == "data:image/bmp;base64"
        decoded = Image.open(io.BytesIO(base64.b64decode(data)))
        assert decoded.mode == "RGB" and decoded.tobytes() == frame.tobytes()
    again = image_parts([noise])
    assert again[0] is parts[0]  # the same frame for another policy: not encoded again
    copy = noise.copy()
    assert image_parts([copy])[0] is not parts[0] and image_parts([copy])[0] == parts[0]
