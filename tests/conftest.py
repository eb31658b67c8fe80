"""Shared fixtures: a fake clock, the simulators, and a guard against secret leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from listingbot.clock import FakeClock
from listingbot.logs import configure_logging
from listingbot.sim import SimStack
from tests.harness import SECRETS, LogCapture, make_sims


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sims(clock: FakeClock) -> AsyncIterator[SimStack]:
    async with make_sims(clock) as stack:
        yield stack


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Captures listingbot's log output as JSON lines."""
    buffer = LogCapture()
    configure_logging(level="debug", fmt="json", stream=buffer)
    yield buffer
    configure_logging(level="info", fmt="json")


@pytest.fixture
def no_secret_leaks(
    logs: LogCapture, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> Iterator[None]:
    """Fails the test if any secret shows up in logs, stdout, stderr or posted messages."""
    chat = None
    if "sims" in request.fixturenames:
        chat = request.getfixturevalue("sims").chatkitty.messages
    yield
    out = capsys.readouterr()
    texts = {"logs": logs.getvalue(), "stdout": out.out, "stderr": out.err}
    if chat is not None:
        texts["chat"] = repr(chat)
    for where, text in texts.items():
        for name, value in SECRETS.items():
            assert value not in text, f"{name} leaked into {where}"
