"""The remote classifier's start-up check of one server: reachable, serving the model under
the expected name, giving processed logprobs; and whether it takes media prompts.

Each check is a request shaped like real traffic: a policy prompt through the model's
template with a short content. A degenerate one (a single token) as the first request a
fresh vLLM CPU server sees has killed its engine process on some CPUs. The media check
then sends the same policy with ``[image]`` as content and one small image, as media items
are sent (``media_api``); a server that cannot take it serves text only, and the reason is
what media items are dead-lettered with.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog

from ..config import RemoteEngineSettings
from ..policies import parse_policy
from ..prompts import (
    PromptError,
    Tokenizer,
    answer_token_ids,
    assemble,
    build_policy_prompt,
    media_suffix,
    tokenize_contents,
)
from ..retry import Backoff
from . import EngineError
from .media_api import (
    GENERATE_PATH,
    generate_body,
    image_parts,
    media_refusal,
    score_generate_reply,
)
from .openai_api import (
    ServerMismatch,
    check_answer_logprobs,
    classify_status,
    completion_body,
    served_max_model_len,
)
from .remote_http import Unavailable, get_models, parse_json, post, send

log = structlog.get_logger("worker.engine.remote")

CHECK_POLICY = (
    "---\nid: server-check\n---\n"
    "Flag content that offers to sell account passwords or stolen payment card numbers.\n"
    "Ordinary talk about security, passwords or shopping is not flagged."
)
CHECK_CONTENT = "Does anyone know a good recipe for lentil soup?"
CHECK_MEDIA_CONTENT = "[image]"  # what an item of media alone has under CONTENT


@dataclass(frozen=True)
class ServerCheck:
    max_model_len: int
    no_media: str | None  # why the server takes no media prompts; None when it does


def check_prompt(
    tokenizer: Tokenizer, max_model_len: int, content: str = CHECK_CONTENT, images: int = 0
) -> list[int]:
    """The start-up check's prompt ids, built as every item's prompt is built."""
    prompt = build_policy_prompt(tokenizer, parse_policy(CHECK_POLICY), max_model_len)
    [ids] = tokenize_contents(tokenizer, [content])
    return assemble(prompt, ids, "truncate", media_suffix(tokenizer, images) if images else None)


async def check_server(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    settings: RemoteEngineSettings,
    tokenizer: Tokenizer,
) -> ServerCheck:
    """One server at start-up; retried while it is out of reach, up to connect_retry_s."""
    delays = Backoff(settings.connect_retry_s, settings.backoff_max_s)
    while True:
        try:
            length = await _check_text(session, url, name, tokenizer)
            return ServerCheck(length, await _check_media(session, url, name, tokenizer, length))
        except Unavailable as exc:
            delay = delays.next()
            if delay is None:
                raise EngineError(f"{exc}: check engine.url (and engine.api_key)") from None
            log.warning("engine server out of reach; retrying", error=str(exc), in_s=delay)
            await asyncio.sleep(delay)
        except ServerMismatch as exc:
            raise EngineError(str(exc)) from None


async def _check_text(
    session: aiohttp.ClientSession, url: str, name: str, tokenizer: Tokenizer
) -> int:
    models = await get_models(session, url)
    length = served_max_model_len(models, name, url)
    no, yes = answer_token_ids(tokenizer)
    try:
        prompt = check_prompt(tokenizer, length)
        reply = await post(session, url, orjson.dumps(completion_body(name, [prompt], no, yes)))
    except (EngineError, PromptError) as exc:
        raise ServerMismatch(f"engine server {url} failed a test request: {exc}") from None
    check_answer_logprobs(reply, no, yes)
    return length


async def _check_media(
    session: aiohttp.ClientSession, url: str, name: str, tokenizer: Tokenizer, length: int
) -> str | None:
    """None when the server scores a media prompt; else why it cannot."""
    try:
        prompt = check_prompt(tokenizer, length, CHECK_MEDIA_CONTENT, images=1)
    except PromptError as exc:
        return str(exc)  # the model's template attaches no images
    no, yes = answer_token_ids(tokenizer)
    parts = await asyncio.to_thread(image_parts, [_check_image()])
    body = orjson.dumps(generate_body(name, prompt, parts, no, yes))
    try:
        status, text = await send(session, url, GENERATE_PATH, body)
    except EngineError as exc:  # no answer in time
        return f"{exc} (a test request with an image)"
    if status == 200:
        try:
            score_generate_reply(parse_json(text, url), no, yes, len(prompt))
        except EngineError as exc:
            return str(exc)
        return None
    if (reason := media_refusal(status, text, url)) is not None:
        return reason
    refusal = classify_status(status, text, url)
    if refusal.unavailable:
        raise Unavailable(refusal.reason)
    # The server serves text; a failure on media alone leaves the worker text-only.
    return f"{refusal.reason} (a test request with an image)"


def _check_image() -> Any:
    from PIL import Image

    return Image.new("RGB", (64, 64), (128, 128, 128))
