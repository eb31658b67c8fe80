"""End to end: the change model (issue 13) — sale price and rent apart, deal types,
ranges, and one message per listing per poll — against the simulators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from listingbot.clock import FakeClock
from listingbot.sim import SimStack
from tests.harness import config_text, load, make_sims, messages, meta, running, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

NY_SUB = f"""\
- name: ny-homes
  source: kotohomes
  channel: 702
  filters: {{states: [NY], zip_codes: {zips("NY")}}}
"""

UK_SUB = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
"""


def cfg(sims: SimStack, tmp_path: Path, subs: str, source: str) -> str:
    return config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=(source,))


def told(sims: SimStack, channel: int, listing_id: str) -> list[dict[str, Any]]:
    """The messages in ``channel`` about one listing, oldest first."""
    return [m for m in messages(sims, channel) if meta(m)["listing_id"] == listing_id]


def kato_rent(low: float, high: float | None = None) -> dict[str, Any]:
    return {"from": low, "to": high, "metric": "sqft", "currency": "GBP"}


def kato_price(value: float | None, *, on_application: bool = False) -> dict[str, Any]:
    return {"value": value, "currency": "GBP", "price_on_application": on_application}


async def change_kotohomes(
    sims: SimStack, tmp_path: Path, clock: FakeClock, created: dict[str, Any], **changes: Any
) -> list[dict[str, Any]]:
    """Baseline, add a NY listing, poll, apply ``changes``, poll: what was told of it."""
    async with running(load(tmp_path, cfg(sims, tmp_path, NY_SUB, "kotohomes")), clock) as app:
        await app.once()
        record = sims.market.add_kotohomes(state="NY", **created)
        await app.once()
        clock.advance(60)
        sims.market.now = clock.now()
        sims.market.update_kotohomes(record["id"], **changes)
        assert await app.once()
    return told(sims, 702, record["id"])


async def change_kato(
    sims: SimStack, tmp_path: Path, clock: FakeClock, created: dict[str, Any], **changes: Any
) -> list[dict[str, Any]]:
    """Baseline, add a Kato listing, poll, apply ``changes``, poll: what was told of it."""
    async with running(load(tmp_path, cfg(sims, tmp_path, UK_SUB, "kato")), clock) as app:
        await app.once()
        record = sims.market.add_kato(**created)
        await app.once()
        clock.advance(60)
        sims.market.now = clock.now()
        sims.market.update_kato(str(record["id"]), **changes)
        assert await app.once()
    return told(sims, 704, str(record["id"]))


async def test_sale_switching_to_rent_is_now_for_rent_not_a_price_drop(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """For sale at $500,000, then for rent at $2,500/mo: `now_for_rent`, not a -99.5% drop."""
    new, change = await change_kotohomes(
        sims,
        tmp_path,
        clock,
        {"type": "for_sale", "price": 500_000},
        type="for_rent",
        price=2_500,
    )
    assert meta(new)["event"] == "new"
    assert meta(change)["event"] == "now_for_rent"
    assert meta(change)["events"] == ["now_for_rent"]
    assert change["body"].startswith("🔑 Now for rent · ny-homes\n$2,500/mo")
    assert "%" not in change["body"]


async def test_sale_price_going_on_application_posts_no_price_change(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A sale price becoming "on application" on a listing also to let is no -100% drop:
    the rent did not change, and a figure not given is not a change."""
    told_of = await change_kato(
        sims,
        tmp_path,
        clock,
        {"for_sale": True, "to_let": True, "price": kato_price(2_000_000), "rent": kato_rent(25)},
        price=kato_price(None, on_application=True),
    )
    assert [meta(m)["event"] for m in told_of] == ["new"]


async def test_rent_drop_on_a_listing_for_sale_and_to_let_is_posted(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """On a listing both for sale and to let, a lower rent is a price drop of the rent."""
    _new, change = await change_kato(
        sims,
        tmp_path,
        clock,
        {"for_sale": True, "to_let": True, "price": kato_price(2_000_000), "rent": kato_rent(30)},
        rent=kato_rent(27.5),
    )
    assert meta(change)["event"] == "price_drop"
    headline, facts = change["body"].split("\n")[:2]
    assert headline == "📉 Rent drop · uk-all"
    assert facts.startswith("£2,000,000 · To let £30.00 → £27.50 per sq ft (\u22128.3%)")


async def test_rent_ranges_compare_as_ranges(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """£25.00-£27.50 → £23.75-£27.50 per sq ft: both ends shown, the old range whole."""
    _new, change = await change_kato(
        sims,
        tmp_path,
        clock,
        {"to_let": True, "for_sale": False, "price": None, "rent": kato_rent(25, 27.5)},
        rent=kato_rent(23.75, 27.5),
    )
    assert meta(change)["event"] == "price_drop"
    assert "£25.00\u2013£27.50 → £23.75\u2013£27.50 per sq ft" in change["body"]


async def test_a_range_whose_upper_end_rises_is_a_price_increase(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """£25.00-£27.50 → £25.00-£30.00: the lower end is the same, the rent still rose."""
    _new, change = await change_kato(
        sims,
        tmp_path,
        clock,
        {"to_let": True, "for_sale": False, "price": None, "rent": kato_rent(25, 27.5)},
        rent=kato_rent(25, 30),
    )
    assert meta(change)["event"] == "price_increase"
    assert "£25.00\u2013£27.50 → £25.00\u2013£30.00 per sq ft" in change["body"]


async def test_price_drop_and_status_change_in_one_poll_are_one_message(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A price drop and a status change seen in one poll: one message, led by the drop,
    listing both events."""
    _new, change = await change_kotohomes(
        sims,
        tmp_path,
        clock,
        {"type": "for_sale", "price": 600_000, "status": "active"},
        price=550_000,
        status="pending",
    )
    assert meta(change)["event"] == "price_drop"
    assert meta(change)["events"] == ["price_drop", "status_change"]
    headline, status, facts = change["body"].split("\n")[:3]
    assert headline == "📉 Price drop · Pending · ny-homes"
    assert status == "Active → Pending"
    assert facts.startswith("$600,000 → $550,000 (\u22128.3%)")


async def test_notify_chooses_the_events_a_subscription_posts(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """`notify: [price_drop]`: a new listing posts nothing, its price drop posts, and a
    status change seen with the drop is left out of the message."""
    subs = NY_SUB + "  notify: [price_drop]\n"
    async with running(load(tmp_path, cfg(sims, tmp_path, subs, "kotohomes")), clock) as app:
        await app.once()
        record = sims.market.add_kotohomes(state="NY", type="for_sale", price=600_000)
        await app.once()
        assert told(sims, 702, record["id"]) == []
        clock.advance(60)
        sims.market.now = clock.now()
        sims.market.update_kotohomes(record["id"], price=550_000, status="pending")
        assert await app.once()
    (drop,) = told(sims, 702, record["id"])
    assert meta(drop)["events"] == ["price_drop"]
    assert drop["body"].split("\n")[0] == "📉 Price drop · ny-homes"


DAY = 86_400.0

ASTORIA = """\
- name: astoria
  source: kotohomes
  channel: 702
  filters: {zip_codes: ["11101"]}
  notify: [new, removed, back_on_market]
"""


def tick(sims: SimStack, clock: FakeClock, seconds: float) -> None:
    """Time passes for the service and the market alike."""
    clock.advance(seconds)
    sims.market.now = clock.now()


async def test_a_kotohomes_listing_confirmed_gone_is_posted_as_removed_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A listing Kotohomes answers 404 for is `removed`, posted once to the subscription
    that matched it, as it was last posted."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        text = config_text(sims, ASTORIA, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",))
        async with running(load(tmp_path, text), clock) as app:
            await app.once()
            tick(sims, clock, 60)
            gone = sims.market.add_kotohomes(state="NY", zip_code="11101", price=640_000)
            await app.once()
            sims.market.remove("kotohomes", gone["id"])
            tick(sims, clock, 31 * DAY)
            await app.once()  # the gone-check runs after this poll
            await app.once()
            await app.once()
        removed = [m for m in told(sims, 702, gone["id"]) if meta(m)["event"] == "removed"]
    assert len(removed) == 1
    assert removed[0]["body"].startswith("🚫 No longer listed · astoria\n$640,000")


async def test_a_kato_listing_absent_from_complete_sweeps_is_posted_as_removed(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Absent from `gone_after_sweeps` complete sweeps, a Kato listing is `removed` for
    the subscriptions that matched it; a subscription that did not opt in hears nothing."""
    subs = UK_SUB + "  notify: [new, removed]\n" + UK_SUB.replace("uk-all", "uk-quiet")
    text = config_text(sims, subs, state_path=tmp_path / "s.sqlite3", sources=("kato",))
    async with running(load(tmp_path, text), clock) as app:
        await app.once()
        gone = sims.market.ids("kato")[0]
        sims.market.remove("kato", gone)
        for _ in range(5):
            tick(sims, clock, 600)
            await app.once()
    removed = [m for m in told(sims, 704, gone) if meta(m)["event"] == "removed"]
    assert [meta(m)["subscriptions"] for m in removed] == [["uk-all"]]


async def test_a_removed_listing_that_returns_is_back_on_market(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A listing removed (and told so) that is listed again is `back_on_market`, not new."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        text = config_text(sims, ASTORIA, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",))
        async with running(load(tmp_path, text), clock) as app:
            await app.once()
            tick(sims, clock, 60)
            record = sims.market.add_kotohomes(state="NY", zip_code="11101")
            await app.once()
            sims.market.remove("kotohomes", record["id"])
            tick(sims, clock, 31 * DAY)
            await app.once()
            await app.once()
            tick(sims, clock, 60)
            sims.market.add_kotohomes(**{**record, "updated_at": clock.now()})
            await app.once()
            await app.once()
        events = [meta(m)["event"] for m in told(sims, 702, record["id"])]
    assert events == ["new", "removed", "back_on_market"]
