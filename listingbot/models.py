"""The normalized listing both sources become, and the events listingbot reports.

Every model here is frozen: a ``Listing`` is a fact observed at one poll, never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["kotohomes", "kato"]
SOURCES: tuple[Source, ...] = ("kotohomes", "kato")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceUnit(StrEnum):
    """What an amount is for."""

    TOTAL = "total"  # a purchase price
    PER_MONTH = "per_month"  # rent for the whole unit, monthly
    PER_YEAR = "per_year"  # rent for the whole unit, yearly
    PER_SQFT = "per_sqft"  # rent per square foot (per year, UK convention)
    PER_SQM = "per_sqm"  # rent per square metre (per year)
    PER_DESK = "per_desk"  # rent per desk (flexible workspace; period as the agent quotes)


class Price(Frozen):
    """An asking price or rent. ``amount`` is None when it is "on application"."""

    amount: float | None = None
    amount_max: float | None = None  # set when the source gives a range (rent 12-15/sq ft)
    currency: str = "USD"
    unit: PriceUnit = PriceUnit.TOTAL
    on_application: bool = False
    qualifier: str | None = None  # "guide price", "offers over", ...


class OpenHouse(Frozen):
    """A time the listing can be visited without an appointment (Kotohomes)."""

    start: datetime
    end: datetime | None = None


class EventType(StrEnum):
    """What happened to a listing, as a subscription's ``notify`` names it."""

    NEW = "new"
    PRICE_DROP = "price_drop"  # of the sale price or of the rent (the event says which)
    PRICE_INCREASE = "price_increase"
    STATUS_CHANGE = "status_change"
    NOW_FOR_RENT = "now_for_rent"  # the deal type changed to renting: not a price change
    NOW_FOR_SALE = "now_for_sale"  # the deal type changed to selling
    REMOVED = "removed"  # confirmed gone from the source
    BACK_ON_MARKET = "back_on_market"  # listed again after it was removed


FigureName = Literal["sale", "rent"]


@dataclass(frozen=True)
class Change:
    """One event in a message: what changed, and what it was before.

    ``figure`` says which figure a price event is about (``sale``: the sale price,
    ``rent``: the rent); ``old_price`` is that figure before, ``old_status`` the status
    before a status change. ``seq`` is the change's number in its channel (its key).
    """

    type: EventType
    figure: FigureName | None = None
    old_price: Price | None = None
    old_status: str | None = None
    seq: int = 0
    since: str | None = None  # removed / back_on_market: when the removal was confirmed


# What a subscription hears about unless its ``notify`` says otherwise: removals and
# returns are opt-in (a listing that goes quiet is usually just sold or let).
DEFAULT_NOTIFY: frozenset[EventType] = frozenset(EventType) - {
    EventType.REMOVED,
    EventType.BACK_ON_MARKET,
}


class Listing(Frozen):
    """One listing from either source, in one shape.

    ``price`` is the sale price (Kotohomes ``price``; Kato ``price``) and ``rent`` the
    rent (Kato ``rent``; Kotohomes ``price`` when ``type == for_rent``). ``asking`` picks
    the figure that price-change detection compares.
    """

    source: Source
    id: str = Field(min_length=1, max_length=200)
    url: str | None = None
    title: str  # short headline: "3 bd house in Brooklyn, NY" / "Office, 1 King St"
    summary: str | None = None  # description / marketing summary, already length-capped
    address: str | None = None  # one line: street, unit, city, state/county, zip/postcode
    city: str | None = None
    region: str | None = None  # US state code, UK county
    postcode: str | None = None  # US ZIP code, UK postcode
    country: Literal["US", "GB"]
    latitude: float | None = None
    longitude: float | None = None
    for_sale: bool = False
    to_let: bool = False
    price: Price | None = None
    rent: Price | None = None
    size_sqft: float | None = None  # living area (Kotohomes) / lower bound of size (Kato)
    size_max_sqft: float | None = None
    lot_size_acres: float | None = None
    bedrooms: float | None = None
    bathrooms: float | None = None
    year_built: int | None = None
    property_type: str | None = None  # first / main type, lower-case slug
    property_types: tuple[str, ...] = ()
    status: str | None = None  # lower-case slug: active, pending, available, under_offer, ...
    mls_number: str | None = None
    photo_url: str | None = None
    agent: str | None = None  # "Name, phone" - display only
    open_houses: tuple[OpenHouse, ...] = ()  # Kotohomes; aware datetimes, as the source gave
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)

    @property
    def asking(self) -> Price | None:
        """The figure whose change is a price drop or increase."""
        if self.price is not None and self.price.amount is not None:
            return self.price
        if self.rent is not None and self.rent.amount is not None:
            return self.rent
        return self.price or self.rent

    @property
    def asking_amount(self) -> float | None:
        asking = self.asking
        return None if asking is None else asking.amount
