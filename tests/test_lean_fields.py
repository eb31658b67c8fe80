"""What the lean read must hold (issue 15): every field of a listing that matching (the
index and the local filters but keywords), detection and ``Facts`` read is one the lean
read reads, so a filter or event added later on a field it skips fails here rather than
silently matching nothing."""

from __future__ import annotations

from typing import Any

from listingbot.config.filters import LocalFilters
from listingbot.detection import SubSpec, detect
from listingbot.matching import MatchIndex, local_match
from listingbot.models import EventType
from listingbot.records import Facts
from listingbot.sim.market import Market
from listingbot.sources.kato import normalize_kato
from tests.test_kato_fast_paths import _LEAN_FIELDS

# Listing properties computed from lean fields only (``models.Listing``).
DERIVED = {"key", "asking", "asking_amount"}


class Reading:
    """A listing that notes every attribute read of it."""

    def __init__(self, listing: Any, read: set[str]) -> None:
        object.__setattr__(self, "_listing", listing)
        object.__setattr__(self, "_read", read)

    def __getattr__(self, name: str) -> Any:
        self._read.add(name)
        return getattr(self._listing, name)


def _listings() -> list[Any]:
    records = Market(5, kotohomes_count=0, kato_count=40).kato_records()
    return [normalize_kato(record) for record in records]


def test_matching_reads_only_what_the_lean_read_reads() -> None:
    """Every filter but the keywords, set, through the index and through ``local_match``,
    reads only lean fields."""
    filters = LocalFilters(
        property_types=("office",),
        size_min=100,
        size_max=1e6,
        rent_max=1e6,
        postcode_prefixes=("LS", "EC1"),
        to_let=True,
        for_sale=False,
    )
    index = MatchIndex([("sub", filters), ("any", LocalFilters())])
    read: set[str] = set()
    for listing in _listings():
        reading: Any = Reading(listing, read)
        index.matches(reading)
        local_match(filters, reading)
    assert read
    assert read <= set(_LEAN_FIELDS) | DERIVED


def test_detection_and_facts_read_only_what_the_lean_read_reads() -> None:
    """A first sighting, a price change, a status change and a deal-type change, detected
    for a subscription that wants every event, and the facts kept of each listing, read
    only lean fields."""
    spec = SubSpec("sub", 1, frozenset(EventType), False, lambda _listing: True)
    read: set[str] = set()
    events: set[EventType] = set()
    for listing in _listings():
        first = detect([spec], [Reading(listing, read)], {})  # type: ignore[list-item]
        events.update(event.type for event in first.events)
        previous = {(m.subscription, m.listing_id): m for m in first.matches}
        changes: dict[str, Any] = {"status": "under_offer", "for_sale": not listing.for_sale}
        if listing.rent is not None and listing.rent.amount:
            changes["rent"] = listing.rent.model_copy(update={"amount": listing.rent.amount / 2})
        changed = listing.model_copy(update=changes)
        found = detect([spec], [Reading(changed, read)], previous)  # type: ignore[list-item]
        events.update(event.type for event in found.events)
        Facts.of(Reading(listing, read), b"digest")  # type: ignore[arg-type]
    assert {EventType.NEW, EventType.STATUS_CHANGE, EventType.PRICE_DROP} <= events
    assert read <= set(_LEAN_FIELDS) | DERIVED, read - set(_LEAN_FIELDS) - DERIVED
