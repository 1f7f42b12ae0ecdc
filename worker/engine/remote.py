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

Items with media go one prompt a request to vLLM's token-in endpoint (``media_api``), the
same token ids with the frames attached, through the same servers, slots, waits and
retries. At start-up every server is asked whether it takes them (``remote_check``); where
one does not, ``accepts_media`` is false and ``no_media`` says why. What an image takes in
a server's prompt is counted from the model's files, as the in-process engine counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog

from ..config import RemoteEngineSettings
from ..prompts import Tokenizer, answer_token_ids
from ..retry import Backoff
from . import EngineDead, EngineError, Score
from .fleet import Endpoints
from .image_tokens import ImageTokensUnknown, model_tokens_per_image
from .media_api import GENERATE_PATH, generate_body, image_parts, score_generate_reply
from .openai_api import ServerMismatch, completion_body, score_reply
from .remote_check import check_server
from .remote_http import COMPLETIONS_PATH, Unavailable, get_models, post
from .tokenizer import load_tokenizer

log = structlog.get_logger("worker.engine.remote")


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
        # Set by start(): every server took a media prompt at its check. Otherwise media
        # items are dead-lettered with no_media as the reason.
        self.accepts_media = False
        self.no_media: str | None = "the engine servers were not checked for media"
        # The most prompt positions an image takes on the servers, counted from the model's
        # files (image_tokens.py); None: images are not fitted to max_model_len.
        self.tokens_per_image: int | None = None

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
            checks = [
                await check_server(session, url, name, settings, tokenizer)
                for url in settings.urls()
            ]
        except BaseException:
            await session.close()
            raise
        # The worker fits prompts to the smallest context of the fleet, and to its own
        # setting when that is smaller still.
        lengths = [check.max_model_len for check in checks]
        max_len = min([*lengths, settings.max_model_len or min(lengths)])
        # Media goes to any server in turn, so every one must take it.
        no_media = "; ".join(check.no_media for check in checks if check.no_media) or None
        log.info("engine servers checked", urls=settings.urls(), model=name, max_model_len=max_len)
        if no_media:
            log.warning("media items will be dead-lettered (model_without_vision)", why=no_media)
        endpoints = Endpoints(settings.urls(), settings.backoff_max_s)
        classifier = cls(session, endpoints, tokenizer, name, max_len, settings)
        classifier.accepts_media, classifier.no_media = no_media is None, no_media
        if classifier.accepts_media:
            classifier.tokens_per_image = await _tokens_per_image(source)
        return classifier

    async def score(self, prompt_token_ids: list[int], media: Sequence[Any] = ()) -> Score:
        if media:
            return await self._score_media(prompt_token_ids, media)
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

    async def _score_media(self, prompt: list[int], frames: Sequence[Any]) -> Score:
        """One media prompt, in a request of its own (the token-in endpoint takes one)."""
        async with self._slots:
            parts = await asyncio.to_thread(image_parts, frames)
            body = generate_body(self.model_name, prompt, parts, self._no, self._yes)
            reply = await self._post_until_reached(orjson.dumps(body), GENERATE_PATH)
            return score_generate_reply(reply, self._no, self._yes, len(prompt))

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

    async def _post_until_reached(self, body: bytes, path: str = COMPLETIONS_PATH) -> Any:
        delays = Backoff(float("inf"), self._backoff_max_s)
        while True:
            if self._closed:
                raise EngineDead("engine client closed")
            await self._probe_due()
            endpoint = self._endpoints.pick()
            try:
                reply = await post(self._session, endpoint.url, body, path)
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
                await get_models(self._session, endpoint.url, self._probe_timeout)
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


async def _tokens_per_image(source: str) -> int | None:
    """What an image takes on the servers, from the model files the tokenizer came from:
    the servers run vLLM on the same model, so its processor counts the same. When the files
    cannot say, a warning, and media prompts go out unfitted (the servers refuse those that
    do not fit, which end as engine_error)."""
    try:
        return await asyncio.to_thread(model_tokens_per_image, source)
    except ImageTokensUnknown as exc:
        log.warning(
            "prompts with images are not fitted to max_model_len; set engine.tokenizer to "
            "the model's directory (with its config and processor files)",
            why=str(exc),
        )
        return None


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
