"""Reading vLLM's OpenAI-compatible replies: what the remote classifier accepts and refuses."""

from __future__ import annotations

import math

import pytest

from worker.engine import EngineError
from worker.engine.openai_api import (
    ServerMismatch,
    check_answer_logprobs,
    classify_status,
    completion_body,
    score_reply,
    served_max_model_len,
)

NO, YES = 15, 16


def choice(top: dict[str, float], index: int = 0) -> dict:
    return {"index": index, "logprobs": {"top_logprobs": [top]}, "text": "1"}


def reply(top: dict[str, float], usage: dict | None = None) -> dict:
    return {"choices": [choice(top)], "usage": usage or {"prompt_tokens": 10}}


def test_body_asks_what_the_in_process_engine_asks():
    body = completion_body("m", [[1, 2, 3], [4, 5]], NO, YES)
    assert body == {
        "model": "m",
        "prompt": [[1, 2, 3], [4, 5]],
        "max_tokens": 1,
        "temperature": 0.0,
        "allowed_token_ids": [NO, YES],
        "logprobs": 2,
        "return_tokens_as_token_ids": True,
    }


def test_score_is_p_yes_normalised_over_the_two_answers():
    answer = reply(
        {f"token_id:{YES}": math.log(0.3), f"token_id:{NO}": math.log(0.6)},
        {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 8}},
    )
    [score] = score_reply(answer, NO, YES, [10])
    assert score.p_yes == pytest.approx(1 / 3)
    assert (score.prompt_tokens, score.cached_tokens) == (10, 8)


def test_one_answer_missing_counts_as_zero_and_no_details_as_unreported():
    [score] = score_reply(reply({f"token_id:{YES}": -0.01}), NO, YES, [4])
    assert score.p_yes == 1.0 and score.cached_tokens is None


def test_several_prompts_are_answered_by_index_without_a_cache_count_each():
    answer = {
        "choices": [
            choice({f"token_id:{YES}": math.log(0.9), f"token_id:{NO}": math.log(0.1)}, 1),
            choice({f"token_id:{YES}": math.log(0.2), f"token_id:{NO}": math.log(0.8)}, 0),
        ],
        "usage": {"prompt_tokens_details": {"cached_tokens": 64}},
    }
    first, second = score_reply(answer, NO, YES, [5, 7])
    assert first.p_yes == pytest.approx(0.2) and second.p_yes == pytest.approx(0.9)
    assert (first.prompt_tokens, second.prompt_tokens) == (5, 7)
    # vLLM counts cached tokens for the request, not per prompt: none is made up here.
    assert first.cached_tokens is None and second.cached_tokens is None


def test_a_missing_answer_is_an_engine_error():
    with pytest.raises(EngineError, match="no answer for every prompt"):
        score_reply(reply({f"token_id:{YES}": -0.01}), NO, YES, [4, 4])


@pytest.mark.parametrize(
    "bad",
    [
        {"choices": [{"index": 0, "logprobs": None}]},
        {"choices": [{"index": 0}]},
        reply({"1": -0.1}),  # tokens as text: the request's return_tokens_as_token_ids ignored
    ],
)
def test_replies_without_usable_logprobs_are_engine_errors(bad):
    with pytest.raises(EngineError, match="no logprobs"):
        score_reply(bad, NO, YES, [1])


@pytest.mark.parametrize("bad", [{}, {"choices": []}, {"choices": [{"text": "1"}]}])
def test_replies_without_choices_are_engine_errors(bad):
    with pytest.raises(EngineError, match="no answer"):
        score_reply(bad, NO, YES, [1])


def test_neither_answer_is_an_engine_error():
    with pytest.raises(EngineError, match="neither answer"):
        score_reply(reply({"token_id:99": -0.1}), NO, YES, [1])


def test_start_up_accepts_processed_logprobs():
    check_answer_logprobs(
        reply({f"token_id:{YES}": math.log(0.7), f"token_id:{NO}": math.log(0.3)}), NO, YES
    )


def test_start_up_names_the_server_flag_for_raw_logprobs():
    raw = reply({f"token_id:{YES}": math.log(0.2), f"token_id:{NO}": math.log(0.1)})
    with pytest.raises(ServerMismatch, match="--logprobs-mode processed_logprobs"):
        check_answer_logprobs(raw, NO, YES)


def test_start_up_refuses_a_server_without_both_answers():
    with pytest.raises(ServerMismatch, match=r"answer token ids \[15\]"):
        check_answer_logprobs(reply({f"token_id:{YES}": 0.0}), NO, YES)


def test_models_list_gives_the_served_length_and_checks_the_name():
    models = {"data": [{"id": "cope", "max_model_len": 8192}, {"id": "other"}]}
    assert served_max_model_len(models, "cope", "http://s") == 8192
    with pytest.raises(ServerMismatch, match="serves cope, other, not 'x'.*served_model_name"):
        served_max_model_len(models, "x", "http://s")
    with pytest.raises(ServerMismatch, match="does not report max_model_len"):
        served_max_model_len(models, "other", "http://s")
    with pytest.raises(ServerMismatch, match="not an OpenAI-compatible server"):
        served_max_model_len({"detail": "Not Found"}, "cope", "http://s")


@pytest.mark.parametrize(
    "status, unavailable",
    [(401, True), (403, True), (502, True), (503, True), (504, True), (400, False), (500, False)],
)
def test_statuses_that_mean_the_fleet_is_out_of_reach(status, unavailable):
    refusal = classify_status(status, "body", "http://s")
    assert refusal.unavailable is unavailable
    assert f"HTTP {status}" in refusal.reason
