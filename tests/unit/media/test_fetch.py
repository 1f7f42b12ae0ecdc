"""Fetching over real HTTP from 127.0.0.1: limits, redirects, errors, retries, inline data."""

from __future__ import annotations

import base64
import time

import pytest

from tests.media_server import MediaServer
from worker.config import MediaSettings
from worker.errors import Rejected
from worker.media.fetch import download
from worker.media.refs import MediaRef, MediaRejected, MediaUnavailable
from worker.media.step import MediaStep
from worker.testing import media_samples as samples

RED = (255, 0, 0)
LOCAL = MediaSettings(
    allowed_schemes=["http"],
    allowed_hosts=["127.0.0.1"],
    allow_loopback=True,
    read_timeout_s=0.5,
    fetch_timeout_s=2.0,
)


@pytest.fixture
async def server():
    server = await MediaServer().start()
    yield server
    await server.stop()


async def rejected_rule(url: str, settings: MediaSettings = LOCAL, max_bytes: int = 10_000) -> str:
    with pytest.raises(MediaRejected) as caught:
        await download(url, settings, max_bytes)
    return caught.value.rule


async def test_downloads_the_body_and_its_type(server: MediaServer) -> None:
    body = samples.image(RED)
    got = await download(server.add("a.png", body), LOCAL, 10_000)
    assert (got.data, got.mime) == (body, "image/png")


async def test_redirects_followed_and_each_hop_checked(server: MediaServer) -> None:
    url = server.add("a.png", b"x")
    got = await download(f"{server.base}/to?url={url}", LOCAL, 10_000)
    assert got.data == b"x" and got.url == url
    # A redirect to a host that is not allowed, or to a scheme that is not, stops there.
    assert await rejected_rule(f"{server.base}/to?url=http://evil.example/a") == "host_not_allowed"
    assert await rejected_rule(f"{server.base}/to?url=file:///etc/passwd") == "scheme_not_allowed"
    chain = url
    for _ in range(4):
        chain = f"{server.base}/to?url={chain}"
    assert await rejected_rule(chain) == "too_many_redirects"


async def test_redirect_to_a_private_address_never_connects(server: MediaServer) -> None:
    """The first hop is loopback (allowed); the redirect names a host resolving to 10.x."""
    settings = LOCAL.model_copy(update={"allowed_hosts": ["127.0.0.1", "cdn.example.com"]})
    seen = []

    async def resolver(host: str, port: int) -> list[str]:
        seen.append(host)
        return ["127.0.0.1"] if host == "127.0.0.1" else ["10.0.0.7"]

    from worker.media.fetch import aiohttp_transport

    def transport(target, addresses, settings):
        assert addresses == ["127.0.0.1"], "a connection was attempted to a refused address"
        return aiohttp_transport(target, addresses, settings)

    url = f"{server.base}/to?url=http://cdn.example.com/a.png"
    with pytest.raises(MediaRejected) as caught:
        await download(url, settings, 1000, resolver, transport)
    assert caught.value.rule == "address_not_allowed" and seen == ["127.0.0.1", "cdn.example.com"]


async def test_statuses(server: MediaServer) -> None:
    assert await rejected_rule(f"{server.base}/f/missing.png") == "http_404"
    assert await rejected_rule(f"{server.base}/status/403") == "http_403"
    for code in (500, 503, 429):
        with pytest.raises(MediaUnavailable) as caught:
            await download(f"{server.base}/status/{code}", LOCAL, 1000)
        assert caught.value.cause == f"http_{code}"


async def test_size_limit_by_header_and_while_streaming(server: MediaServer) -> None:
    assert await rejected_rule(server.add("big", b"\0" * 20_000)) == "too_large"
    started = time.monotonic()
    assert await rejected_rule(f"{server.base}/stream/50000000", max_bytes=100_000) == "too_large"
    assert time.monotonic() - started < 5  # stopped early, not after 50 MB


async def test_slow_server_times_out(server: MediaServer) -> None:
    server.add("a.png", b"x")
    with pytest.raises(MediaUnavailable) as caught:
        await download(f"{server.base}/slow/a.png", LOCAL, 1000)
    assert caught.value.cause == "timeout"


async def test_step_retries_a_500_then_succeeds(server: MediaServer) -> None:
    url = server.add("flaky.png", samples.image(RED))
    server.failures["flaky.png"] = 2
    step = MediaStep(LOCAL.model_copy(update={"fetch_retries": 2}))
    (item,) = await step.prepare([MediaRef(type="image", url=url)])
    assert server.hits["flaky.png"] == 3
    assert item.where == url and item.data == samples.image(RED) and len(item.frames) == 1
    assert item.sha256 == item.digest(samples.image(RED))
    assert step.held == len(item.data)
    step.release([item])
    assert step.held == 0


async def test_step_gives_up_as_media_unavailable(server: MediaServer) -> None:
    url = server.add("down.png", b"x")
    server.failures["down.png"] = 10
    step = MediaStep(LOCAL.model_copy(update={"fetch_retries": 1}))
    with pytest.raises(Rejected) as caught:
        await step.prepare([MediaRef(type="image", url=url)])
    assert caught.value.kind == "media_unavailable"
    assert url in caught.value.reason and "http_500" in caught.value.reason
    assert server.hits["down.png"] == 2


async def test_step_inline_data_and_event_limits() -> None:
    png = samples.image(RED)
    ref = MediaRef(type="image", data=base64.b64encode(png).decode())
    step = MediaStep(LOCAL)
    (item,) = await step.prepare([ref])
    assert (item.where, item.data) == ("media[0]", png)

    async def rule(refs, settings=LOCAL) -> str:
        with pytest.raises(MediaRejected) as caught:
            await MediaStep(settings).prepare(refs)
        return caught.value.rule

    assert await rule([ref] * 5) == "too_many_items"
    noisy = samples.noise()  # about 3 kB
    big = MediaRef(type="image", data=base64.b64encode(noisy).decode())
    assert await rule([big], LOCAL.model_copy(update={"max_bytes": 1024})) == "too_large"
    two = LOCAL.model_copy(update={"max_event_bytes": len(noisy) * 3 // 2})
    assert await rule([big, big], two) == "too_large"
    small = MediaRef(type="image", data=base64.b64encode(samples.image(RED, size=(4, 4))).decode())
    assert await rule([MediaRef(type="image", data="not base64!")]) == "bad_base64"
    assert await rule([small, MediaRef(type="video", data=ref.data)]) == "not_a_video"
