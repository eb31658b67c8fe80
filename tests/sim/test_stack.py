"""SimStack runs all three simulators together; ``listingbot sim`` serves them standalone."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from listingbot.app import App
from listingbot.clock import FakeClock
from listingbot.config import parse_config
from listingbot.sim import SimStack
from listingbot.sim.cli import build_parser, main, serve
from listingbot.sim.market import Market
from tests.sim.helpers import basic, bearer


async def test_stack_serves_all_three_apis_on_loopback(http: aiohttp.ClientSession) -> None:
    """One search, one Kato page and one ChatKitty send work with the stack's credentials."""
    clock = FakeClock()
    async with SimStack(seed=5, clock=clock, kotohomes_count=30, kato_count=10) as sims:
        assert sims.kotohomes_url.startswith("http://127.0.0.1:")
        params = {"key": sims.kotohomes_key, "zip_codes": "10001"}
        async with http.get(f"{sims.kotohomes_url}/v1/listings", params=params) as response:
            assert response.status == 200
        form = {
            "grant_type": "client_credentials",
            "client_id": sims.kato_client_id,
            "client_secret": sims.kato_client_secret,
        }
        async with http.post(f"{sims.kato_url}/oauth/token", data=form) as response:
            kato = bearer((await response.json())["access_token"])
        async with http.get(f"{sims.kato_url}/v2/availability", headers=kato) as response:
            assert len((await response.json())["data"]) == 10
        headers = {"Authorization": basic(sims.chatkitty_client_id, sims.chatkitty_client_secret)}
        async with http.post(
            sims.chatkitty_token_url, data={"grant_type": "client_credentials"}, headers=headers
        ) as response:
            chat = bearer((await response.json())["access_token"])
        async with http.post(
            f"{sims.chatkitty_url}/v1/channels/704/messages",
            json={"type": "TEXT", "body": "hello"},
            headers=chat,
        ) as response:
            assert response.status == 200
        assert [m["body"] for m in sims.chatkitty.messages[704]] == ["hello"]


async def test_stack_shares_one_market_faults_and_clock() -> None:
    """The three simulators see the same market, faults and clock; no ports are opened."""
    clock = FakeClock()
    sims = SimStack(seed=2, clock=clock, kotohomes_count=5, kato_count=5)
    assert sims.market.now == clock.now()
    assert sims.kotohomes.market is sims.kato.market is sims.market
    assert sims.kotohomes.faults is sims.kato.faults is sims.chatkitty.faults is sims.faults
    assert sims.kato.clock is sims.chatkitty.clock is clock
    await sims.close()  # closing a stack that never started is harmless


def test_stack_takes_a_market_or_market_settings_not_both() -> None:
    """Conflicting market arguments are refused."""
    with pytest.raises(TypeError):
        SimStack(market=Market(1, kotohomes_count=1, kato_count=1), kato_count=3)


@contextlib.asynccontextmanager
async def sim_command(argv: list[str]) -> AsyncIterator[io.StringIO]:
    """`listingbot sim ARGV` on free ports, yielding its output once the banner is out."""
    args = build_parser().parse_args(
        ["--kotohomes-port", "0", "--kato-port", "0", "--chatkitty-port", "0", *argv]
    )
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(args, stop=stop, out=out))
    try:
        for _ in range(500):
            if "market:" in out.getvalue() or task.done():
                break
            await asyncio.sleep(0.01)
        yield out
    finally:
        stop.set()
        await task


async def test_cli_prints_credentials_channels_and_stops_cleanly() -> None:
    """`listingbot sim` announces the credentials and channels, then stops cleanly."""
    async with sim_command(["--seed", "4"]) as out:
        banner = out.getvalue()
    assert "key: test-kotohomes-key" in banner
    assert "client_id: test-kato-id" in banner
    assert "702 (nyc-homes)" in banner
    assert out.getvalue().endswith("simulators stopped\n")


async def test_cli_prints_config_sections_that_work_when_pasted(tmp_path: Path) -> None:
    """The printed `chatkitty` and `sources` sections, pasted into a config file as they
    are, make a working config: a real `once` polls both simulators and posts."""
    async with sim_command(["--seed", "4"]) as out:
        banner = out.getvalue()
        pasted = banner[banner.index("chatkitty:") : banner.index("\n\n")]
        text = (
            f"state: {{path: {tmp_path / 'state.sqlite3'}}}\n{pasted}\n"
            "subscriptions:\n"
            "  - {name: homes, source: kotohomes, channel: 702, first_run: post,\n"
            "     filters: {latitude: 40.75, longitude: -73.99, radius: 100, bedrooms_min: 5}}\n"
            "  - {name: offices, source: kato, channel: 704, filters: {}}\n"
            "ops: {listen: null}\n"
        )
        app = App(parse_config(text, env={}, source="pasted.yaml"))
        await app.start()
        try:
            assert await app.once()
        finally:
            await app.close()
    assert (app.totals.polls, app.totals.failed_polls) == (2, 0)
    assert app.totals.sent > 0


def test_cli_rejects_an_unknown_fault() -> None:
    """A bad --fault is a usage error (exit code 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--fault", "rate_teapot=1"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(("argv", "status"), [([], 400), (["--kotohomes-mode", "seed"], 200)])
async def test_cli_serves_todays_kotohomes_or_the_seeds(
    http: aiohttp.ClientSession, argv: list[str], status: int
) -> None:
    """By default `listingbot sim` is today's Kotohomes (states alone refused);
    --kotohomes-mode seed serves the seed's (states alone answered)."""
    async with sim_command(argv) as out:
        banner = out.getvalue()
        url = re.search(r"api_url: (http://127\.0\.0\.1:\d+)\s+key:", banner)
        assert url is not None, banner
        params = {"key": "test-kotohomes-key", "states": "NY"}
        async with http.get(f"{url.group(1)}/v1/listings", params=params) as response:
            assert response.status == status
