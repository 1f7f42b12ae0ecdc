"""The remote engine's requests run in their callers' tasks: prompts asked for together
travel in one request, and a caller cancelled while the fleet is out of reach leaves nothing
running behind it (the worker's supervisor then owns every wait).

Against a small completion server on loopback that answers every prompt with "1".
"""

from __future__ import annotations

import asyncio
import math

import orjson
import pytest
from aiohttp import web

from worker.config import load_settings
from worker.engine.remote import Endpoints, RemoteClassifier, _session
from worker.prompts import answer_token_ids


class _Server:
    """Answers /v1/completions and /inference/v1/generate (every prompt P("1") = 0.75) and
    records each request."""

    def __init__(self, yes: int, no: int) -> None:
        self.requests: list[int] = []  # prompts per request
        self.media: list[dict] = []  # token-in request bodies
        self._top = {f"token_id:{yes}": math.log(0.75), f"token_id:{no}": math.log(0.25)}
        self._yes, self._no = yes, no

    async def completions(self, request: web.Request) -> web.Response:
        prompts = orjson.loads(await request.read())["prompt"]
        self.requests.append(len(prompts))
        choices = [
            {"index": n, "logprobs": {"top_logprobs": [self._top]}} for n in range(len(prompts))
        ]
        return web.json_response({"choices": choices})

    async def generate(self, request: web.Request) -> web.Response:
        self.media.append(orjson.loads(await request.read()))
        top = [
            {"token_id": self._yes, "logprob": math.log(0.75)},
            {"token_id": self._no, "logprob": math.log(0.25)},
        ]
        content = [{**top[0], "top_logprobs": top}]
        return web.json_response({"choices": [{"index": 0, "logprobs": {"content": content}}]})


@pytest.fixture
async def server(tokenizer):
    no, yes = answer_token_ids(tokenizer)
    fake = _Server(yes, no)
    app = web.Application()
    app.router.add_post("/v1/completions", fake.completions)
    app.router.add_post("/inference/v1/generate", fake.generate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


def _classifier(tokenizer, url: str) -> RemoteClassifier:
    engine = load_settings(
        engine={"kind": "remote", "url": url, "model": "m", "backoff_max_s": 0.05}
    ).engine
    return RemoteClassifier(_session(engine), Endpoints([url]), tokenizer, "m", 4096, engine)


async def test_prompts_asked_for_together_travel_in_one_request(tokenizer, server) -> None:
    remote = _classifier(tokenizer, server.url)
    try:
        together = await asyncio.gather(*(remote.score([5, 6, n]) for n in range(7, 12)))
        alone = [await remote.score([5, 6, n]) for n in range(7, 9)]
    finally:
        remote.close()
    assert server.requests == [5, 1, 1]
    assert [s.p_yes for s in together + alone] == pytest.approx([0.75] * 7)


async def test_a_cancelled_caller_leaves_nothing_waiting_behind_it(tokenizer) -> None:
    remote = _classifier(tokenizer, "http://127.0.0.1:9")  # nothing listens there
    before = asyncio.all_tasks()
    callers = [asyncio.create_task(remote.score([5, 6, n])) for n in range(3)]
    await asyncio.sleep(0.3)  # all three wait for the server, retrying
    assert remote.unready is not None and not any(c.done() for c in callers)
    for caller in callers:
        caller.cancel()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert asyncio.all_tasks() - before == set()  # no request task lives on, detached
    remote.close()


async def test_media_prompts_go_alone_to_the_token_in_endpoint_with_their_frames(
    tokenizer, server
) -> None:
    from PIL import Image

    frames = (Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255)))
    remote = _classifier(tokenizer, server.url)
    try:
        scores = await asyncio.gather(
            remote.score([5, 6, 7], media=frames),
            remote.score([5, 6, 8], media=frames[:1]),
            remote.score([5, 6, 9]),
        )
    finally:
        remote.close()
    assert [s.p_yes for s in scores] == pytest.approx([0.75] * 3)
    assert [s.prompt_tokens for s in scores] == [3, 3, 3]
    assert server.requests == [1]  # the text prompt, on its own path
    bodies = sorted(server.media, key=lambda b: b["token_ids"])
    assert [b["token_ids"] for b in bodies] == [[5, 6, 7], [5, 6, 8]]
    assert [len(b["content_parts"]) for b in bodies] == [2, 1]
    assert bodies[0]["content_parts"][0] == bodies[1]["content_parts"][0]  # the same frame
    assert all(b["model"] == "m" for b in bodies)
