"""Specification of ``MatchIndex``: exactly the subscriptions ``local_match`` accepts, in
entry order, for any mix of filters and listings (checked against ``local_match`` itself)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from listingbot.config import LocalFilters
from listingbot.matching import MatchIndex, local_match
from listingbot.models import Listing, Price, PriceUnit

POSTCODES = ("EC2V 8AU", "EC2M 4YE", "M1 4BT", "M14 5RA", "LS11 9QX", "B1 1AA", "ec1a 1bb", "")
PREFIXES = ("EC2", "EC2V", "EC2V8", "M1", "M14", "LS1", "LS11", "B", "EC1A1", "SW1A")
TYPES = ("office", "retail", "industrial", "flexible_workspace", "Medical", "land")
KEYWORDS = ("king", "parking", "lift", "air conditioning", "refurbished")


def random_filters(rng: random.Random) -> LocalFilters:
    fields: dict[str, Any] = {}
    if rng.random() < 0.6:
        fields["postcode_prefixes"] = rng.sample(PREFIXES, rng.randint(1, 3))
    if rng.random() < 0.5:
        fields["property_types"] = rng.sample(TYPES, rng.randint(1, 2))
    if rng.random() < 0.4:
        fields["to_let"] = rng.random() < 0.7
    if rng.random() < 0.3:
        fields["for_sale"] = rng.random() < 0.5
    if rng.random() < 0.4:
        fields["size_min"] = rng.choice((500.0, 1000.0, 1200.0, 2400.0))
    if rng.random() < 0.4:
        fields["size_max"] = rng.choice((1000.0, 1200.0, 2400.0, 9000.0))
    if fields.get("size_min", 0) > fields.get("size_max", float("inf")):
        fields["size_min"], fields["size_max"] = fields["size_max"], fields["size_min"]
    if rng.random() < 0.3:
        fields["rent_max"] = rng.choice((20.0, 37.5, 45.0, 60.0))
    if rng.random() < 0.2:
        fields["keywords_any"] = rng.sample(KEYWORDS, rng.randint(1, 2))
    if rng.random() < 0.1:
        fields["keywords_none"] = [rng.choice(KEYWORDS)]
    return LocalFilters(**fields)


def random_listing(rng: random.Random, index: int) -> Listing:
    rent = None
    if rng.random() < 0.8:
        unit = rng.choice(list(PriceUnit))
        amount = rng.choice((None, 12.0, 37.5, 45.0, 2500.0, 60_000.0))
        rent = Price(amount=amount, unit=unit, on_application=amount is None)
    size = rng.choice((None, 800.0, 1000.0, 1200.0, 2400.0, 5000.0))
    size_max = rng.choice((None, None, 1200.0, 3000.0))
    types = tuple(rng.sample(TYPES, rng.randint(0, 2)))
    return Listing(
        source="kato",
        id=f"av-{index}",
        title=rng.choice(("Office, 1 King Street", "Unit 4, Mill Lane", "Shop")),
        summary=rng.choice((None, "Air conditioning and a lift.", "Refurbished, parking.")),
        address=rng.choice((None, "1 King Street, London")),
        postcode=rng.choice(POSTCODES) or None,
        country="GB",
        to_let=rng.random() < 0.7,
        for_sale=rng.random() < 0.3,
        rent=rent,
        size_sqft=size,
        size_max_sqft=size_max,
        property_type=rng.choice((None, "Office", "warehouse")),
        property_types=types,
    )


@pytest.mark.parametrize("seed", range(8))
def test_matches_are_exactly_what_local_match_accepts(seed: int) -> None:
    """For random filters and listings, the index returns the local_match verdicts in order."""
    rng = random.Random(seed)
    entries = [(i, random_filters(rng)) for i in range(rng.choice((1, 7, 60, 300)))]
    index = MatchIndex(entries)
    for n in range(300):
        listing = random_listing(rng, n)
        expected = [i for i, filters in entries if local_match(filters, listing)]
        assert index.matches(listing) == expected, listing


def test_empty_filters_match_every_listing() -> None:
    """Entries without local filters match every listing, even a bare one."""
    index = MatchIndex([("a", LocalFilters()), ("b", LocalFilters(to_let=True))])
    bare = Listing(source="kotohomes", id="li_1", title="House", country="US")
    assert index.matches(bare) == ["a"]


def test_an_empty_index_matches_nothing() -> None:
    """No entries: no matches."""
    index: MatchIndex[str] = MatchIndex([])
    assert index.matches(random_listing(random.Random(1), 1)) == []


def test_equal_limits_are_inclusive() -> None:
    """Size and rent limits equal to the listing's figures let it through, as local_match does."""
    listing = Listing(
        source="kato",
        id="av-1",
        title="Office",
        country="GB",
        size_sqft=1000.0,
        size_max_sqft=2000.0,
        rent=Price(amount=45.0, unit=PriceUnit.PER_SQFT),
    )
    entries = [
        ("at-min", LocalFilters(size_min=2000.0)),
        ("at-max", LocalFilters(size_max=1000.0)),
        ("above", LocalFilters(size_min=2000.5)),
        ("rent-at", LocalFilters(rent_max=45.0)),
        ("rent-below", LocalFilters(rent_max=44.99)),
    ]
    assert MatchIndex(entries).matches(listing) == ["at-min", "at-max", "rent-at"]
