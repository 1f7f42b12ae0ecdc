"""The classifier on a fleet of vLLM OpenAI-compatible servers: the worker's own prompt ids
over HTTP, many requests in flight.

The worker builds prompts exactly as for the in-process engine and sends their token ids,
so prompts are identical and every server's prefix cache is hit; only the tokenizer is
loaded here. Prompts asked for at the same moment (a micro-batch's) travel together, up to
``engine.prompts_per_request`` a request: a server spends far more CPU per request than
per prompt, which would otherwise cap the fleet well below its engines' rate.

A server that cannot be reached is waited for, not failed: requests hold their place (so
the worker's in-flight bound fills and its partitions pause) and the worker reports
not-ready with the reason until a server answers again. A request the server refuses or
fails is an EngineError, retried and then dead-lettered by the caller as with the
in-process engine.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog

from ..config import RemoteEngineSettings
from ..errors import TransientError
from ..prompts import Tokenizer, answer_token_ids
from ..retry import Backoff
from . import EngineDead, EngineError, Score
from .openai_api import (
    ServerMismatch,
    check_answer_logprobs,
    classify_status,
    completion_body,
    score_reply,
    served_max_model_len,
)
from .tokenizer import load_tokenizer

log = structlog.get_logger("worker.engine.remote")


class Unavailable(TransientError):
    """The server cannot be reached or will not serve anyone now; worth waiting for."""


@dataclass(eq=False)
class _Waiting:
    """A prompt queued for the next request, and where its answer goes."""

    prompt: list[int]
    answer: asyncio.Future[Score]


@dataclass(eq=False)
class Endpoint:
    url: str
    down: str | None = None  # why it is out of reach, until it answers again


class Endpoints:
    """The servers of ``engine.url`` in turn, skipping those out of reach while any is up."""

    def __init__(self, urls: list[str]) -> None:
        self.all = [Endpoint(url) for url in urls]
        self._turn = itertools.cycle(range(len(self.all)))

    def pick(self) -> Endpoint:
        for _ in self.all:
            endpoint = self.all[next(self._turn)]
            if endpoint.down is None:
                return endpoint
        # Every server is out of reach: each is tried again in turn.
        return self.all[next(self._turn)]

    @property
    def unready(self) -> str | None:
        """Why nothing can be classified now: every server is out of reach."""
        if all(endpoint.down for endpoint in self.all):
            return "; ".join(str(endpoint.down) for endpoint in self.all)
        return None


class RemoteClassifier:
    """Scores token-id prompts on remote servers. Build with ``await RemoteClassifier.start``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoints: Endpoints,
        tokenizer: Tokenizer,
        model_name: str,
        max_model_len: int,
        settings: RemoteEngineSettings,
    ) -> None:
        self._session = session
        self._endpoints = endpoints
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._per_request = settings.prompts_per_request
        self._queue: list[_Waiting] = []
        self._backoff_max_s = settings.backoff_max_s
        self._closed = False
        self._closing: asyncio.Task[None] | None = None  # the session's close, once asked
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_model_len = max_model_len
        self._no, self._yes = answer_token_ids(tokenizer)

    @classmethod
    async def start(cls, settings: RemoteEngineSettings) -> RemoteClassifier:
        """Load the tokenizer, connect, and check every server; raise EngineError naming
        the setting to change when one cannot serve this worker."""
        source = settings.tokenizer or settings.model
        tokenizer: Tokenizer = await asyncio.to_thread(load_tokenizer, source)
        no, yes = answer_token_ids(tokenizer)
        name = settings.served_model_name or settings.model
        session = _session(settings)
        try:
            lengths = [
                await _check_server(session, url, name, settings, no, yes)
                for url in settings.urls()
            ]
        except BaseException:
            await session.close()
            raise
        # The worker fits prompts to the smallest context of the fleet, and to its own
        # setting when that is smaller still.
        max_len = min([*lengths, settings.max_model_len or min(lengths)])
        log.info("engine servers checked", urls=settings.urls(), model=name, max_model_len=max_len)
        return cls(session, Endpoints(settings.urls()), tokenizer, name, max_len, settings)

    async def score(self, prompt_token_ids: list[int]) -> Score:
        async with self._slots:
            waiting = _Waiting(prompt_token_ids, asyncio.get_running_loop().create_future())
            self._queue.append(waiting)
            # The request runs in a caller's own task, never a detached one, so whoever
            # supervises the callers supervises the requests and their waits too.
            if len(self._queue) >= self._per_request:
                await self._answer(self._take())
            elif len(self._queue) == 1:
                # After the other prompts asked for in this turn of the loop have queued.
                await asyncio.sleep(0)
                if self._queue:
                    await self._answer(self._take())
            return await waiting.answer

    def _take(self) -> list[_Waiting]:
        group = self._queue[: self._per_request]
        del self._queue[: self._per_request]
        return group

    async def _answer(self, group: list[_Waiting]) -> None:
        try:
            scores = await self._request([w.prompt for w in group])
        except (EngineError, EngineDead) as exc:
            if len(group) > 1 and exc.retriable:
                # One bad prompt fails its whole request: alone, each fails or passes alone.
                await asyncio.gather(*(self._answer([w]) for w in group))
                return
            _settle(group, exc)
        except BaseException as exc:  # this caller cancelled: the others must not hang
            _settle(group, EngineDead(f"engine request abandoned: {exc!r}"))
            raise
        else:
            for waiting, score in zip(group, scores, strict=True):
                if not waiting.answer.done():
                    waiting.answer.set_result(score)

    async def _request(self, prompts: list[list[int]]) -> list[Score]:
        body = orjson.dumps(completion_body(self.model_name, prompts, self._no, self._yes))
        reply = await self._post_until_reached(body)
        return score_reply(reply, self._no, self._yes, [len(p) for p in prompts])

    async def _post_until_reached(self, body: bytes) -> Any:
        delays = Backoff(float("inf"), self._backoff_max_s)
        while True:
            if self._closed:
                raise EngineDead("engine client closed")
            endpoint = self._endpoints.pick()
            try:
                reply = await _post(self._session, endpoint.url, body)
            except Unavailable as exc:
                if endpoint.down is None:
                    log.warning("engine server out of reach; waiting", error=str(exc))
                endpoint.down = str(exc)
                # An unlimited budget: next() always has a delay.
                await asyncio.sleep(delays.next() or self._backoff_max_s)
                continue
            if endpoint.down is not None:
                log.info("engine server answers again", url=endpoint.url)
                endpoint.down = None
            return reply

    @property
    def unready(self) -> str | None:
        """Why the worker cannot classify now (read by /readyz)."""
        return self._endpoints.unready

    @property
    def dead(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # requests waiting for a server end with EngineDead
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop left: the process is ending and takes the sockets with it
        self._closing = loop.create_task(self._session.close())


def _settle(group: list[_Waiting], error: EngineError | EngineDead) -> None:
    for waiting in group:
        if not waiting.answer.done():
            waiting.answer.set_exception(error)


def _session(settings: RemoteEngineSettings) -> aiohttp.ClientSession:
    try:
        key = settings.key()
    except OSError as exc:
        raise EngineError(f"engine.api_key_file cannot be read: {exc}") from None
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return aiohttp.ClientSession(
        headers=headers,
        timeout=aiohttp.ClientTimeout(
            total=settings.request_timeout_s, connect=settings.connect_timeout_s
        ),
        connector=aiohttp.TCPConnector(limit=settings.max_concurrency),
        raise_for_status=False,
    )


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> Any:
    """One completion request; Unavailable when the server is out of reach."""
    try:
        async with session.post(f"{url}/v1/completions", data=body) as response:
            text = await response.text()
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        # Refused, reset, or dropped mid-answer: the server is gone, not the request bad
        # (a read timeout is a ServerTimeoutError and falls through to a failed request).
        if isinstance(exc, aiohttp.ServerTimeoutError) and not isinstance(
            exc, aiohttp.ConnectionTimeoutError
        ):
            raise EngineError(f"engine server {url} did not answer in time") from exc
        raise Unavailable(f"engine server {url} unreachable: {_describe(exc)}") from exc
    except TimeoutError as exc:
        raise EngineError(f"engine server {url} did not answer in time") from exc
    if response.status != 200:
        refusal = classify_status(response.status, text, url)
        if refusal.unavailable:
            raise Unavailable(refusal.reason)
        raise EngineError(refusal.reason)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise EngineError(f"engine server {url} answered with invalid JSON") from exc


async def _check_server(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    settings: RemoteEngineSettings,
    no: int,
    yes: int,
) -> int:
    """One server at start-up: reachable, serving ``name``, giving processed logprobs."""
    delays = Backoff(settings.connect_retry_s, settings.backoff_max_s)
    while True:
        try:
            return await _check_once(session, url, name, no, yes)
        except Unavailable as exc:
            delay = delays.next()
            if delay is None:
                raise EngineError(f"{exc}: check engine.url (and engine.api_key)") from None
            log.warning("engine server out of reach; retrying", error=str(exc), in_s=delay)
            await asyncio.sleep(delay)
        except ServerMismatch as exc:
            raise EngineError(str(exc)) from None


async def _check_once(
    session: aiohttp.ClientSession, url: str, name: str, no: int, yes: int
) -> int:
    models = await _get_models(session, url)
    length = served_max_model_len(models, name, url)
    try:
        body = orjson.dumps(completion_body(name, [[yes]], no, yes))
        reply = await _post(session, url, body)
    except EngineError as exc:
        raise ServerMismatch(f"engine server {url} failed a test request: {exc}") from None
    check_answer_logprobs(reply, no, yes)
    return length


async def _get_models(session: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with session.get(f"{url}/v1/models") as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"engine server {url} unreachable: {_describe(exc)}") from exc
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


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
