"""Specification of the chat text listingbot posts (listingbot.messages)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from listingbot.messages import (
    MESSAGE_MAX_CHARS,
    format_price,
    map_link,
    message_fields,
    render,
    sanitize,
)
from listingbot.models import Change, EventType, Listing, OpenHouse, Price, PriceUnit
from listingbot.templates import FIELDS, parse_template

URL = "https://example.com/li_2hAk61Qi6hFGw6nfrRmG"


def home(**changes: Any) -> Listing:
    fields: dict[str, Any] = {
        "source": "kotohomes",
        "id": "li_2hAk61Qi6hFGw6nfrRmG",
        "url": URL,
        "title": "3 bd condo in New York, NY",
        "summary": "Quaint condo in the heart of the city.",
        "address": "20 W 34th St #2012B, New York, NY 10001",
        "country": "US",
        "for_sale": True,
        "price": Price(amount=500_000),
        "bedrooms": 3,
        "bathrooms": 2.5,
        "size_sqft": 2350,
        "property_type": "condominium",
        "status": "active",
    }
    fields.update(changes)
    return Listing(**fields)


def office(**changes: Any) -> Listing:
    fields: dict[str, Any] = {
        "source": "kato",
        "id": "1234",
        "url": "https://agency.example.co.uk/properties/1234",
        "title": "Office, 1 King St",
        "address": "1 King St, London, EC2V 8AU",
        "country": "GB",
        "to_let": True,
        "rent": Price(amount=45, currency="GBP", unit=PriceUnit.PER_SQFT),
        "size_sqft": 2000,
        "size_max_sqft": 4500,
        "property_types": ("office", "retail"),
        "status": "available",
    }
    fields.update(changes)
    return Listing(**fields)


def lines(text: str) -> list[str]:
    return text.split("\n")


# --- layout and headlines ---------------------------------------------------------


def test_new_home_renders_the_compact_layout() -> None:
    """A new home gives headline, price and facts, address, summary and link, in that order."""
    text = render(home(), EventType.NEW, ["nyc-family-homes"])
    assert lines(text) == [
        "🏠 New listing · nyc-family-homes",
        "$500,000 · 3 bd · 2.5 ba · 2,350 sq ft · Condominium",
        "20 W 34th St #2012B, New York, NY 10001",
        "Quaint condo in the heart of the city.",
        URL,
    ]


@pytest.mark.parametrize(
    ("event", "headline"),
    [
        (EventType.NEW, "New listing"),
        (EventType.PRICE_DROP, "Price drop"),
        (EventType.PRICE_INCREASE, "Price increase"),
        (EventType.STATUS_CHANGE, "Status change"),
    ],
)
def test_headline_names_the_event(event: EventType, headline: str) -> None:
    """Each event type has its own headline wording."""
    first = lines(render(home(), event, ["s"], old_price=Price(amount=1), old_status="a"))[0]
    assert f"{headline} · s" in first


def test_subscription_names_are_sorted_and_comma_separated() -> None:
    """Several matching subscriptions are all named, sorted, in one headline."""
    text = render(home(), EventType.NEW, ["nyc-family-homes", "brooklyn-condos"])
    assert lines(text)[0] == "🏠 New listing · brooklyn-condos, nyc-family-homes"


def test_many_subscription_names_are_capped() -> None:
    """Beyond five names the headline says how many more matched."""
    text = render(home(), EventType.NEW, [f"sub-{i}" for i in range(8)])
    assert lines(text)[0] == "🏠 New listing · sub-0, sub-1, sub-2, sub-3, sub-4 +3 more"


def test_duplicate_subscription_names_are_named_once() -> None:
    """The same subscription name passed twice appears once."""
    text = render(home(), EventType.NEW, ["a", "a"])
    assert lines(text)[0] == "🏠 New listing · a"


# --- prices -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (Price(amount=500_000), "$500,000"),
        (Price(amount=2400, unit=PriceUnit.PER_MONTH), "$2,400/mo"),
        (Price(amount=1_250_000, currency="GBP"), "£1,250,000"),
        (Price(amount=45, currency="GBP", unit=PriceUnit.PER_SQFT), "£45.00 per sq ft"),
        (Price(amount=1234, currency="XYZ"), "1,234 XYZ"),
    ],
    ids=["usd-total", "usd-per-month", "gbp-total", "gbp-per-sqft", "unknown-currency"],
)
def test_format_price_amounts(price: Price, expected: str) -> None:
    """Amounts carry their currency and unit the way readers expect."""
    assert format_price(price) == expected


def test_format_price_range() -> None:
    """A range shows both ends joined by an en dash, the unit once."""
    price = Price(amount=12.5, amount_max=15, currency="GBP", unit=PriceUnit.PER_SQFT)
    assert format_price(price) == "£12.50\u2013£15.00 per sq ft"


def test_format_price_on_application() -> None:
    """A sale price on application says so."""
    assert format_price(Price(on_application=True)) == "Price on application"


def test_format_rent_on_application() -> None:
    """A rent on application says "Rent", not "Price"."""
    price = Price(currency="GBP", unit=PriceUnit.PER_SQFT, on_application=True)
    assert format_price(price) == "Rent on application"


def test_format_price_qualifier_prefix() -> None:
    """A qualifier such as "guide price" is shown before the amount, capitalized."""
    price = Price(amount=1_250_000, currency="GBP", qualifier="guide price")
    assert format_price(price) == "Guide price £1,250,000"


def test_format_price_without_price_is_empty() -> None:
    """No price gives an empty string, never "None"."""
    assert format_price(None) == ""


def test_format_price_ignores_a_currency_that_is_not_a_code() -> None:
    """Listing text in the currency field is not echoed into the message."""
    assert format_price(Price(amount=10, currency="<@everyone>")) == "10"


def test_price_drop_shows_old_new_and_percentage() -> None:
    """A price drop shows old -> new with the signed change in percent."""
    text = render(home(), EventType.PRICE_DROP, ["s"], old_price=Price(amount=525_000))
    assert lines(text)[1].startswith("$525,000 → $500,000 (\u22124.8%) · 3 bd")


def test_price_increase_shows_positive_percentage() -> None:
    """A price increase shows a plus sign."""
    text = render(
        home(price=Price(amount=550_000)),
        EventType.PRICE_INCREASE,
        ["s"],
        old_price=Price(amount=500_000),
    )
    assert "$500,000 → $550,000 (+10.0%)" in text


def test_price_change_across_currencies_has_no_percentage() -> None:
    """Prices in different currencies are not compared as numbers."""
    text = render(home(), EventType.PRICE_DROP, ["s"], old_price=Price(amount=1, currency="EUR"))
    assert "€1 → $500,000 ·" in text


def test_rent_change_compares_the_rent() -> None:
    """For a listing with only a rent, the change is shown on the rent, and says so."""
    text = render(
        office(),
        EventType.PRICE_DROP,
        ["s"],
        old_price=Price(amount=50, currency="GBP", unit=PriceUnit.PER_SQFT),
    )
    assert text.startswith("📉 Rent drop · s\n£50.00 → £45.00 per sq ft (\u221210.0%)")


def test_sale_and_rent_are_both_shown() -> None:
    """A listing both for sale and to let shows the price and the labelled rent."""
    listing = office(for_sale=True, price=Price(amount=1_250_000, currency="GBP"))
    assert lines(render(listing, EventType.NEW, ["s"]))[1].startswith(
        "£1,250,000 · To let £45.00 per sq ft"
    )


def test_tenure_shown_when_there_is_no_figure() -> None:
    """Without any price, the message still says whether it is for sale or to let."""
    listing = office(rent=None, for_sale=True)
    assert lines(render(listing, EventType.NEW, ["s"]))[1].startswith("For sale or to let ·")


# --- status -------------------------------------------------------------------------


def test_status_change_shows_old_and_new_in_words() -> None:
    """Status slugs become words: under_offer -> Under offer."""
    text = render(
        office(status="under_offer"), EventType.STATUS_CHANGE, ["s"], old_status="available"
    )
    assert lines(text)[1] == "Available → Under offer"


def test_status_change_without_old_status_shows_new_status() -> None:
    """An unknown previous status is left out rather than printed as None."""
    text = render(home(status="pending"), EventType.STATUS_CHANGE, ["s"])
    assert lines(text)[1] == "Pending"


# --- facts --------------------------------------------------------------------------


def test_commercial_facts_show_size_range_and_types() -> None:
    """Commercial listings show their size range and all their types."""
    text = render(office(), EventType.NEW, ["s"])
    assert lines(text)[1] == "£45.00 per sq ft · 2,000\u20134,500 sq ft · Office, Retail"


def test_missing_fields_are_omitted() -> None:
    """A listing with only a title gives headline and title: no None, no empty lines."""
    bare = Listing(source="kato", id="9", title="Unit 4", country="GB")
    assert render(bare, EventType.NEW, ["s"]) == "🏠 New listing · s\nUnit 4"


def test_title_is_shown_when_there_is_no_address() -> None:
    """The title stands in for a missing address."""
    text = render(home(address=None), EventType.NEW, ["s"])
    assert lines(text)[2] == "3 bd condo in New York, NY"


# --- sanitizing ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["summary", "address", "title"])
def test_mention_syntax_is_neutralized_in_listing_text(field: str) -> None:
    """<@user> and <#channel> in listing text cannot become mentions."""
    changes: dict[str, Any] = {"address": None, field: "Call <@alice> or see <#sales> now"}
    text = render(home(**changes), EventType.NEW, ["s"])
    assert "Call \u2039@alice> or see \u2039#sales> now" in text
    assert "<@" not in text
    assert "<#" not in text


def test_mention_in_summary_is_shown_with_a_lookalike() -> None:
    """The neutralized mention stays readable."""
    assert sanitize("ask <@alice>") == "ask \u2039@alice>"


def test_mention_in_property_type_is_neutralized() -> None:
    """Property types are listing text too."""
    text = render(office(property_types=("<@here>",)), EventType.NEW, ["s"])
    assert "<@" not in text


def test_mention_split_by_zero_width_space_is_neutralized() -> None:
    """An invisible character between < and @ does not smuggle a mention through."""
    assert sanitize("<\u200b@alice>") == "\u2039@alice>"


def test_control_characters_are_stripped() -> None:
    """C0, DEL and C1 control characters are removed."""
    assert sanitize("a\x00b\x1b[31mc\x7fd\x85e\x9bf") == "ab[31mcd ef"


def test_bidi_controls_are_stripped() -> None:
    """Bidi embeddings, overrides and isolates are removed."""
    assert sanitize("safe\u202egnp.exe\u2066x\u2069") == "safegnp.exex"


def test_lone_surrogates_are_stripped() -> None:
    """Text that cannot be encoded as UTF-8 is dropped, so the send cannot fail on it."""
    text = render(home(summary="ok \ud800 fine"), EventType.NEW, ["s"])
    text.encode("utf-8")
    assert "ok fine" in text


def test_whitespace_runs_collapse() -> None:
    """Runs of spaces, tabs and newlines become one space."""
    assert sanitize("  a \t\t b\n\n\nc  ") == "a b c"


def test_multiline_keeps_single_line_breaks() -> None:
    """With multiline, paragraphs keep one line break and blank lines go."""
    assert sanitize("a  b\r\n\r\n\n c\u2028d", multiline=True) == "a b\nc\nd"


def test_summary_keeps_its_line_breaks() -> None:
    """Summaries are the one field where line breaks survive."""
    text = render(home(summary="First.\n\n\nSecond."), EventType.NEW, ["s"])
    assert "First.\nSecond." in text


def test_sanitize_caps_length_at_a_word_boundary() -> None:
    """Capped text ends with an ellipsis after a whole word and fits the cap."""
    assert sanitize("the quick brown fox jumps", max_len=18) == "the quick brown…"


def test_sanitize_caps_a_long_word_mid_word() -> None:
    """Text without a nearby word boundary is cut mid-word to stay within the cap."""
    assert sanitize("a " + "x" * 50, max_len=10) == "a xxxxxxx…"


def test_long_summary_is_cut_with_an_ellipsis() -> None:
    """A long description is cut to about 280 characters at a word boundary."""
    text = render(home(summary="lovely home " * 100), EventType.NEW, ["s"])
    summary = lines(text)[3]
    assert summary.endswith("home…")
    assert 250 <= len(summary) <= 280


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://example.com/x",
        "data:text/html,hi",
        "https://bank.example@evil.example/login",
        "https://example.com/a b",
        "https://example.com/<@alice>",
        "//example.com/x",
        "https://",
    ],
)
def test_unsafe_or_non_http_url_is_dropped(url: str) -> None:
    """Only plain http(s) links are shown; anything else is left out."""
    text = render(home(url=url), EventType.NEW, ["s"])
    assert lines(text)[-1] == "Quaint condo in the heart of the city."


def test_http_url_is_kept() -> None:
    """A plain http link is shown as the last line."""
    text = render(home(url="http://example.com/x?id=1"), EventType.NEW, ["s"])
    assert lines(text)[-1] == "http://example.com/x?id=1"


def test_whole_message_is_capped_and_keeps_the_link() -> None:
    """Huge fields never push the message past the cap, and the link survives."""
    long_url = "https://example.com/" + "a" * 270
    listing = home(
        url=long_url,
        title="T" * 5000,
        address="long address " * 500,
        summary="words " * 2000,
        property_types=tuple(f"type-{i}" * 20 for i in range(10)),
    )
    text = render(listing, EventType.NEW, [f"subscription-{i}" * 5 for i in range(20)])
    assert len(text) <= MESSAGE_MAX_CHARS
    assert lines(text)[-1] == long_url


# --- agent, open house, map, label ------------------------------------------------

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def open_house(day: int, hour: int, hours: int = 2) -> OpenHouse:
    start = datetime(2026, 12, day, hour, tzinfo=UTC)
    return OpenHouse(start=start, end=start.replace(hour=hour + hours))


def test_full_listing_adds_open_house_agent_and_map_after_the_address() -> None:
    """The default gains the next open house, the agent and a map link, each on its line."""
    listing = home(
        agent="Jane Doe, 2125550100",
        latitude=40.748441,
        longitude=-73.985664,
        open_houses=(open_house(5, 15),),
    )
    text = render(listing, EventType.NEW, ["s"], now=NOW, tz=NEW_YORK)
    assert lines(text) == [
        "🏠 New listing · s",
        "$500,000 · 3 bd · 2.5 ba · 2,350 sq ft · Condominium",
        "20 W 34th St #2012B, New York, NY 10001",
        "Open house: Sat 5 Dec 10:00\u201312:00 EST",
        "Agent: Jane Doe, 2125550100",
        "Quaint condo in the heart of the city.",
        URL,
        "Map: https://www.openstreetmap.org/?mlat=40.74844&mlon=-73.98566#map=17/40.74844/-73.98566",
    ]


def test_open_house_is_the_next_one_not_yet_ended() -> None:
    """Open houses that have ended are skipped; the next one is shown."""
    listing = home(open_houses=(open_house(1, 9), open_house(3, 14)))
    assert message_fields(listing, EventType.NEW, ["s"], now=NOW)["open_house"] == (
        "Thu 3 Dec 14:00\u201316:00 UTC"
    )


def test_open_house_under_way_is_still_the_next_one() -> None:
    """One that started but has not ended is still worth going to."""
    listing = home(open_houses=(open_house(1, 11),))
    assert message_fields(listing, EventType.NEW, ["s"], now=NOW)["open_house"].startswith(
        "Tue 1 Dec 11:00"
    )


def test_open_house_line_is_left_out_when_all_have_ended() -> None:
    """Only past open houses: no open-house line."""
    listing = home(open_houses=(open_house(1, 8),))
    assert "Open house" not in render(listing, EventType.NEW, ["s"], now=NOW)


def test_open_house_shown_in_the_time_zone_across_a_dst_change() -> None:
    """Times are shown in the subscription's zone with that day's abbreviation."""
    start = datetime(2026, 3, 8, 15, tzinfo=UTC)  # the day New York springs forward
    listing = home(open_houses=(OpenHouse(start=start),))
    fields = message_fields(
        listing, EventType.NEW, ["s"], now=NOW.replace(month=3, day=1), tz=NEW_YORK
    )
    assert fields["open_house"] == "Sun 8 Mar 11:00 EDT"


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(None, -73.9), (40.7, None), (0.0, 0.0), (float("nan"), 1.0), (91.0, 1.0)],
)
def test_no_map_link_without_a_usable_position(lat: float | None, lon: float | None) -> None:
    """A missing, zero or impossible position gives no map link."""
    assert map_link(lat, lon) == ""


def test_labels_replace_subscription_names_in_the_headline() -> None:
    """``label`` is what a channel reads; the internal names stay out of the headline."""
    text = render(home(), EventType.NEW, ["nyc-under-1m"], labels=["Homes under $1M"])
    assert lines(text)[0] == "🏠 New listing · Homes under $1M"


def test_label_text_is_sanitized() -> None:
    """A label cannot carry a mention either."""
    text = render(home(), EventType.NEW, ["s"], labels=["<@here> homes"])
    assert lines(text)[0] == "🏠 New listing · \u2039@here> homes"


def test_every_catalogued_field_has_a_value_and_no_other() -> None:
    """The template reference (FIELDS) and the fields a message offers are the same set."""
    assert message_fields(home(), EventType.NEW, ["s"]).keys() == FIELDS.keys()


# --- operator templates -----------------------------------------------------------


def test_an_operator_template_replaces_the_layout() -> None:
    """A subscription's template decides the whole text."""
    template = parse_template("{title} \u2014 {price}\n{url}")
    text = render(home(), EventType.NEW, ["s"], template=template)
    assert text == f"3 bd condo in New York, NY \u2014 $500,000\n{URL}"


def test_template_values_are_sanitized() -> None:
    """Listing text put in by a template is neutralized like everywhere else."""
    template = parse_template("{title}")
    text = render(home(title="hi <@alice>\u202e"), EventType.NEW, ["s"], template=template)
    assert text == "hi \u2039@alice>"


def test_template_literal_text_is_sanitized_too() -> None:
    """The template's own text cannot make a mention or carry control characters."""
    template = parse_template("<@channel> \x1b{title}")
    text = render(home(), EventType.NEW, ["s"], template=template)
    assert text == "\u2039@channel> 3 bd condo in New York, NY"


def test_template_output_is_capped_and_keeps_the_link() -> None:
    """A template repeating long fields still fits the cap, and the link survives whole."""
    template = parse_template("{summary}{summary}{summary}{summary}{summary}\n{url}")
    text = render(home(summary="word " * 60), EventType.NEW, ["s"], template=template)
    assert len(text) <= MESSAGE_MAX_CHARS
    assert lines(text)[-1] == URL


def test_template_for_a_price_drop_can_name_the_change() -> None:
    """``{change}`` says old → new for a price event."""
    template = parse_template("{event}: {change}")
    text = render(
        home(), EventType.PRICE_DROP, ["s"], old_price=Price(amount=525_000), template=template
    )
    assert text == "📉 Price drop: $525,000 \u2192 $500,000 (\u22124.8%)"


def test_a_combined_message_names_each_change_in_its_headline() -> None:
    """A price drop with a status change reads `📉 Price drop · Under offer`, with the
    status line and the price change both shown."""
    text = render(
        office(status="under_offer"),
        EventType.PRICE_DROP,
        ["s"],
        changes=[
            Change(
                EventType.PRICE_DROP,
                "rent",
                Price(amount=50, currency="GBP", unit=PriceUnit.PER_SQFT),
            ),
            Change(EventType.STATUS_CHANGE, old_status="available"),
        ],
    )
    assert lines(text)[:3] == [
        "📉 Rent drop · Under offer · s",
        "Available → Under offer",
        lines(text)[2],
    ]
    assert lines(text)[2].startswith("£50.00 → £45.00 per sq ft (\u221210.0%)")


def test_a_range_change_shows_both_ranges_and_no_percentage() -> None:
    """A range that moved shows the old range whole and no single percentage."""
    rent = Price(amount=23.75, amount_max=27.5, currency="GBP", unit=PriceUnit.PER_SQFT)
    old = Price(amount=25, amount_max=27.5, currency="GBP", unit=PriceUnit.PER_SQFT)
    text = render(office(rent=rent), EventType.PRICE_DROP, ["s"], old_price=old)
    assert "£25.00\u2013£27.50 → £23.75\u2013£27.50 per sq ft ·" in text
    assert "%" not in text
