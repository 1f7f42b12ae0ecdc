"""vLLM's OpenAI-compatible API as the remote classifier speaks it: request bodies in,
answers out. Pure functions, so every reading of a server's reply is unit-tested.

The request asks for what the in-process engine asks for (see ``vllm.sampling_params``):
one greedy token restricted to the two answers, and both answers' logprobs, as token ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import FatalError
from . import EngineError, Score

_TOKEN_ID = "token_id:"
# Processed logprobs of the two allowed answers sum to one; a server giving raw logprobs
# (the whole vocabulary's softmax) leaves a visible gap.
_SUM_TOLERANCE = 0.01
# The flag vLLM names when it refuses its token-in endpoint (see media_api).
SCALE_OUT_FLAG = "--enable-scale-out"


class ServerMismatch(FatalError):
    """A server that cannot serve this worker; the message says which setting to change."""


def completion_body(model: str, prompts: list[list[int]], no: int, yes: int) -> dict[str, Any]:
    """One request for one or more prompts; the server answers each with a choice."""
    return {
        "model": model,
        "prompt": prompts,
        "max_tokens": 1,
        "temperature": 0.0,
        "allowed_token_ids": [no, yes],
        "logprobs": 2,
        "return_tokens_as_token_ids": True,
    }


def answer_logprobs(choice: Any) -> dict[int, float]:
    """A choice's first generated position's top logprobs, keyed by token id."""
    try:
        top = choice["logprobs"]["top_logprobs"][0]
        return {_token_id(token): float(logprob) for token, logprob in top.items()}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise EngineError(f"engine server returned no logprobs: {_excerpt(choice)}") from exc


def score_reply(reply: Any, no: int, yes: int, prompt_lengths: list[int]) -> list[Score]:
    """P("1") per prompt of a request, computed as the in-process engine computes it.

    vLLM reports cached prompt tokens per request, so only a prompt sent alone has its own.
    """
    choices = _choices(reply, len(prompt_lengths))
    cached = _cached(reply) if len(prompt_lengths) == 1 else None
    return [
        Score(p_yes=_p_yes(choice, no, yes), prompt_tokens=length, cached_tokens=cached)
        for choice, length in zip(choices, prompt_lengths, strict=True)
    ]


def _choices(reply: Any, count: int) -> list[Any]:
    """The choices in prompt order (``index`` is the prompt's place in the request)."""
    try:
        by_index = {int(choice["index"]): choice for choice in reply["choices"]}
        return [by_index[index] for index in range(count)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EngineError(
            f"engine server returned no answer for every prompt: {_excerpt(reply)}"
        ) from exc


def _p_yes(choice: Any, no: int, yes: int) -> float:
    return p_yes_of(answer_logprobs(choice), no, yes)


def p_yes_of(logprobs: dict[int, float], no: int, yes: int) -> float:
    """P("1") normalised over the two answers' logprobs (keyed by token id)."""
    p_yes = math.exp(logprobs[yes]) if yes in logprobs else 0.0
    p_no = math.exp(logprobs[no]) if no in logprobs else 0.0
    total = p_yes + p_no
    if total <= 0:
        raise EngineError("engine server returned neither answer token")
    return p_yes / total


def check_answer_logprobs(reply: Any, no: int, yes: int) -> None:
    """Start-up: the server gives both answers' processed logprobs, as the worker needs."""
    try:
        [choice] = _choices(reply, 1)
        logprobs = answer_logprobs(choice)
    except EngineError as exc:
        raise ServerMismatch(str(exc)) from None
    missing = [token for token in (no, yes) if token not in logprobs]
    if missing:
        raise ServerMismatch(
            f"engine server returned no logprobs for answer token ids {missing}: does it "
            "serve the model whose tokenizer is engine.tokenizer (or engine.model)?"
        )
    total = math.exp(logprobs[no]) + math.exp(logprobs[yes])
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ServerMismatch(
            f"engine server's answer probabilities sum to {total:.3f}, not 1: start the "
            "server with --logprobs-mode processed_logprobs"
        )


def served_max_model_len(models: Any, name: str, url: str) -> int:
    """The served model's context length from ``GET /v1/models``; checks the name."""
    try:
        cards = {card["id"]: card for card in models["data"]}
    except (KeyError, TypeError) as exc:
        raise ServerMismatch(
            f"engine.url {url} is not an OpenAI-compatible server: /v1/models lists no models"
        ) from exc
    if name not in cards:
        served = ", ".join(sorted(map(str, cards))) or "nothing"
        raise ServerMismatch(
            f"engine server {url} serves {served}, not {name!r}: set engine.served_model_name "
            "(or engine.model) to the served name, or engine.url to a server of this model"
        )
    length = cards[name].get("max_model_len")
    if not isinstance(length, int) or length <= 0:
        raise ServerMismatch(
            f"engine server {url} does not report max_model_len for {name!r}: is it vLLM?"
        )
    return length


@dataclass(frozen=True)
class Refusal:
    """What an HTTP status means for a request: wait for the fleet, or fail the request."""

    unavailable: bool
    reason: str


def classify_status(status: int, body: str, url: str) -> Refusal:
    # Gateways answer 502/503/504 when no server is behind them, and a rejected key stops
    # every request alike: both mean the fleet is out of reach, not that the item is bad.
    # A server that refuses the token-in endpoint (restarted without the flag) fails media
    # requests only, and waiting would not change that.
    if status == 403 and SCALE_OUT_FLAG in body:
        return Refusal(False, f"engine server {url} answered HTTP {status}: {body[:300]}")
    if status in (401, 403):
        return Refusal(True, f"engine server {url} refused the API key (HTTP {status})")
    if status in (502, 503, 504):
        return Refusal(True, f"engine server {url} unavailable (HTTP {status})")
    return Refusal(False, f"engine server {url} answered HTTP {status}: {body[:300]}")


def _token_id(token: str) -> int:
    if not token.startswith(_TOKEN_ID):
        raise ValueError(f"token {token!r} is not given as an id")
    return int(token[len(_TOKEN_ID) :])


def _cached(reply: Any) -> int | None:
    # Only servers started with --enable-prompt-tokens-details report it.
    details = (reply.get("usage") or {}).get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    return cached if isinstance(cached, int) else None


def _excerpt(reply: Any) -> str:
    return repr(reply)[:300]
