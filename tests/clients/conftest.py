"""A scripted HTTP server on loopback for the client tests, plus the usual fixtures.

The clients run unchanged against a real aiohttp server: each (method, path) answers from
a script of replies (the last one repeats), and every request is recorded as received.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from listingbot.clock import FakeClock


@dataclass
class Reply:
    """One scripted answer. ``hang`` never answers (a timeout); ``drop`` closes the socket."""

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    drop: bool = False


@dataclass
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    raw_query: str
    headers: dict[str, str]
    body: str

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body))

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Seen], Reply | Awaitable[Reply]]


class FakeServer:
    """Answers from per-route scripts; ``requests`` lists everything received, in order."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._scripts: dict[tuple[str, str], list[Reply | Handler]] = {}
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    def script(self, method: str, path: str, *replies: Reply | Handler) -> None:
        """Answer ``method path`` with ``replies`` in turn; the last one repeats."""
        self._scripts[(method.upper(), path)] = list(replies)

    def seen(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    async def start(self) -> None:
        await self._server.start_server()

    async def close(self) -> None:
        self._release.set()
        await self._server.close()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            raw_query=request.query_string,
            headers=dict(request.headers),
            body=(await request.read()).decode("utf-8", "replace"),
        )
        self.requests.append(seen)
        script = self._scripts.get((request.method, request.path))
        if not script:
            return web.json_response({"message": "unscripted"}, status=418)
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, Reply):
            reply = step
        else:
            produced = step(seen)
            reply = produced if isinstance(produced, Reply) else await produced
        if reply.hang:
            await self._release.wait()
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            await self._release.wait()
        if reply.text is not None:
            return web.Response(status=reply.status, text=reply.text, headers=reply.headers)
        if reply.json is None and reply.status == 204:
            return web.Response(status=204, headers=reply.headers)
        return web.json_response(reply.json, status=reply.status, headers=reply.headers)


class RecordingObserver:
    """A RequestObserver that remembers every call."""

    def __init__(self) -> None:
        self.done: list[tuple[str, int | None]] = []
        self.waits: list[float] = []
        self.tokens: list[str] = []
        self.retries: list[str] = []

    def request_done(self, api: str, status: int | None, duration_s: float) -> None:
        self.done.append((api, status))

    def rate_limit_wait(self, api: str, seconds: float) -> None:
        self.waits.append(seconds)

    def token_fetched(self, api: str) -> None:
        self.tokens.append(api)

    def retry(self, api: str, reason: str) -> None:
        self.retries.append(reason)


def refused_url() -> str:
    """A loopback URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()
