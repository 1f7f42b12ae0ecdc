"""The remote classifier's HTTP calls to one vLLM server, and what their failures mean.

A server out of reach (refused, reset, dropped mid-answer, a gateway with nothing behind it,
a rejected key) is ``Unavailable``: the fleet is waited for. A request the server fails or
does not answer in time is an ``EngineError``: the caller retries it and then dead-letters
the item. Nothing else is decided here.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from ..errors import TransientError
from . import EngineError
from .openai_api import ServerMismatch, classify_status

COMPLETIONS_PATH = "/v1/completions"


class Unavailable(TransientError):
    """The server cannot be reached or will not serve anyone now; worth waiting for."""


async def send(session: aiohttp.ClientSession, url: str, path: str, body: bytes) -> tuple[int, str]:
    """One POST; its status and body. Unavailable when the server is out of reach."""
    try:
        async with session.post(f"{url}{path}", data=body) as response:
            return response.status, await response.text()
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        # Refused, reset, or dropped mid-answer: the server is gone, not the request bad
        # (a read timeout is a ServerTimeoutError and falls through to a failed request).
        if isinstance(exc, aiohttp.ServerTimeoutError) and not isinstance(
            exc, aiohttp.ConnectionTimeoutError
        ):
            raise EngineError(f"engine server {url} did not answer in time") from exc
        raise Unavailable(f"engine server {url} unreachable: {describe(exc)}") from exc
    except TimeoutError as exc:
        raise EngineError(f"engine server {url} did not answer in time") from exc


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, path: str = COMPLETIONS_PATH
) -> Any:
    """One request answered with JSON; Unavailable when the server is out of reach."""
    status, text = await send(session, url, path, body)
    if status != 200:
        refusal = classify_status(status, text, url)
        if refusal.unavailable:
            raise Unavailable(refusal.reason)
        raise EngineError(refusal.reason)
    return parse_json(text, url)


def parse_json(text: str, url: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise EngineError(f"engine server {url} answered with invalid JSON") from exc


async def get_models(
    session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout | None = None
) -> Any:
    try:
        request = session.get(f"{url}/v1/models", **({"timeout": timeout} if timeout else {}))
        async with request as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"engine server {url} unreachable: {describe(exc)}") from exc
    if response.status in (401, 403):
        raise ServerMismatch(
            f"engine server {url} refused the API key (HTTP {response.status}): "
            "set engine.api_key_file (or engine.api_key)"
        )
    if response.status != 200:
        refusal = classify_status(response.status, text, url)
        if refusal.unavailable:
            raise Unavailable(refusal.reason)
        raise ServerMismatch(
            f"engine.url {url} is not a vLLM OpenAI-compatible server: "
            f"GET /v1/models answered HTTP {response.status}"
        )
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ServerMismatch(
            f"engine.url {url} is not a vLLM OpenAI-compatible server: /v1/models is not JSON"
        ) from None


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
