"""Specification of the local filters: which normalized listings each one lets through."""

from __future__ import annotations

from typing import Any

import pytest

from listingbot.config import KatoFilters, KotohomesFilters, LocalFilters
from listingbot.matching import local_match, rent_per_sqft
from listingbot.models import Listing, Price, PriceUnit


def listing(**overrides: Any) -> Listing:
    fields: dict[str, Any] = {
        "source": "kato",
        "id": "av-1",
        "title": "Office, 1 King Street",
        "summary": "Bright open-plan floor with Air Conditioning.",
        "address": "1 King Street, London, EC2V 8AU",
        "postcode": "EC2V 8AU",
        "country": "GB",
        "to_let": True,
        "for_sale": False,
        "rent": Price(amount=45.0, currency="GBP", unit=PriceUnit.PER_SQFT),
        "size_sqft": 1200.0,
        "size_max_sqft": 2400.0,
        "property_type": "office",
        "property_types": ("office",),
    }
    fields.update(overrides)
    return Listing.model_validate(fields)


def test_empty_filters_match_everything() -> None:
    """No local filter set: every listing matches, even one with few fields."""
    bare = Listing(source="kotohomes", id="li_1", title="House", country="US")
    assert local_match(LocalFilters(), bare)
    assert local_match(LocalFilters(), listing())


# --------------------------------------------------------------------------- keywords


@pytest.mark.parametrize("word", ["KING", "air conditioning", "ec2v"])
def test_keywords_any_searches_title_summary_and_address(word: str) -> None:
    """keywords_any matches case-insensitively in the title, summary or address."""
    assert local_match(LocalFilters(keywords_any=(word,)), listing())


def test_keywords_any_needs_at_least_one_hit() -> None:
    """A listing with none of the keywords_any fails; one hit among several is enough."""
    assert not local_match(LocalFilters(keywords_any=("parking", "gym")), listing())
    assert local_match(LocalFilters(keywords_any=("parking", "open-plan")), listing())


def test_keywords_match_substrings() -> None:
    """Keywords match inside words (substring), e.g. 'condition' in 'Conditioning'."""
    assert local_match(LocalFilters(keywords_any=("condition",)), listing())


def test_keywords_none_excludes_any_hit() -> None:
    """A listing containing any keywords_none word fails."""
    assert not local_match(LocalFilters(keywords_none=("serviced", "BRIGHT")), listing())
    assert local_match(LocalFilters(keywords_none=("serviced",)), listing())


def test_keywords_work_without_summary_or_address() -> None:
    """Missing summary and address are treated as empty text."""
    bare = listing(summary=None, address=None)
    assert local_match(LocalFilters(keywords_any=("office",)), bare)
    assert not local_match(LocalFilters(keywords_any=("air",)), bare)


def test_keywords_are_unicode_case_insensitive() -> None:
    """Case folding covers non-ASCII text (STRASSE matches Straße)."""
    assert local_match(LocalFilters(keywords_any=("STRASSE",)), listing(title="Hauptstraße 1"))


def test_kotohomes_keyword_filters_apply() -> None:
    """Kotohomes subscriptions' keywords_any/none become local filters."""
    local = KotohomesFilters(states=("NY",), keywords_none=("auction",)).local
    house = listing(source="kotohomes", country="US", title="House sold at AUCTION")
    assert not local_match(local, house)


# --------------------------------------------------------------------------- property types


def test_property_types_intersect() -> None:
    """A listing matches when any of its types is wanted."""
    shop = listing(property_type="retail", property_types=("retail", "leisure"))
    assert local_match(LocalFilters(property_types=("leisure", "industrial")), shop)
    assert not local_match(LocalFilters(property_types=("office",)), shop)


def test_property_types_compare_as_slugs() -> None:
    """Filter and listing types compare case-insensitively, '-'/' ' as '_'."""
    unit = listing(property_types=("light-industrial",), property_type="Light Industrial")
    assert local_match(LocalFilters(property_types=("LIGHT_INDUSTRIAL",)), unit)


def test_listing_without_types_fails_a_type_filter() -> None:
    """A listing with no known type cannot match a property_types filter."""
    assert not local_match(
        LocalFilters(property_types=("office",)), listing(property_type=None, property_types=())
    )


# --------------------------------------------------------------------------- size


@pytest.mark.parametrize(
    ("size_min", "size_max", "expected"),
    [
        (1000, 1500, True),  # overlaps the listing's 1200-2400 at the low end
        (2000, 3000, True),  # overlaps at the high end
        (1500, 2000, True),  # inside the listing's range
        (2400, None, True),  # touches the top
        (2500, None, False),  # every unit is smaller than wanted
        (None, 1200, True),  # touches the bottom
        (None, 1000, False),  # every unit is bigger than wanted
    ],
)
def test_size_filter_overlaps_the_size_range(
    size_min: float | None, size_max: float | None, expected: bool
) -> None:
    """size_min/size_max match when the listing's size range overlaps the filter range."""
    filters = LocalFilters(size_min=size_min, size_max=size_max)
    assert local_match(filters, listing()) is expected


def test_single_size_is_a_range_of_one() -> None:
    """A listing with one size (no upper bound) is compared by that size."""
    one = listing(size_sqft=1800.0, size_max_sqft=None)
    assert local_match(LocalFilters(size_min=1800), one)
    assert not local_match(LocalFilters(size_max=1700), one)


def test_unknown_size_fails_a_size_filter() -> None:
    """A listing without a size does not pass a size filter."""
    unknown = listing(size_sqft=None, size_max_sqft=None)
    assert not local_match(LocalFilters(size_min=1), unknown)
    assert not local_match(LocalFilters(size_max=10_000), unknown)


# --------------------------------------------------------------------------- rent


def test_rent_per_sqft_at_or_below_max_passes() -> None:
    """rent_max lets through rents per sq ft up to and including the maximum."""
    assert local_match(LocalFilters(rent_max=45), listing())
    assert not local_match(LocalFilters(rent_max=44.99), listing())


def test_rent_range_is_judged_by_its_lower_bound() -> None:
    """A rent range (40-60 per sq ft) passes when its lower bound is within rent_max."""
    ranged = listing(
        rent=Price(amount=40.0, amount_max=60.0, currency="GBP", unit=PriceUnit.PER_SQFT)
    )
    assert local_match(LocalFilters(rent_max=50), ranged)


def test_rent_per_sqm_is_converted_to_sqft() -> None:
    """A rent per square metre is divided by 10.7639 before comparing."""
    per_sqm = listing(rent=Price(amount=538.195, currency="GBP", unit=PriceUnit.PER_SQM))
    assert rent_per_sqft(per_sqm) == pytest.approx(50.0)
    assert local_match(LocalFilters(rent_max=50.01), per_sqm)
    assert not local_match(LocalFilters(rent_max=49.9), per_sqm)


def test_whole_unit_rent_is_spread_over_the_size() -> None:
    """A yearly or monthly rent for the unit is divided by its (largest) size."""
    yearly = listing(rent=Price(amount=96_000.0, currency="GBP", unit=PriceUnit.PER_YEAR))
    monthly = listing(rent=Price(amount=8_000.0, currency="GBP", unit=PriceUnit.PER_MONTH))
    assert rent_per_sqft(yearly) == pytest.approx(40.0)
    assert rent_per_sqft(monthly) == pytest.approx(40.0)
    no_size = listing(rent=yearly.rent, size_sqft=None, size_max_sqft=None)
    assert not local_match(LocalFilters(rent_max=100), no_size)


@pytest.mark.parametrize(
    "rent",
    [
        None,
        Price(on_application=True, currency="GBP", unit=PriceUnit.PER_SQFT),
        Price(amount=None, currency="GBP", unit=PriceUnit.PER_SQFT),
        Price(amount=10.0, currency="GBP", unit=PriceUnit.TOTAL),
    ],
)
def test_unknown_rent_fails_rent_max(rent: Price | None) -> None:
    """Missing rent, rent on application, or a rent that is not a rate fails rent_max."""
    assert not local_match(LocalFilters(rent_max=1_000), listing(rent=rent))


# --------------------------------------------------------------------------- postcode


@pytest.mark.parametrize(("prefix", "expected"), [("EC2", True), ("ec2v8", True), ("EC3", False)])
def test_postcode_prefix_ignores_spaces_and_case(prefix: str, expected: bool) -> None:
    """Postcode and prefixes compare upper-case with spaces removed."""
    filters = KatoFilters(postcode_prefixes=(prefix,)).local
    assert local_match(filters, listing(postcode="ec2v 8au")) is expected


def test_any_postcode_prefix_is_enough() -> None:
    """One matching prefix among several passes."""
    assert local_match(LocalFilters(postcode_prefixes=("SW1", "EC2")), listing())


def test_missing_postcode_fails_a_postcode_filter() -> None:
    """A listing without a postcode does not pass postcode_prefixes."""
    assert not local_match(LocalFilters(postcode_prefixes=("EC2",)), listing(postcode=None))


# --------------------------------------------------------------------------- deal


def test_to_let_filter_is_equality() -> None:
    """to_let: true keeps lettings; to_let: false keeps listings that are not to let."""
    assert local_match(LocalFilters(to_let=True), listing(to_let=True))
    assert not local_match(LocalFilters(to_let=True), listing(to_let=False))
    assert local_match(LocalFilters(to_let=False), listing(to_let=False))


def test_for_sale_filter_is_equality() -> None:
    """for_sale: true keeps listings for sale only."""
    assert local_match(LocalFilters(for_sale=True), listing(for_sale=True))
    assert not local_match(LocalFilters(for_sale=True), listing(for_sale=False))
    assert not local_match(LocalFilters(for_sale=False), listing(for_sale=True))


def test_every_set_filter_must_pass() -> None:
    """Filters combine with AND: one failing filter rejects the listing."""
    filters = KatoFilters(
        to_let=True,
        property_types=("office",),
        size_min=1000,
        rent_max=50,
        postcode_prefixes=("EC",),
        keywords_any=("air con",),
    ).local
    assert local_match(filters, listing())
    assert not local_match(filters, listing(postcode="SW1A 1AA"))
    assert not local_match(filters, listing(to_let=False))
