"""A local HTTP server for media tests, on 127.0.0.1 only: files, redirects, errors, slowness."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class MediaServer:
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # name: (body, type)
    failures: Counter = field(default_factory=Counter)  # name: 500s still to answer
    hits: Counter = field(default_factory=Counter)
    slow_s: float = 5.0
    base: str = ""
    _runner: web.AppRunner | None = None

    def add(self, name: str, body: bytes, content_type: str = "image/png") -> str:
        self.files[name] = (body, content_type)
        return f"{self.base}/f/{name}"

    async def start(self) -> MediaServer:
        app = web.Application()
        app.add_routes(
            [
                web.get("/f/{name}", self._file),
                web.get("/to", self._redirect),
                web.get("/status/{code}", self._status),
                web.get("/slow/{name}", self._slow),
                web.get("/stream/{size}", self._stream),
            ]
        )
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        if self.failures[name] > 0:
            self.failures[name] -= 1
            return web.Response(status=500, text="try again")
        if name not in self.files:
            return web.Response(status=404)
        body, content_type = self.files[name]
        return web.Response(body=body, content_type=content_type)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.slow_s)
        return await self._file(request)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """A chunked body of the given size with no Content-Length."""
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        left = int(request.match_info["size"])
        while left > 0:
            await response.write(b"\0" * min(left, 65536))
            left -= 65536
        await response.write_eof()
        return response
