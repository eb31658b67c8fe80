"""The seeded market: realistic records in the APIs' shapes, deterministic evolution."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from listingbot.sim._shapes import KATO_STATUSES
from listingbot.sim.kotohomes import PROPERTY_TYPES
from listingbot.sim.market import Market

KOTOHOMES_ID = re.compile(r"^li_[0-9A-Za-z]{20}$")
MS_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
US_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _busy(seed: int) -> Market:
    return Market(
        seed,
        start=START,
        kotohomes_count=40,
        kato_count=30,
        new_rate=2,
        price_change_rate=3,
        status_change_rate=2,
        removal_rate=1,
    )


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_same_seed_gives_same_records_and_history() -> None:
    """Two markets with one seed, driven the same way, are identical."""
    first, second = _busy(11), _busy(11)
    first.advance(600)
    second.advance(600)
    assert first.history == second.history
    assert first.kotohomes_records() == second.kotohomes_records()
    assert first.kato_records() == second.kato_records()


def test_different_seeds_give_different_markets() -> None:
    """The seed actually changes the data."""
    assert _busy(1).kotohomes_records() != _busy(2).kotohomes_records()


def test_step_moves_market_time_by_one_tick_and_advance_floors() -> None:
    """step() adds tick_s; advance(s) takes floor(s / tick_s) steps."""
    market = Market(1, start=START, kotohomes_count=5, kato_count=5, tick_s=30)
    market.step()
    assert market.now == START + timedelta(seconds=30)
    market.advance(100)
    assert market.now == START + timedelta(seconds=120)


def test_kotohomes_records_look_like_the_seed_example() -> None:
    """Ids, timestamps, prices, rooms and types follow the documented shapes."""
    records = Market(3, start=START, kotohomes_count=200, kato_count=0).kotohomes_records()
    assert len(records) == 200
    for record in records:
        assert KOTOHOMES_ID.match(record["id"])
        assert MS_TIMESTAMP.match(record["created_at"])
        assert MS_TIMESTAMP.match(record["updated_at"])
        assert record["updated_at"] >= record["created_at"]
        assert record["status"] in ("active", "pending")
        assert record["property_type"] in PROPERTY_TYPES
        assert 1 <= record["bedrooms"] <= 6
        assert (record["bathrooms"] * 2) == int(record["bathrooms"] * 2)
        assert re.fullmatch(r"\d{5}", record["zip_code"])
        assert {"name", "email", "phone"} <= record["agent"].keys()
        assert {"name", "email", "phone", "logo_url"} <= record["broker"].keys()
        if record["type"] == "for_sale":
            assert 150_000 <= record["price"] <= 3_000_000
            assert record["price"] % 1000 == 0
    assert {r["type"] for r in records} == {"for_sale", "for_rent"}
    assert len({r["state"] for r in records}) >= 6


def test_created_at_strictly_increases_for_every_new_listing() -> None:
    """Initial, ticked and test-inserted listings all get a later created_at."""
    market = _busy(5)
    market.advance(300)
    market.add_kotohomes(state="NY")
    market.add_kotohomes(state="NY")
    created = [_parse(r["created_at"]) for r in market.kotohomes_records()]
    assert all(a < b for a, b in itertools.pairwise(created))


def test_prices_mostly_fall() -> None:
    """Over many ticks, price drops outnumber rises."""
    market = _busy(9)
    market.advance(60 * 200)
    changes = [e for e in market.history if e.kind == "price_changed"]
    drops = sum(1 for e in changes if e.new < e.old)
    assert drops > len(changes) * 0.6
    assert drops < len(changes)  # sometimes up


def test_market_history_records_every_kind_of_event() -> None:
    """Listings appear, change price and status, and disappear."""
    market = _busy(4)
    market.advance(60 * 30)
    assert {e.kind for e in market.history} == {
        "created",
        "price_changed",
        "status_changed",
        "removed",
    }
    assert [e.at for e in market.history] == sorted(e.at for e in market.history)


def test_update_kotohomes_bumps_updated_at_and_records_events() -> None:
    """A test change of price and status is stamped with market time and logged."""
    market = Market(1, start=START, kotohomes_count=3, kato_count=0)
    listing_id = market.ids("kotohomes")[0]
    market.advance(120)
    before = market.find("kotohomes", listing_id)
    assert before is not None
    market.update_kotohomes(listing_id, price=before["price"] - 10_000, status="pending")
    after = market.find("kotohomes", listing_id)
    assert after is not None
    assert after["updated_at"] == "2026-03-01T09:02:00.000Z"
    kinds = [(e.kind, e.old, e.new) for e in market.history if e.listing_id == listing_id]
    assert ("price_changed", before["price"], before["price"] - 10_000) in kinds
    assert ("status_changed", before["status"], "pending") in kinds


def test_add_kotohomes_applies_overrides_and_keeps_the_city_consistent() -> None:
    """Overrides win; a given state picks a city in that state."""
    market = Market(1, start=START, kotohomes_count=0, kato_count=0)
    record = market.add_kotohomes(state="TX", price=425_000, bedrooms=3)
    assert record["state"] == "TX"
    assert record["city"] in {"Austin", "Houston", "Dallas", "San Antonio"}
    assert (record["price"], record["bedrooms"]) == (425_000, 3)
    assert record["created_at"] == "2026-03-01T09:00:00.000Z"
    assert market.history[-1].kind == "created"


def test_remove_takes_the_listing_off_and_logs_it() -> None:
    """A removed listing is no longer served."""
    market = Market(1, start=START, kotohomes_count=3, kato_count=3)
    kato_id = market.ids("kato")[0]
    market.remove("kato", kato_id)
    assert market.find("kato", kato_id) is None
    assert market.history[-1].kind == "removed"
    with pytest.raises(KeyError):
        market.remove("kato", kato_id)


def test_kato_records_use_the_importer_field_names() -> None:
    """Kato records carry the documented fields, slugs and Laravel timestamps."""
    records = Market(2, start=START, kotohomes_count=0, kato_count=150).kato_records()
    for record in records:
        assert {
            "id",
            "address",
            "position",
            "to_let",
            "for_sale",
            "rent",
            "price",
            "size",
            "property_types",
            "status",
            "marketing",
            "images",
            "assignees",
            "created_at",
            "updated_at",
            "published_to_website",
            "api_controlled",
        } <= record.keys()
        assert record["status"] in KATO_STATUSES
        assert US_TIMESTAMP.match(record["updated_at"])
        assert record["address"]["postcode"]
        assert record["to_let"] or record["for_sale"]
        assert record["marketing"]["text"][0]["key"] == "summary"
    rents = [r["rent"] for r in records if r["rent"]]
    assert all(r["currency"] == "GBP" for r in rents)
    metrics = {r["metric"] for r in rents}
    assert "sqft" in metrics
    assert metrics & {"per_annum", "per_desk"}, "no rent quoted per annum or per desk"
    assert any(isinstance(r["from"], str) and r["from"].startswith("£") for r in rents)
    assert any(isinstance(r["id"], str) for r in records)
    assert any(isinstance(r["id"], int) for r in records)
    assert any(r["published_to_website"] is None for r in records)


def test_update_kato_with_a_number_changes_the_figure_only() -> None:
    """update_kato(rent=30) sets rent.from and records a price change."""
    market = Market(1, start=START, kotohomes_count=0, kato_count=0)
    record = market.add_kato(to_let=True, for_sale=False, rent=25.0, status="available")
    market.update_kato(str(record["id"]), rent=22.5, status="under_offer")
    after = market.find("kato", str(record["id"]))
    assert after is not None
    assert after["rent"]["from"] in (22.5, "£22.50")
    assert after["rent"]["currency"] == "GBP"
    kinds = {e.kind for e in market.history[-2:]}
    assert kinds == {"price_changed", "status_changed"}
