"""The classifier on a fleet of vLLM OpenAI-compatible servers: the worker's own prompt ids
over HTTP, many requests in flight.

The worker builds prompts exactly as for the in-process engine and sends their token ids,
so prompts are identical and every server's prefix cache is hit; only the tokenizer is
loaded here. Prompts asked for at the same moment (a micro-batch's) travel together, up to
``engine.prompts_per_request`` a request: a server spends far more CPU per request than
per prompt, which would otherwise cap the fleet well below its engines' rate.

A server that cannot be reached is waited for, not failed: requests hold their place (so
the worker's in-flight bound fills and its partitions pause) and the worker reports
not-ready with the reason until a server answers again. While another server answers, the
one out of reach gets no traffic and is probed (``GET /v1/models``, on a backoff schedule,
from the callers' own tasks) until it answers, then takes its turn again. A request the
server refuses or fails is an EngineError, retried and then dead-lettered by the caller as
with the in-process engine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog

from ..config import RemoteEngineSettings
from ..errors import TransientError
from ..policies import parse_policy
from ..prompts import (
    PromptError,
    Tokenizer,
    answer_token_ids,
    assemble,
    build_policy_prompt,
    tokenize_contents,
)
from ..retry import Backoff
from . import EngineDead, EngineError, Score
from .fleet import Endpoints
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
        self._probe_timeout = aiohttp.ClientTimeout(total=settings.connect_timeout_s)
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
        answer_token_ids(tokenizer)  # fails here, before any server is asked
        name = settings.served_model_name or settings.model
        session = _session(settings)
        try:
            lengths = [
                await _check_server(session, url, name, settings, tokenizer)
                for url in settings.urls()
            ]
        except BaseException:
            await session.close()
            raise
        # The worker fits prompts to the smallest context of the fleet, and to its own
        # setting when that is smaller still.
        max_len = min([*lengths, settings.max_model_len or min(lengths)])
        log.info("engine servers checked", urls=settings.urls(), model=name, max_model_len=max_len)
        endpoints = Endpoints(settings.urls(), settings.backoff_max_s)
        return cls(session, endpoints, tokenizer, name, max_len, settings)

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
            await self._probe_due()
            endpoint = self._endpoints.pick()
            try:
                reply = await _post(self._session, endpoint.url, body)
            except Unavailable as exc:
                if self._endpoints.mark_down(endpoint, str(exc)):
                    log.warning("engine server out of reach; probing it", error=str(exc))
                if self._endpoints.unready:
                    # Every server is out of reach; another that answers is tried at once.
                    # An unlimited budget: next() always has a delay.
                    await asyncio.sleep(delays.next() or self._backoff_max_s)
                continue
            if self._endpoints.mark_up(endpoint):
                log.info("engine server answers again", url=endpoint.url)
            return reply

    async def _probe_due(self) -> None:
        """Ask each server marked down whose probe is due whether it answers again; one that
        does takes its turn. Runs in a caller's task, like the requests themselves."""
        for endpoint in self._endpoints.all:
            if self._endpoints.probe_due(endpoint) != 0:
                continue  # up, or not due yet (a due probe reschedules the next)
            try:
                await _get_models(self._session, endpoint.url, self._probe_timeout)
            except (Unavailable, ServerMismatch) as exc:
                endpoint.down = str(exc)
                continue
            if self._endpoints.mark_up(endpoint):
                log.info("engine server answers again", url=endpoint.url)

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


# The start-up check is a request shaped like real traffic: a policy prompt through the
# model's template with a short content. A degenerate one (a single token) as the first
# request a fresh vLLM CPU server sees has killed its engine process on some CPUs.
CHECK_POLICY = (
    "---\nid: server-check\n---\n"
    "Flag content that offers to sell account passwords or stolen payment card numbers.\n"
    "Ordinary talk about security, passwords or shopping is not flagged."
)
CHECK_CONTENT = "Does anyone know a good recipe for lentil soup?"


def check_prompt(tokenizer: Tokenizer, max_model_len: int) -> list[int]:
    """The start-up check's prompt ids, built as every item's prompt is built."""
    prompt = build_policy_prompt(tokenizer, parse_policy(CHECK_POLICY), max_model_len)
    [content] = tokenize_contents(tokenizer, [CHECK_CONTENT])
    return assemble(prompt, content, "truncate")


async def _check_server(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    settings: RemoteEngineSettings,
    tokenizer: Tokenizer,
) -> int:
    """One server at start-up: reachable, serving ``name``, giving processed logprobs."""
    delays = Backoff(settings.connect_retry_s, settings.backoff_max_s)
    while True:
        try:
            return await _check_once(session, url, name, tokenizer)
        except Unavailable as exc:
            delay = delays.next()
            if delay is None:
                raise EngineError(f"{exc}: check engine.url (and engine.api_key)") from None
            log.warning("engine server out of reach; retrying", error=str(exc), in_s=delay)
            await asyncio.sleep(delay)
        except ServerMismatch as exc:
            raise EngineError(str(exc)) from None


async def _check_once(
    session: aiohttp.ClientSession, url: str, name: str, tokenizer: Tokenizer
) -> int:
    models = await _get_models(session, url)
    length = served_max_model_len(models, name, url)
    no, yes = answer_token_ids(tokenizer)
    try:
        prompt = check_prompt(tokenizer, length)
        reply = await _post(session, url, orjson.dumps(completion_body(name, [prompt], no, yes)))
    except (EngineError, PromptError) as exc:
        raise ServerMismatch(f"engine server {url} failed a test request: {exc}") from None
    check_answer_logprobs(reply, no, yes)
    return length


async def _get_models(
    session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout | None = None
) -> Any:
    try:
        request = session.get(f"{url}/v1/models", **({"timeout": timeout} if timeout else {}))
        async with request as response:
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
