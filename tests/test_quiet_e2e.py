"""End to end: quiet hours hold messages, then one digest, against the simulators."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from listingbot.clock import FakeClock
from listingbot.sim import SimStack
from listingbot.store import Store
from tests.harness import config_text, load, messages, meta, running, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

# 23:00 EST on 1 Jan 2026: inside a 22:00-07:00 New York window, which ends at 12:00Z.
NIGHT = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
MORNING = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NIGHT)


def ny_sub(extra: str = "") -> str:
    return (
        "- name: ny-homes\n"
        "  source: kotohomes\n"
        "  channel: 702\n"
        f"  filters: {{states: [NY], zip_codes: {zips('NY')}}}\n" + extra
    )


QUIET = '  quiet_hours: "22:00-07:00"\n  timezone: America/New_York\n'


def cfg(sims: SimStack, tmp_path: Path, subs: str) -> str:
    return config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",))


def ny_ids(sims: SimStack) -> set[str]:
    return {str(r["id"]) for r in sims.market.kotohomes_records() if r.get("state") == "NY"}


async def test_quiet_hours_hold_messages_across_a_restart_then_post_one_digest(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """During quiet hours messages wait in the state file, even across a restart; the
    first poll after the window posts them as one digest."""
    text = cfg(sims, tmp_path, ny_sub(QUIET))
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()  # baseline
        added = [sims.market.add_kotohomes(state="NY")["id"] for _ in range(3)]
        assert await app.once()
    assert messages(sims, 702) == []
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
        assert messages(sims, 702) == []
        clock.advance((MORNING - clock.now()).total_seconds())
        assert await app.once()
    (digest,) = messages(sims, 702)
    info = meta(digest)
    assert info["event"] == "digest"
    assert info["reason"] == "quiet_hours"
    assert [item["listing_id"] for item in info["items"]] == added
    assert digest["body"].startswith("🌙 While it was quiet · 3 updates · ny-homes\n")


async def test_one_message_held_by_quiet_hours_goes_out_as_itself(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A single waiting message needs no digest: it is posted as it was written."""
    async with running(load(tmp_path, cfg(sims, tmp_path, ny_sub(QUIET))), clock) as app:
        assert await app.once()
        record = sims.market.add_kotohomes(state="NY")
        assert await app.once()
        clock.advance((MORNING - clock.now()).total_seconds() - 60)
        assert await app.once()
        assert messages(sims, 702) == []  # 06:59 EST: still quiet
        clock.advance(60)
        assert await app.once()
    (message,) = messages(sims, 702)
    assert (meta(message)["event"], meta(message)["listing_id"]) == ("new", record["id"])
    lines = message["body"].split("\n")
    assert lines[0] == "🏠 New listing · ny-homes"
    assert f"https://www.kotohomes.com/listings/{record['id']}" in lines


async def test_a_message_held_across_a_restart_goes_out_whole(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A message held by quiet hours keeps its whole text in the state file: a new
    process after a restart posts it as it was written, not an empty or one-line text."""
    text = cfg(sims, tmp_path, ny_sub(QUIET))
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
        record = sims.market.add_kotohomes(state="NY")
        assert await app.once()
    assert messages(sims, 702) == []
    clock.advance((MORNING - clock.now()).total_seconds())
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
    (message,) = messages(sims, 702)
    lines = message["body"].split("\n")
    assert lines[0] == "🏠 New listing · ny-homes"
    assert f"https://www.kotohomes.com/listings/{record['id']}" in lines
    assert len(lines) >= 4  # the figures and the address between them


async def test_quiet_hours_end_at_the_spring_forward_jump(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A window ending 02:30 on the night New York skips 02:00-03:00 ends at 03:00 EDT."""
    clock.jump((datetime(2026, 3, 8, 6, 0, tzinfo=UTC) - clock.now()).total_seconds())
    subs = ny_sub('  quiet_hours: "01:00-02:30"\n  timezone: America/New_York\n')
    async with running(load(tmp_path, cfg(sims, tmp_path, subs)), clock) as app:
        assert await app.once()  # 01:00 EST
        sims.market.add_kotohomes(state="NY")
        clock.advance(59 * 60)
        assert await app.once()  # 01:59 EST
        assert messages(sims, 702) == []
        clock.advance(60)
        assert await app.once()  # 03:00 EDT
    assert len(messages(sims, 702)) == 1


async def test_held_messages_are_not_undelivered_for_readiness(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A message waiting out quiet hours is listed as held, not pending."""
    async with running(load(tmp_path, cfg(sims, tmp_path, ny_sub(QUIET))), clock) as app:
        assert await app.once()
        sims.market.add_kotohomes(state="NY")
        assert await app.once()
    store = await Store.open(tmp_path / "state.sqlite3", clock.now)
    try:
        rows = store.list_rows_sync()
        health = await store.outbox_health()
    finally:
        await store.close()
    assert [row.state for row in rows] == ["held"]
    assert health.open == 0


async def test_messages_held_for_quiet_hours_go_at_once_when_a_reload_removes_them(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A reload that takes a subscription's quiet hours away releases what it held at the
    next poll, without waiting for the old window to end."""
    async with running(load(tmp_path, cfg(sims, tmp_path, ny_sub(QUIET))), clock) as app:
        assert await app.once()  # baseline
        record = sims.market.add_kotohomes(state="NY")
        assert await app.once()
        assert messages(sims, 702) == []
        await app.reload(load(tmp_path, cfg(sims, tmp_path, ny_sub())))
        assert await app.once()  # 23:00 EST, long before the old window's end
    (message,) = messages(sims, 702)
    assert (meta(message)["event"], meta(message)["listing_id"]) == ("new", record["id"])
