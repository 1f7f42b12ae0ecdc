"""Downloading one media URL from untrusted input, hop by hop.

Each hop: the URL is checked (``guard.check_url``), its host resolved once and every address
checked (``guard.check_addresses``), and the connection made to those addresses only (no
second lookup). Redirects are followed by hand up to ``media.max_redirects``, each new URL
checked again. Bytes are counted while they stream (after any content decoding) and the
download stops as soon as they pass the limit. Proxies from the environment are never used:
a proxy would connect to addresses we did not check.

The resolver and the transport are parameters so that tests can answer with any address
and prove that no connection is attempted to a refused one.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from ..config import MediaSettings
from .guard import Target, check_addresses, check_url
from .refs import MediaRejected, MediaUnavailable

Resolver = Callable[[str, int], Awaitable[list[str]]]
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Answers worth asking again: the server is busy or broken now, not the item.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Response(Protocol):
    status: int
    headers: Any  # a case-insensitive mapping

    def chunks(self) -> AsyncIterator[bytes]: ...


Transport = Callable[[Target, list[str], MediaSettings], AbstractAsyncContextManager[Response]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (IP literals answer themselves)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise MediaRejected("unresolvable_host", f"host {host!r} does not resolve: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Downloaded:
    data: bytes
    mime: str | None
    url: str  # after redirects


async def download(
    url: str,
    settings: MediaSettings,
    max_bytes: int,
    resolver: Resolver = system_resolver,
    transport: Transport | None = None,
) -> Downloaded:
    """The body at ``url``; MediaRejected for a refused or bad item, MediaUnavailable for a
    failure that may pass."""
    transport = transport or aiohttp_transport
    for _ in range(settings.max_redirects + 1):
        target = check_url(url, settings)
        addresses = await resolver(target.host, target.port)
        check_addresses(target.host, addresses, settings)
        async with _translated(transport(target, addresses, settings)) as response:
            if response.status in REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise MediaRejected("bad_redirect", f"{url} redirects without a Location")
                url = urljoin(url, location)
                continue
            _check_status(url, response.status)
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise MediaRejected("too_large", f"{url} is {declared} bytes, over {max_bytes}")
            data = await _read_capped(response, url, max_bytes)
            mime = response.headers.get("Content-Type")
            return Downloaded(data, mime.split(";")[0].strip() if mime else None, url)
    raise MediaRejected("too_many_redirects", f"more than {settings.max_redirects} redirects")


def _check_status(url: str, status: int) -> None:
    if status in TRANSIENT_STATUS:
        raise MediaUnavailable(f"http_{status}", f"{url} answered {status}")
    if status != 200:
        raise MediaRejected(f"http_{status}", f"{url} answered {status}")


async def _read_capped(response: Response, url: str, max_bytes: int) -> bytes:
    parts, size = [], 0
    async for chunk in response.chunks():
        size += len(chunk)
        if size > max_bytes:
            raise MediaRejected("too_large", f"{url} is over {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


@asynccontextmanager
async def _translated(opened: AbstractAsyncContextManager[Response]) -> AsyncIterator[Response]:
    """Network failures as MediaUnavailable; everything else as it is."""
    try:
        async with opened as response:
            yield response
    except TimeoutError:
        raise MediaUnavailable("timeout", "the media server did not answer in time") from None
    except aiohttp.ClientPayloadError as exc:
        raise MediaUnavailable("connection", f"the transfer broke off: {exc}") from None
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise MediaUnavailable("connection", f"{type(exc).__name__}: {exc}") from None


class _PinnedResolver(AbstractResolver):
    """Answers with the addresses already checked, never asking DNS again."""

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self._addresses
        ]

    async def close(self) -> None:
        pass


@dataclass
class _AiohttpResponse:
    status: int
    headers: Any
    _content: aiohttp.StreamReader

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._content.iter_chunked(64 * 1024):
            yield chunk


@asynccontextmanager
async def aiohttp_transport(
    target: Target, addresses: list[str], settings: MediaSettings
) -> AsyncIterator[Response]:
    """One GET over aiohttp, connecting only to ``addresses``; redirects are not followed."""
    timeout = aiohttp.ClientTimeout(
        total=settings.fetch_timeout_s,
        sock_connect=settings.connect_timeout_s,
        sock_read=settings.read_timeout_s,
    )
    connector = aiohttp.TCPConnector(resolver=_PinnedResolver(addresses), use_dns_cache=False)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
        session.get(target.url, allow_redirects=False) as response,
    ):
        yield _AiohttpResponse(response.status, response.headers, response.content)
