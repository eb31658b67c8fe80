"""End to end: what a channel reads, shaped by its subscription (template, timezone)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from listingbot.clock import FakeClock
from listingbot.sim import SimStack
from tests.harness import config_text, load, messages, running, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def ny_sub(extra: str = "") -> str:
    return (
        "- name: ny-homes\n"
        "  source: kotohomes\n"
        "  channel: 702\n"
        f"  filters: {{states: [NY], zip_codes: {zips('NY')}}}\n" + extra
    )


def cfg(sims: SimStack, tmp_path: Path, subs: str) -> str:
    return config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",))


async def test_a_subscription_template_shapes_the_posted_text(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A new listing is posted as the subscription's template says, sanitized."""
    subs = ny_sub('  template: "{event} <@here> {place} — {price}\\n{url}"\n')
    async with running(load(tmp_path, cfg(sims, tmp_path, subs)), clock) as app:
        await app.once()
        record = sims.market.add_kotohomes(state="NY", price=450_000, street_address="1 Elm St")
        assert await app.once()
    (message,) = messages(sims, 702)
    assert message["body"].split("\n") == [
        f"🏠 New listing \u2039@here> 1 Elm St, {record['city']}, NY {record['zip_code']}"
        " — $450,000",
        f"https://www.kotohomes.com/listings/{record['id']}",
    ]


async def test_open_house_is_shown_in_the_subscription_time_zone(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The default text shows the next open house on the subscription's clock."""
    subs = ny_sub("  timezone: America/New_York\n")
    async with running(load(tmp_path, cfg(sims, tmp_path, subs)), clock) as app:
        await app.once()
        start = sims.market.now.replace(hour=15, minute=0, second=0, microsecond=0)
        start += timedelta(days=3)
        sims.market.add_kotohomes(
            state="NY",
            open_houses=[
                {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()}
            ],
        )
        assert await app.once()
    (message,) = messages(sims, 702)
    local = start.astimezone(ZoneInfo("America/New_York"))
    expected = f"Open house: {local:%a} {local.day} {local:%b} {local:%H:%M}\u2013"
    assert any(line.startswith(expected) for line in message["body"].split("\n"))
