"""Small builders for test data: listings and subscription specs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from listingbot.detection import SubSpec
from listingbot.models import EventType, Listing, Price

ALL_EVENTS = frozenset(EventType)


def listing(id: str = "li_1", **overrides: Any) -> Listing:
    fields: dict[str, Any] = {
        "source": "kotohomes",
        "id": id,
        "url": f"https://example.com/{id}",
        "title": "3 bd house in Albany, NY",
        "summary": "Bright family home.",
        "address": "1 Main St, Albany, NY 12207",
        "region": "NY",
        "postcode": "12207",
        "country": "US",
        "for_sale": True,
        "price": Price(amount=500_000, currency="USD"),
        "bedrooms": 3,
        "bathrooms": 2,
        "status": "active",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return Listing(**fields)


def spec(
    name: str = "sub-a",
    channel_id: int = 702,
    *,
    notify: frozenset[EventType] = ALL_EVENTS,
    baselining: bool = False,
    accepts: Any = None,
) -> SubSpec:
    return SubSpec(
        name=name,
        channel_id=channel_id,
        notify=notify,
        baselining=baselining,
        accepts=accepts or (lambda _listing: True),
    )
