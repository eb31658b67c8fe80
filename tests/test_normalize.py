"""normalize: raw Kotohomes / Kato records become Listings, or MalformedRecord."""

from __future__ import annotations

import copy
import random
import string
from datetime import UTC, datetime
from typing import Any

import pytest

from listingbot.models import PriceUnit
from listingbot.normalize import (
    SUMMARY_MAX_CHARS,
    TITLE_MAX_CHARS,
    MalformedRecord,
    clean_text,
    normalize_kato,
    normalize_kotohomes,
)

# The example record of the Kotohomes seed, verbatim.
SEED_RECORD: dict[str, Any] = {
    "id": "li_2hAk61Qi6hFGw6nfrRmG",
    "created_at": "2021-04-25T17:35:23.809Z",
    "updated_at": "2021-04-27T13:14:16.772Z",
    "type": "for_sale",
    "mls_number": "NYRS-98765",
    "status": "active",
    "property_type": "residential",
    "description": "Quaint condo in the heart of the city ...",
    "price": 500000,
    "year_built": 1930,
    "street_address": "20 W 34th St",
    "unit_number": "2012B",
    "city": "New York",
    "state": "NY",
    "zip_code": "10001",
    "lot_size": 2,
    "living_area": 2350,
    "url": "https://...",
    "longitude": -73.98562148465531,
    "latitude": 40.74892817707063,
    "bedrooms": 3,
    "bathrooms": 2.5,
    "agent": {"name": "Listing Agent Name", "email": "...", "phone": "5555555554"},
    "broker": {
        "name": "Listing Broker Name",
        "phone": "5555555555",
        "email": "...",
        "logo_url": "http://...",
    },
    "photo_url": "https://...",
}

KATO_RECORD: dict[str, Any] = {
    "id": 1042,
    "external_ref": "EXT-1",
    "created_at": "2024-03-01T09:00:00Z",
    "updated_at": "2024-03-05T10:30:00+00:00",
    "status": "available",
    "address": {
        "name": "The Works",
        "line1": "1 King Street",
        "line2": None,
        "town": "Leeds",
        "county": "West Yorkshire",
        "postcode": "ls1 2hl",
        "country": "United Kingdom",
    },
    "position": {"lat": 53.7965, "lng": -1.5478},
    "for_sale": False,
    "to_let": True,
    "price": None,
    "rent": {"from": 12.5, "to": 15, "metric": "sqft", "currency": "GBP"},
    "size": {"from": 2000, "to": 4500, "metric": "sqft"},
    "property_types": [{"key": "office"}, {"key": "retail"}],
    "marketing": {
        "text": [
            {"key": "location", "heading": "Location", "content": "<p>Close to the station.</p>"},
            {"key": "summary", "heading": "Summary", "content": "<p>Bright open-plan office.</p>"},
        ],
        "key_points": ["Lift", "Parking"],
    },
    "images": [{"url": "https://img.example/1.jpg", "updated_at": "2024-03-01T09:00:00Z"}],
    "assignees": [{"forename": "Ann", "surname": "Lee", "office": "Leeds"}],
}


def koto(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(SEED_RECORD)
    record.update(changes)
    return record


def kato(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(KATO_RECORD)
    record.update(changes)
    return record


# --- Kotohomes ---------------------------------------------------------------------------


def test_the_seed_example_normalizes_field_by_field() -> None:
    """Every field of the seed's example record lands in its Listing field."""
    listing = normalize_kotohomes(SEED_RECORD)
    assert listing.source == "kotohomes"
    assert listing.id == "li_2hAk61Qi6hFGw6nfrRmG"
    assert listing.title == "3 bd residential in New York, NY"
    assert listing.summary == "Quaint condo in the heart of the city ..."
    assert listing.address == "20 W 34th St #2012B, New York, NY 10001"
    assert (listing.city, listing.region, listing.postcode) == ("New York", "NY", "10001")
    assert listing.country == "US"
    assert listing.latitude == pytest.approx(40.74892817707063)
    assert listing.longitude == pytest.approx(-73.98562148465531)
    assert listing.for_sale
    assert not listing.to_let
    assert listing.price is not None
    assert (listing.price.amount, listing.price.currency) == (500000, "USD")
    assert listing.price.unit is PriceUnit.TOTAL
    assert listing.rent is None
    assert (listing.size_sqft, listing.lot_size_acres) == (2350, 2)
    assert (listing.bedrooms, listing.bathrooms, listing.year_built) == (3, 2.5, 1930)
    assert listing.property_type == "residential"
    assert listing.property_types == ("residential",)
    assert listing.status == "active"
    assert listing.mls_number == "NYRS-98765"
    assert listing.agent == "Listing Agent Name, 5555555554"
    assert listing.created_at == datetime(2021, 4, 25, 17, 35, 23, 809000, tzinfo=UTC)
    assert listing.updated_at == datetime(2021, 4, 27, 13, 14, 16, 772000, tzinfo=UTC)


def test_kotohomes_title_names_beds_type_and_place() -> None:
    """The headline reads like "3 bd single family in Brooklyn, NY"."""
    listing = normalize_kotohomes(koto(property_type="single_family", city="Brooklyn"))
    assert listing.title == "3 bd single family in Brooklyn, NY"


def test_kotohomes_for_rent_listing_becomes_a_monthly_rent() -> None:
    """type for_rent: the price is a monthly rent, to let, not for sale."""
    listing = normalize_kotohomes(koto(type="for_rent", price=2400))
    assert listing.price is None
    assert listing.rent is not None
    assert (listing.rent.amount, listing.rent.unit) == (2400, PriceUnit.PER_MONTH)
    assert listing.to_let
    assert not listing.for_sale
    assert "for rent" in listing.title


def test_kotohomes_price_as_formatted_string_is_parsed() -> None:
    """Money sent as "$1,250,000" is read as 1250000."""
    listing = normalize_kotohomes(koto(price="$1,250,000"))
    assert listing.price is not None
    assert listing.price.amount == 1_250_000


def test_kotohomes_numeric_zip_keeps_its_leading_zero() -> None:
    """A ZIP code sent as the number 2134 is the ZIP code 02134."""
    assert normalize_kotohomes(koto(zip_code=2134)).postcode == "02134"


def test_kotohomes_only_updated_at_is_enough() -> None:
    """A record with updated_at but no created_at is usable."""
    listing = normalize_kotohomes(koto(created_at=None))
    assert listing.created_at is None
    assert listing.updated_at is not None


def test_kotohomes_broker_stands_in_for_a_missing_agent() -> None:
    """Without an agent, the broker's name is shown."""
    assert normalize_kotohomes(koto(agent=None)).agent == "Listing Broker Name, 5555555555"


def test_non_http_urls_are_dropped() -> None:
    """A javascript: or otherwise unusable link becomes no link at all."""
    listing = normalize_kotohomes(koto(url="javascript:alert(1)", photo_url="ftp://x/y.jpg"))
    assert listing.url is None
    assert listing.photo_url is None


def test_control_characters_are_stripped_and_whitespace_collapsed() -> None:
    """Title/address lose control characters and runs of spaces; newlines stay in summary."""
    listing = normalize_kotohomes(
        koto(
            street_address="20\x00 W\t 34th\x1b St",
            city="New\u202e York",
            description="Line one\x07\r\n\n\n\nLine   two\x85",
        )
    )
    assert listing.address == "20 W 34th St #2012B, New York, NY 10001"
    assert listing.title == "3 bd residential in New York, NY"
    assert listing.summary == "Line one\n\nLine two"


def test_invalid_surrogates_are_replaced() -> None:
    """A lone surrogate (not encodable as UTF-8) becomes U+FFFD."""
    listing = normalize_kotohomes(koto(description="Nice \ud800 place"))
    assert listing.summary == "Nice \ufffd place"
    assert listing.summary.encode("utf-8")


def test_long_summary_is_cut_with_an_ellipsis() -> None:
    """A huge description is capped at 600 characters ending in an ellipsis."""
    listing = normalize_kotohomes(koto(description="word " * 20_000))
    assert listing.summary is not None
    assert len(listing.summary) <= SUMMARY_MAX_CHARS
    assert listing.summary.endswith("…")


def test_long_title_is_capped() -> None:
    """The headline never exceeds 140 characters."""
    listing = normalize_kotohomes(koto(city="Springfield " * 40))
    assert len(listing.title) <= TITLE_MAX_CHARS
    assert listing.title.endswith("…")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bedrooms": "three"}, "bedrooms"),
        ({"bathrooms": [2]}, "bathrooms"),
        ({"price": -5}, "price"),
        ({"price": 2e10}, "price"),
        ({"price": "call us"}, "price"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"updated_at": "2021-13-45T00:00:00Z"}, "updated_at"),
        ({"latitude": 123.0}, "latitude"),
        ({"year_built": 1930.5}, "year_built"),
        ({"type": "auction"}, "type"),
        ({"agent": "Bob"}, "agent"),
        ({"description": {"text": "x"}}, "description"),
        ({"living_area": float("nan")}, "living_area"),
        ({"bedrooms": True}, "bedrooms"),
    ],
)
def test_kotohomes_wrong_values_make_the_record_malformed(
    changes: dict[str, Any], field: str
) -> None:
    """A wrong type or impossible value in any field rejects the record, naming the field."""
    with pytest.raises(MalformedRecord) as caught:
        normalize_kotohomes(koto(**changes))
    assert caught.value.record_id == "li_2hAk61Qi6hFGw6nfrRmG"
    assert caught.value.reason.startswith(field)


def test_kotohomes_without_any_timestamp_is_malformed() -> None:
    """Neither created_at nor updated_at: not usable for an incremental poll."""
    with pytest.raises(MalformedRecord, match="created_at/updated_at"):
        normalize_kotohomes(koto(created_at=None, updated_at=None))


@pytest.mark.parametrize("bad_id", [None, "", "   ", True, 3.5, {"id": 1}, "x" * 201, "a\x00b"])
def test_record_without_a_usable_id_is_malformed(bad_id: Any) -> None:
    """No id, an empty one, or one of a wrong type: MalformedRecord with record_id None."""
    with pytest.raises(MalformedRecord) as caught:
        normalize_kotohomes(koto(id=bad_id))
    assert caught.value.record_id is None


def test_a_non_object_record_is_malformed() -> None:
    """A record that is not a JSON object is rejected, not crashed on."""
    with pytest.raises(MalformedRecord):
        normalize_kotohomes(["li_1"])  # type: ignore[arg-type]
    with pytest.raises(MalformedRecord):
        normalize_kato("1042")  # type: ignore[arg-type]


# --- Kato --------------------------------------------------------------------------------


def test_kato_record_normalizes_field_by_field() -> None:
    """Every Kato field the importer knows lands in its Listing field."""
    listing = normalize_kato(KATO_RECORD)
    assert (listing.source, listing.id) == ("kato", "1042")
    assert listing.title == "The Works, Leeds"
    assert listing.address == "The Works, 1 King Street, Leeds, West Yorkshire, LS1 2HL"
    assert (listing.city, listing.region, listing.postcode) == (
        "Leeds",
        "West Yorkshire",
        "LS1 2HL",
    )
    assert listing.country == "GB"
    assert (listing.latitude, listing.longitude) == (53.7965, -1.5478)
    assert listing.to_let
    assert not listing.for_sale
    assert listing.price is None
    assert listing.rent is not None
    assert (listing.rent.amount, listing.rent.amount_max) == (12.5, 15)
    assert (listing.rent.unit, listing.rent.currency) == (PriceUnit.PER_SQFT, "GBP")
    assert (listing.size_sqft, listing.size_max_sqft) == (2000, 4500)
    assert listing.property_type == "office"
    assert listing.property_types == ("office", "retail")
    assert listing.status == "available"
    assert listing.summary == "Bright open-plan office."
    assert listing.photo_url == "https://img.example/1.jpg"
    assert listing.agent == "Ann Lee, Leeds"
    assert listing.url is None
    assert listing.created_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "status",
    [
        "Under Offer",
        {"key": "under_offer"},
        {"slug": "UNDER_OFFER"},
        {"name": "Under offer"},
        "under-offer",
    ],
)
def test_kato_status_string_or_object_becomes_a_lower_case_slug(status: Any) -> None:
    """Status may be a string or an object with key/slug/name; always a lower-case slug."""
    assert normalize_kato(kato(status=status)).status == "under_offer"


def test_kato_title_falls_back_to_line1_then_type() -> None:
    """Without an address name the first line is used; without either, the type and town."""
    no_name = kato(address={"line1": "1 King Street", "town": "Leeds"})
    assert normalize_kato(no_name).title == "1 King Street, Leeds"
    no_street = kato(address={"town": "Leeds"})
    assert normalize_kato(no_street).title == "Office in Leeds"


def test_kato_money_as_formatted_strings_is_parsed() -> None:
    """Rent "£45.00" and price "1,250,000" are read as numbers."""
    listing = normalize_kato(
        kato(
            rent={"from": "£45.00", "to": None, "metric": "sqft"},
            price={"value": "1,250,000", "currency": "GBP", "qualifier": "guide_price"},
            for_sale=True,
        )
    )
    assert listing.rent is not None
    assert (listing.rent.amount, listing.rent.amount_max, listing.rent.currency) == (
        45.0,
        None,
        "GBP",
    )
    assert listing.price is not None
    assert (listing.price.amount, listing.price.unit) == (1_250_000, PriceUnit.TOTAL)
    assert listing.price.qualifier == "guide price"


def test_kato_rent_on_application_has_no_amount() -> None:
    """rent_on_application: a rent with no figure, flagged."""
    listing = normalize_kato(kato(rent={"rent_on_application": True, "metric": "sqft"}))
    assert listing.rent is not None
    assert listing.rent.on_application
    assert listing.rent.amount is None


def test_kato_price_on_application_has_no_amount() -> None:
    """price_on_application: a price with no figure, flagged."""
    listing = normalize_kato(kato(price={"value": None, "price_on_application": True}))
    assert listing.price is not None
    assert listing.price.on_application
    assert listing.price.amount is None


@pytest.mark.parametrize(
    ("metric", "unit"),
    [
        ("sqft", PriceUnit.PER_SQFT),
        ("sqm", PriceUnit.PER_SQM),
        ("per_annum", PriceUnit.PER_YEAR),
        ("pcm", PriceUnit.PER_MONTH),
        (None, PriceUnit.PER_YEAR),
    ],
)
def test_kato_rent_metric_becomes_the_price_unit(metric: str | None, unit: PriceUnit) -> None:
    """The rent metric picks the unit; no metric means a yearly rent."""
    listing = normalize_kato(kato(rent={"from": 10, "metric": metric}))
    assert listing.rent is not None
    assert listing.rent.unit is unit


def test_kato_size_in_square_metres_is_converted_to_square_feet() -> None:
    """size {metric: sqm} is multiplied by 10.7639."""
    listing = normalize_kato(kato(size={"from": 100, "to": 200, "metric": "sqm"}))
    assert listing.size_sqft == pytest.approx(1076.4, abs=0.1)
    assert listing.size_max_sqft == pytest.approx(2152.8, abs=0.1)


def test_kato_size_in_an_unknown_unit_is_left_out() -> None:
    """A size whose unit is unknown is omitted rather than shown wrong."""
    listing = normalize_kato(kato(size={"from": 3, "metric": "football_pitches"}))
    assert listing.size_sqft is None


def test_kato_url_comes_from_the_record_or_web_base() -> None:
    """url / website_url when present; else a web_base link; else none."""
    assert normalize_kato(kato(url="https://a.example/1")).url == "https://a.example/1"
    assert normalize_kato(kato(website_url="https://b.example/1")).url == "https://b.example/1"
    assert normalize_kato(KATO_RECORD).url is None
    templated = normalize_kato(KATO_RECORD, web_base="https://agent.example/p/{id}?src=bot")
    assert templated.url == "https://agent.example/p/1042?src=bot"
    appended = normalize_kato(KATO_RECORD, web_base="https://agent.example/p/")
    assert appended.url == "https://agent.example/p/1042"


def test_kato_summary_html_is_reduced_to_text() -> None:
    """Marketing HTML loses its tags and entities but keeps its line breaks."""
    marketing = {"text": [{"key": "summary", "content": "<p>A &amp; B<br/>C\x07</p>"}]}
    assert normalize_kato(kato(marketing=marketing)).summary == "A & B\nC"


def test_kato_summary_falls_back_to_key_points() -> None:
    """Without marketing text, the key points form the summary."""
    listing = normalize_kato(kato(marketing={"text": [], "key_points": ["Lift", "Parking"]}))
    assert listing.summary == "Lift\nParking"


def test_kato_string_property_types_are_accepted() -> None:
    """property_types may be plain strings instead of {key} objects."""
    assert normalize_kato(kato(property_types=["Office", "Industrial"])).property_types == (
        "office",
        "industrial",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rent": {"from": 20, "to": 10, "metric": "sqft"}}, "rent"),
        ({"rent": {"from": 20, "metric": "per_fortnight_maybe"}}, "rent.metric"),
        ({"rent": {"from": "twelve", "metric": "sqft"}}, "rent.from"),
        ({"rent": {"from": -1, "metric": "sqft"}}, "rent.from"),
        ({"price": {"value": 2e11}}, "price.value"),
        ({"price": {"value": 5, "currency": "pounds"}}, "price.currency"),
        ({"for_sale": "yes"}, "for_sale"),
        ({"address": "1 King St"}, "address"),
        ({"status": 7}, "status"),
        ({"property_types": "office"}, "property_types"),
        ({"size": {"from": "big"}}, "size.from"),
        ({"updated_at": "not a date"}, "updated_at"),
        ({"position": {"lat": "north", "lng": 0}}, "position.lat"),
    ],
)
def test_kato_wrong_values_make_the_record_malformed(changes: dict[str, Any], field: str) -> None:
    """A wrong type or impossible value rejects the Kato record, naming the field."""
    with pytest.raises(MalformedRecord) as caught:
        normalize_kato(kato(**changes))
    assert caught.value.record_id == "1042"
    assert caught.value.reason.startswith(field)


def test_printable_ascii_fast_path_gives_the_same_text_as_the_general_path() -> None:
    """Plain ASCII text is cleaned exactly as it would be through the general path."""
    rng = random.Random(5)
    alphabet = string.printable  # includes \t \n \r \x0b \x0c: both paths get exercised
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        # A trailing NUL forces the general path; the NUL itself is removed there.
        for multiline in (False, True):
            assert clean_text(text, multiline=multiline) == clean_text(
                text + "\x00", multiline=multiline
            ), repr(text)
