"""Specification of rendering shared across the messages of one poll
(listingbot.messages.render_for with ``shared``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from listingbot.messages import SharedFields, listing_fields, message_fields, render_for
from listingbot.models import Change, EventType, Listing, OpenHouse, Price, PriceUnit
from tests.factories import listing

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def listings() -> list[Listing]:
    """Real-shaped listings: a home, a let office with a range, odd text, an open house."""
    return [
        listing("li_1"),
        listing(
            "1234",
            source="kato",
            country="GB",
            for_sale=False,
            to_let=True,
            price=None,
            rent=Price(amount=45, currency="GBP", unit=PriceUnit.PER_SQFT),
            size_sqft=2000,
            size_max_sqft=4500,
            property_types=("office", "retail"),
            summary="Café\u202e <@here> £45 psf.\n\n\nNewly refurbished reception.",
            status="under_offer",
        ),
        listing(
            "li_3",
            address=None,
            latitude=42.65,
            longitude=-73.75,
            photo_url="https://example.com/p.jpg",
            open_houses=(
                OpenHouse(
                    start=datetime(2026, 3, 2, 14, tzinfo=UTC),
                    end=datetime(2026, 3, 2, 16, tzinfo=UTC),
                ),
            ),
        ),
    ]


CHANGES: list[tuple[EventType, tuple[Change, ...]]] = [
    (EventType.NEW, ()),
    (
        EventType.PRICE_DROP,
        (Change(EventType.PRICE_DROP, "sale", old_price=Price(amount=525_000)),),
    ),
    (  # the same change from another figure, with another channel's number
        EventType.PRICE_DROP,
        (Change(EventType.PRICE_DROP, "sale", old_price=Price(amount=550_000), seq=4),),
    ),
    (EventType.STATUS_CHANGE, (Change(EventType.STATUS_CHANGE, None, old_status="sold"),)),
    (
        EventType.STATUS_CHANGE,
        (
            Change(EventType.STATUS_CHANGE, None, old_status="active"),
            Change(EventType.PRICE_INCREASE, "rent", old_price=Price(amount=40)),
        ),
    ),
]


def test_shared_fields_render_every_message_as_rendering_it_alone_does() -> None:
    """A listing's own fields, and what it says of a set of changes, rendered once and
    shared by every channel's message of the poll, give each message the body and digest
    line it has when rendered alone: changes from other figures or statuses are said
    anew, and what depends on the time, the next open house, is not shared."""
    shared: SharedFields = {}
    items = listings()
    later = NOW + timedelta(days=2)  # after the open house
    for names, now in ((("sub-a",), NOW), (("sub-b", "sub-c"), later), (("sub-a",), NOW)):
        for item in items:
            for event, changes in CHANGES:
                alone = render_for(item, event, names, (), changes=changes, now=now)
                together = render_for(
                    item, event, names, (), changes=changes, now=now, shared=shared
                )
                assert together == alone


def test_shared_fields_are_rendered_once_per_listing() -> None:
    """However many messages tell of a listing, its own fields are rendered once."""
    shared: SharedFields = {}
    items = listings()
    for names in (("sub-a",), ("sub-b",)):
        for item in items:
            for event, changes in CHANGES:
                render_for(item, event, names, (), changes=changes, now=NOW, shared=shared)
    assert len(shared) == len(items)


def test_listing_fields_are_the_message_fields_that_depend_on_the_listing_alone() -> None:
    """Every field listing_fields gives is the one message_fields shows for a new listing
    (``details`` as shown when no price moved)."""
    for item in listings():
        fields = message_fields(item, EventType.NEW, ["sub-a"], now=NOW)
        assert listing_fields(item) == {k: fields[k] for k in listing_fields(item)}


def test_a_shared_digest_line_is_the_one_of_its_own_event() -> None:
    """The one-line form shared across channels is kept per event and set of changes: the
    same changes told as another event get that event's line, as rendered alone."""
    shared: SharedFields = {}
    change = (Change(EventType.PRICE_DROP, "sale", old_price=Price(amount=525_000)),)
    for item in listings():
        for event in (EventType.PRICE_DROP, EventType.BACK_ON_MARKET):
            alone = render_for(item, event, ("sub-a",), (), changes=change, now=NOW)
            together = render_for(
                item, event, ("sub-b",), (), changes=change, now=NOW, shared=shared
            )
            assert together.line == alone.line
