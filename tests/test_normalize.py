"""The sources' normalizers: raw Kotohomes / Kato records become Listings, or MalformedRecord."""

from __future__ import annotations

import contextlib
import copy
import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from listingbot.models import PriceUnit
from listingbot.normalize import (
    SUMMARY_MAX_CHARS,
    TITLE_MAX_CHARS,
    FieldProblem,
    FieldReader,
    MalformedRecord,
)
from listingbot.sim.market import Market
from listingbot.sources.kato import normalize_kato
from listingbot.sources.kotohomes import normalize_kotohomes
from listingbot.text import clean as clean_text
from tests.test_kato_fast_paths import _ODD_VALUES as ODD_VALUES

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
def test_a_kotohomes_wrong_value_costs_that_field_only(changes: dict[str, Any], field: str) -> None:
    """A wrong type or impossible value drops that field (reported, naming it); the
    listing keeps every other field, exactly as if the field had been left out."""
    problems: list[FieldProblem] = []
    listing = normalize_kotohomes(koto(**changes), problems=problems)
    assert [(p.record_id, p.field) for p in problems] == [("li_2hAk61Qi6hFGw6nfrRmG", field)]
    without = koto(**dict.fromkeys(changes))
    assert listing == normalize_kotohomes(without)


def test_kotohomes_without_any_timestamp_is_still_a_listing() -> None:
    """Neither created_at nor updated_at: the listing is kept, with no times."""
    listing = normalize_kotohomes(koto(created_at=None, updated_at=None))
    assert (listing.created_at, listing.updated_at) == (None, None)


@pytest.mark.parametrize(
    "bad_id", [None, "", "   ", True, 3.5, {"id": 1}, "x" * 201, "a\x00b", "\ud800x"]
)
def test_record_without_a_usable_id_is_malformed(bad_id: Any) -> None:
    """No id, an empty one, one of a wrong type, or one holding a control or a lone
    surrogate: MalformedRecord with record_id None."""
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


def test_kato_url_comes_from_the_record_when_it_has_one() -> None:
    """url / website_url in the record win over any template; without both, no files and
    no template, there is no link."""
    template = "https://agency.example/property/{id}"
    url = normalize_kato(kato(url="https://a.example/1"), listing_url=template).url
    assert url == "https://a.example/1"
    assert normalize_kato(kato(website_url="https://b.example/1")).url == "https://b.example/1"
    assert normalize_kato(KATO_RECORD).url is None


@pytest.mark.parametrize(
    ("template", "url"),
    [
        ("https://agency.example/property/{id}", "https://agency.example/property/1042"),
        ("https://agency.example/p/{reference_number}", "https://agency.example/p/AV2024-1042"),
        (
            "https://agency.example/x?ref={external_ref}&src=bot",
            "https://agency.example/x?ref=EXT-1&src=bot",
        ),
    ],
)
def test_kato_listing_url_template_fills_each_placeholder(template: str, url: str) -> None:
    """sources.kato.listing_url over {id}, {reference_number}, {external_ref}."""
    record = kato(reference_number="AV2024-1042")
    assert normalize_kato(record, listing_url=template).url == url


def test_kato_link_falls_back_to_the_brochure_then_the_particulars() -> None:
    """Without a template (or when the record lacks the value it names), the brochure is
    the link; without a brochure, the particulars."""
    files = [
        {"type": "floor_plan", "url": "https://f.example/plan.pdf"},
        {"type": "particulars", "url": "https://f.example/particulars.pdf"},
        {"type": "brochure", "url": "https://f.example/brochure.pdf"},
    ]
    assert normalize_kato(kato(files=files)).url == "https://f.example/brochure.pdf"
    no_ref = kato(files=files, external_ref=None)
    linked = normalize_kato(no_ref, listing_url="https://a.example/{external_ref}")
    assert linked.url == "https://f.example/brochure.pdf"
    assert normalize_kato(kato(files=files[:2])).url == "https://f.example/particulars.pdf"


def test_kato_reference_values_are_quoted_into_the_link() -> None:
    """A reference with spaces or slashes cannot break out of its place in the URL."""
    record = kato(reference_number="AV 12/3?x")
    url = normalize_kato(record, listing_url="https://a.example/p/{reference_number}").url
    assert url == "https://a.example/p/AV%2012%2F3%3Fx"


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
        ({"for_sale": "maybe"}, "for_sale"),
        ({"address": "1 King St"}, "address"),
        ({"status": 7}, "status"),
        ({"property_types": "office"}, "property_types"),
        ({"size": {"from": "big"}}, "size.from"),
        ({"updated_at": "not a date"}, "updated_at"),
        ({"position": {"lat": "north", "lng": 0}}, "position.lat"),
    ],
)
def test_a_kato_wrong_value_costs_that_field_only(changes: dict[str, Any], field: str) -> None:
    """A wrong type or impossible value drops what it belongs to (reported, naming the
    field); the rest of the Kato record is kept."""
    problems: list[FieldProblem] = []
    listing = normalize_kato(kato(**changes), problems=problems)
    assert [(p.record_id, p.field) for p in problems] == [("1042", field)]
    assert listing.title == "The Works, Leeds" or field == "address"
    assert listing.agent == "Ann Lee, Leeds"
    assert listing.photo_url == "https://img.example/1.jpg"


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


# --- Kato's PHP/Laravel shapes: each one read, nothing dropped ---------------------------


def _clean(record: dict[str, Any], **kwargs: Any) -> Any:
    problems: list[FieldProblem] = []
    listing = normalize_kato(record, problems=problems, **kwargs)
    assert problems == []
    return listing


def test_kato_empty_object_as_empty_list_is_an_empty_object() -> None:
    """PHP writes an empty object as []: no price, no position, no address - no problem."""
    listing = _clean(kato(price=[], position=[], size=[], marketing=[]))
    assert (listing.price, listing.latitude, listing.size_sqft, listing.summary) == (
        None,
        None,
        None,
        None,
    )
    assert listing.rent is not None


@pytest.mark.parametrize(("yes", "no"), [(1, 0), ("1", "0"), ("true", "false")])
def test_kato_booleans_as_0_and_1(yes: Any, no: Any) -> None:
    """0/1, "1"/"0" and "true"/"false" are booleans, wherever a boolean is expected."""
    record = kato(
        for_sale=yes,
        to_let=no,
        price={"value": None, "currency": "GBP", "price_on_application": yes},
    )
    listing = _clean(record)
    assert (listing.for_sale, listing.to_let) == (True, False)
    assert listing.price is not None
    assert listing.price.on_application


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("£45.00 psf", 45.0, PriceUnit.PER_SQFT),
        ("45.00", 45.0, PriceUnit.PER_SQFT),
        ("£12.50 per sq ft", 12.5, PriceUnit.PER_SQFT),
        ("GBP 1,250.75", 1250.75, PriceUnit.PER_SQFT),
        ("£30 per ft2", 30.0, PriceUnit.PER_SQFT),
    ],
)
def test_kato_money_strings_with_symbols_and_suffixes(
    text: str, amount: float, unit: PriceUnit
) -> None:
    """Money as formatted text: the figure is read, symbols and suffixes set aside."""
    listing = _clean(kato(rent={"from": text, "metric": "sqft", "currency": "GBP"}))
    assert listing.rent is not None
    assert (listing.rent.amount, listing.rent.unit, listing.rent.currency) == (
        amount,
        unit,
        "GBP",
    )


def test_kato_sale_price_as_formatted_text() -> None:
    """A sale price of "£1,250,000" is 1,250,000 GBP."""
    record = kato(for_sale=1, price={"value": "£1,250,000", "price_on_application": 0})
    listing = _clean(record)
    assert listing.price is not None
    assert (listing.price.amount, listing.price.currency) == (1_250_000, "GBP")


def test_kato_unit_named_only_in_the_figure_is_used() -> None:
    """No metric, but "£45.00 psf": per sq ft, not the default yearly rent."""
    listing = _clean(kato(rent={"from": "£45.00 psf"}))
    assert listing.rent is not None
    assert listing.rent.unit is PriceUnit.PER_SQFT


@pytest.mark.parametrize(
    ("metric", "unit"),
    [
        ("per_annum", PriceUnit.PER_YEAR),
        ("pa", PriceUnit.PER_YEAR),
        ("pcm", PriceUnit.PER_MONTH),
        ("per_month", PriceUnit.PER_MONTH),
        ("per_desk", PriceUnit.PER_DESK),
        ("per_sq_m", PriceUnit.PER_SQM),
        ("psf", PriceUnit.PER_SQFT),
    ],
)
def test_kato_rent_metrics_beyond_sqft_and_sqm(metric: str, unit: PriceUnit) -> None:
    """Whole-unit yearly or monthly rents and per-desk rents keep their unit."""
    listing = _clean(kato(rent={"from": 450, "metric": metric, "currency": "GBP"}))
    assert listing.rent is not None
    assert (listing.rent.amount, listing.rent.unit) == (450, unit)


@pytest.mark.parametrize(
    "status",
    [
        {"key": "under_offer"},
        {"id": 3, "value": "under_offer", "label": "Under Offer"},
        {"label": "Under Offer"},
        {"name": "Under offer", "colour": "#fa0"},
        "Under Offer",
    ],
)
def test_kato_status_as_a_string_or_an_object_with_other_keys(status: Any) -> None:
    """status as a slug, a label, or an object under any of the usual keys."""
    assert _clean(kato(status=status)).status == "under_offer"


def test_a_rent_metric_nobody_knows_costs_the_rent_not_the_listing() -> None:
    """An unknown metric drops the rent (a figure without a unit is no fact) and reports
    it; the listing is still read."""
    problems: list[FieldProblem] = []
    listing = normalize_kato(kato(rent={"from": 9, "metric": "per_fortnight"}), problems=problems)
    assert listing.rent is None
    assert [(p.field, p.top_field) for p in problems] == [("rent.metric", "rent")]


@pytest.mark.parametrize("text", ["POA", "Price on application", "£ on application"])
def test_kato_price_on_application_as_text_is_no_figure_and_no_problem(text: str) -> None:
    """ "POA" in the figure's place says there is no figure: nothing to drop or report."""
    record = kato(for_sale=True, price={"value": text, "price_on_application": True})
    listing = _clean(record)
    assert listing.price is not None
    assert (listing.price.amount, listing.price.on_application) == (None, True)


def test_kotohomes_open_houses_are_read_earliest_first() -> None:
    """``open_houses [{start, end}]`` becomes aware times, sorted by start."""
    listing = normalize_kotohomes(
        koto(
            open_houses=[
                {"start": "2026-12-06T15:00:00Z", "end": "2026-12-06T17:00:00Z"},
                {"start": "2026-12-05T10:00:00-05:00", "end": "2026-12-05T12:00:00-05:00"},
            ]
        )
    )
    assert [(h.start, h.end) for h in listing.open_houses] == [
        (datetime(2026, 12, 5, 15, tzinfo=UTC), datetime(2026, 12, 5, 17, tzinfo=UTC)),
        (datetime(2026, 12, 6, 15, tzinfo=UTC), datetime(2026, 12, 6, 17, tzinfo=UTC)),
    ]


def test_a_kotohomes_bad_open_house_costs_only_itself() -> None:
    """An unreadable open house is dropped and reported; the others and the record stay."""
    problems: list[FieldProblem] = []
    listing = normalize_kotohomes(
        koto(
            open_houses=[
                {"start": "soon"},
                {"start": "2026-12-06T15:00:00Z", "end": "2026-12-06T14:00:00Z"},
            ]
        ),
        problems=problems,
    )
    assert [(h.start, h.end) for h in listing.open_houses] == [
        (datetime(2026, 12, 6, 15, tzinfo=UTC), None)
    ]
    assert {p.field for p in problems} == {"open_houses[0].start", "open_houses[1].end"}


# --- the readers' fast path answers as their checked twins do ----------------------------

_READER_VALUES: list[Any] = [
    None,
    "",
    "  plain  text ",
    "£1,250.50 pcm",
    "USD 12",
    "https://example.com/a b",
    "http://example.com/x",
    "ftp://example.com",
    "bidi\u202etext",
    "x" * 12_000,
    "0",
    "1",
    "yes",
    "maybe",
    0,
    1,
    7,
    -3,
    10**13,
    2.5,
    -0.5,
    float("nan"),
    float("inf"),
    True,
    False,
    [],
    [1, 2],
    {},
    {"a": 1},
    ("tuple",),
    b"bytes",
    "2024-03-01T09:00:00Z",
    " 2024-03-01T09:00:00+02:00 ",
    "2024-03-01T09:00:00",
    "2024-02-30T00:00:00Z",
    "1850-01-01T00:00:00Z",
    "2300-01-01T00:00:00",
    "GBP",
    "gbp",
    "EU1",
    "\u00c0BC",
    "£",
    "£54,300.00",
    "£45.00 psf",
    "£12 psm",
    "1,250.50",
    "12,",
    "1,,2",
    "£0.00",
    "9" * 400,
    "£ 12",
    "12 psf ",
    "\u0663\u0664",
]

_READER_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("text", {}),
    ("text", {"multiline": True}),
    ("url", {}),
    ("code", {"digits": 5}),
    ("number", {}),
    ("number", {"minimum": 0.0, "maximum": 100.0}),
    ("amount", {}),
    ("amount", {"maximum": 1e6}),
    ("boolean", {}),
    ("mapping", {}),
    ("items", {}),
    ("when", {}),
    ("currency", {}),
]


@pytest.mark.parametrize(("method", "options"), _READER_CALLS)
def test_each_field_reader_answers_as_its_checked_twin(
    method: str, options: dict[str, Any]
) -> None:
    """A reader's fast path (well-formed values) gives the same value, and reports the
    same problems, as the checked path it skips: the speed-up changes no output."""
    for value in _READER_VALUES:
        fast_problems: list[FieldProblem] = []
        checked_problems: list[FieldProblem] = []
        fast = getattr(FieldReader("r1", fast_problems), method)(value, "f", **options)
        checked = getattr(FieldReader("r1", checked_problems), "_" + method)(value, "f", **options)
        assert (fast, fast_problems) == (checked, checked_problems), (method, value)


def _places(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field of a record, nested ones too (the first two items of a list)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _places(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value[:2]):
            yield (*prefix, index)
            yield from _places(inner, (*prefix, index))


def test_an_odd_value_anywhere_in_a_kotohomes_record_costs_a_field_or_refuses_the_record() -> None:
    """Whatever value any field of a Kotohomes record holds, normalizing it gives a listing
    or refuses the record (``MalformedRecord``): no other error escapes to fail the poll
    (a date a time zone moves before year 1 once raised ``OverflowError``)."""
    records = Market(5, kotohomes_count=4, kato_count=0).kotohomes_records()
    tried = 0
    for record in records:
        for place in sorted(set(_places(record)), key=repr):
            for value in ODD_VALUES:
                changed = copy.deepcopy(record)
                target: Any = changed
                for key in place[:-1]:
                    target = target[key]
                target[place[-1]] = copy.deepcopy(value)
                with contextlib.suppress(MalformedRecord):
                    normalize_kotohomes(changed)
                tried += 1
    assert tried > 5_000
