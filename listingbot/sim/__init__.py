"""Local stand-ins for Kotohomes, Kato and ChatKitty, served on loopback.

They follow the API references (auth, pagination, limits, error bodies) as strictly as the
real services would, serve a seeded market that changes over time, and inject faults on
demand. ``SimStack`` runs all three in the running event loop::

    async with SimStack(seed=7, clock=fake_clock) as sims:
        sims.market.add_kotohomes(state="NY", price=450_000)
        ...  # point the service at sims.kotohomes_url, sims.kato_url, sims.chatkitty_url
        assert sims.chatkitty.messages[702]
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from listingbot.clock import Clock, SystemClock
from listingbot.sim._http import RequestLog, start_app
from listingbot.sim._places import TERRITORIES, us_zip_codes
from listingbot.sim.chatkitty import DEFAULT_CLIENTS as CHATKITTY_CLIENTS
from listingbot.sim.chatkitty import ChatKittySim
from listingbot.sim.faults import Faults
from listingbot.sim.kato import DEFAULT_CLIENTS as KATO_CLIENTS
from listingbot.sim.kato import KatoSim
from listingbot.sim.kato import Mode as KatoMode
from listingbot.sim.kotohomes import DEFAULT_KEY as KOTOHOMES_KEY
from listingbot.sim.kotohomes import KotohomesSim
from listingbot.sim.kotohomes import Mode as KotohomesMode
from listingbot.sim.market import Market, MarketEvent

__all__ = [
    "CHATKITTY_CLIENT_ID",
    "CHATKITTY_CLIENT_SECRET",
    "DEFAULT_CHANNELS",
    "KATO_CLIENT_ID",
    "KATO_CLIENT_SECRET",
    "KOTOHOMES_KEY",
    "TERRITORIES",
    "ChatKittySim",
    "Faults",
    "KatoMode",
    "KatoSim",
    "KotohomesMode",
    "KotohomesSim",
    "Market",
    "MarketEvent",
    "RequestLog",
    "SimStack",
    "us_zip_codes",
]

KATO_CLIENT_ID, KATO_CLIENT_SECRET = next(iter(KATO_CLIENTS.items()))
CHATKITTY_CLIENT_ID, CHATKITTY_CLIENT_SECRET = next(iter(CHATKITTY_CLIENTS.items()))

# Enough channels for a demo with a US and a UK audience; 702 is the reference's example.
DEFAULT_CHANNELS: tuple[tuple[int, str, str], ...] = (
    (702, "nyc-homes", "NYC homes"),
    (703, "west-coast-homes", "West coast homes"),
    (704, "london-offices", "London offices"),
    (705, "uk-industrial", "UK industrial"),
)


class SimStack:
    """All three simulators on free loopback ports (or the given ones), sharing one
    market, one ``Faults`` and one clock.

    The market starts at ``clock.now()`` when a clock is given, else at the fixed
    ``market.DEFAULT_START`` (so a default stack is fully deterministic).
    ``kotohomes_mode`` and ``kato_mode`` pick today's APIs (``"current"``) or the seed's
    (``"seed"``); see ``listingbot.sim.kotohomes`` and ``listingbot.sim.kato``. URLs are roots
    without a path: Kotohomes serves ``/v1/listings``, Kato ``/v2/availability``,
    ChatKitty ``{chatkitty_prefix}/channels`` and its token at ``chatkitty_token_url``.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        market: Market | None = None,
        faults: Faults | None = None,
        clock: Clock | None = None,
        chatkitty_prefix: str = "/v1",
        channels: Sequence[tuple[int, str, str]] = DEFAULT_CHANNELS,
        kato_rpm: int = 60,
        kotohomes_mode: KotohomesMode = "current",
        kato_mode: KatoMode = "current",
        host: str = "127.0.0.1",
        kotohomes_port: int = 0,
        kato_port: int = 0,
        chatkitty_port: int = 0,
        **market_kwargs: Any,
    ) -> None:
        if market is not None and market_kwargs:
            raise TypeError("pass either a market or market settings, not both")
        self.clock: Clock = clock if clock is not None else SystemClock()
        if market is None:
            start = clock.now() if clock is not None else None
            market = Market(seed, start=start, **market_kwargs)
        self.market = market
        self.faults = faults if faults is not None else Faults(seed)
        self.kotohomes = KotohomesSim(self.market, faults=self.faults, mode=kotohomes_mode)
        self.kato = KatoSim(
            self.market,
            requests_per_minute=kato_rpm,
            clock=self.clock,
            faults=self.faults,
            mode=kato_mode,
        )
        self.chatkitty = ChatKittySim(
            channels=channels, prefix=chatkitty_prefix, clock=self.clock, faults=self.faults
        )
        self.host = host
        self._ports = (kotohomes_port, kato_port, chatkitty_port)
        self._runners: list[web.AppRunner] = []
        self.kotohomes_url = ""
        self.kato_url = ""
        self.chatkitty_url = ""
        self.chatkitty_token_url = ""
        self.chatkitty_prefix = chatkitty_prefix
        # The credentials the simulators accept, for configs and the demo.
        self.kotohomes_key = KOTOHOMES_KEY
        self.kato_client_id = KATO_CLIENT_ID
        self.kato_client_secret = KATO_CLIENT_SECRET
        self.chatkitty_client_id = CHATKITTY_CLIENT_ID
        self.chatkitty_client_secret = CHATKITTY_CLIENT_SECRET

    async def start(self) -> None:
        """Serve the three apps; on failure nothing is left running."""
        apps = (self.kotohomes.app(), self.kato.app(), self.chatkitty.app())
        urls: list[str] = []
        try:
            for app, port in zip(apps, self._ports, strict=True):
                runner, url = await start_app(app, self.host, port)
                self._runners.append(runner)
                urls.append(url)
        except BaseException:
            await self.close()
            raise
        self.kotohomes_url, self.kato_url, self.chatkitty_url = urls
        self.chatkitty_token_url = f"{self.chatkitty_url}/oauth/token"

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def __aenter__(self) -> SimStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
