"""Fixtures for the simulator tests: a fake clock, a small market, and a way to serve one
simulator app on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from listingbot.clock import FakeClock
from listingbot.sim._http import start_app
from listingbot.sim.market import Market
from tests.sim.helpers import Serve


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def market(clock: FakeClock) -> Market:
    return Market(seed=7, start=clock.now(), kotohomes_count=80, kato_count=60)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def serve() -> Serve:
    @asynccontextmanager
    async def serving(app: web.Application) -> AsyncIterator[str]:
        runner, url = await start_app(app, "127.0.0.1", 0)
        try:
            yield url
        finally:
            await runner.cleanup()

    return serving
