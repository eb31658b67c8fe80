"""Local filters: the part of a subscription listingbot checks itself.

Pure functions over frozen models: no clock, no I/O. ``LocalFilters`` arrives already
normalized (case-folded keywords, upper-case postcode prefixes without spaces, type
slugs), so a check here is a handful of comparisons.
"""

from __future__ import annotations

from listingbot.config import LocalFilters
from listingbot.models import Listing, Price, PriceUnit

__all__ = ["SQFT_PER_SQM", "local_match", "rent_per_sqft"]

SQFT_PER_SQM = 10.7639


def local_match(filters: LocalFilters, listing: Listing) -> bool:
    """True when ``listing`` passes every local filter that is set."""
    if filters.to_let is not None and listing.to_let != filters.to_let:
        return False
    if filters.for_sale is not None and listing.for_sale != filters.for_sale:
        return False
    if filters.property_types and not _types_match(filters, listing):
        return False
    if filters.postcode_prefixes and not _postcode_match(filters, listing):
        return False
    if (filters.size_min is not None or filters.size_max is not None) and not _size_match(
        filters, listing
    ):
        return False
    if filters.rent_max is not None:
        rent = rent_per_sqft(listing)
        if rent is None or rent > filters.rent_max:
            return False
    # Keywords last: building the text is the most expensive check.
    if filters.keywords_any or filters.keywords_none:
        text = _searchable_text(listing)
        if filters.keywords_any and not any(k in text for k in filters.keywords_any):
            return False
        if any(k in text for k in filters.keywords_none):
            return False
    return True


def rent_per_sqft(listing: Listing) -> float | None:
    """The listing's (lower-bound) rent per square foot per year, when it can be known.

    Rent on application, a missing figure, or a whole-unit rent without a known size
    gives None: a listing whose rent is unknown cannot be shown to be cheap enough.
    """
    rent: Price | None = listing.rent
    if rent is None or rent.on_application or rent.amount is None:
        return None
    if rent.unit is PriceUnit.PER_SQFT:
        return rent.amount
    if rent.unit is PriceUnit.PER_SQM:
        return rent.amount / SQFT_PER_SQM
    yearly = {PriceUnit.PER_YEAR: rent.amount, PriceUnit.PER_MONTH: rent.amount * 12}.get(rent.unit)
    # The largest size gives the lowest rate: the lower bound, like the amount itself.
    size = listing.size_max_sqft or listing.size_sqft
    if yearly is None or not size:
        return None
    return yearly / size


def _searchable_text(listing: Listing) -> str:
    parts = (listing.title, listing.summary or "", listing.address or "")
    return "\n".join(parts).casefold()


def _types_match(filters: LocalFilters, listing: Listing) -> bool:
    wanted = filters.property_type_set
    types = listing.property_types
    if listing.property_type is not None:
        types = (*types, listing.property_type)
    return any(_slug(t) in wanted for t in types)


def _slug(value: str) -> str:
    return value.strip().lower().replace("-", "_").replace(" ", "_")


def _postcode_match(filters: LocalFilters, listing: Listing) -> bool:
    if not listing.postcode:
        return False
    postcode = "".join(listing.postcode.split()).upper()
    return postcode.startswith(filters.postcode_prefixes)


def _size_match(filters: LocalFilters, listing: Listing) -> bool:
    low = listing.size_sqft if listing.size_sqft is not None else listing.size_max_sqft
    if low is None:
        return False
    high = listing.size_max_sqft if listing.size_max_sqft is not None else low
    if filters.size_min is not None and high < filters.size_min:
        return False
    return not (filters.size_max is not None and low > filters.size_max)
