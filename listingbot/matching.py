"""Local filters: the part of a subscription listingbot checks itself.

Pure functions over frozen models: no clock, no I/O. ``LocalFilters`` arrives already
normalized (case-folded keywords, upper-case postcode prefixes without spaces, type
slugs), so a check here is a handful of comparisons.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from listingbot.config import LocalFilters
from listingbot.models import Listing, Price, PriceUnit
from listingbot.text import slug

__all__ = ["SQFT_PER_SQM", "MatchIndex", "local_match", "rent_per_sqft"]

T = TypeVar("T")

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
    return any(slug(t) in wanted for t in types)


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


class MatchIndex(Generic[T]):
    """Which of many subscriptions' local filters accept a listing, without asking each one.

    A poll may hold thousands of subscriptions that share one upstream query (every Kato
    subscription does): checking every listing against every subscription costs
    listings x subscriptions. The index keeps, per selective filter, the set of
    subscriptions that a listing's value lets through (as a bit set over the entries):
    postcode prefixes (every prefix of the listing's postcode is one dict lookup),
    property types, to let / for sale, and the size and rent bands (bisection over the
    sorted limits). Each of those reproduces its check in :func:`local_match` exactly,
    so a listing's matches are the intersection of the sets; only keywords are not
    indexed, and candidates with keyword filters are confirmed with :func:`local_match`.
    The answer is exactly ``[item for item, f in entries if local_match(f, listing)]``,
    in entry order, at the cost of a few set operations plus the matches themselves.
    """

    def __init__(self, entries: Iterable[tuple[T, LocalFilters]]) -> None:
        self._items: list[T] = []
        self._filters: list[LocalFilters] = []
        self._keywords = 0  # entries with keyword filters: confirmed one by one
        to_let: dict[bool | None, int] = {None: 0, True: 0, False: 0}
        for_sale: dict[bool | None, int] = {None: 0, True: 0, False: 0}
        self._types_any = 0
        self._types: dict[str, int] = {}
        self._postcodes_any = 0
        self._postcodes: dict[str, int] = {}
        self._size_any = 0
        size_mins: list[tuple[float, int]] = []
        size_maxes: list[tuple[float, int]] = []
        self._rent_any = 0
        rent_maxes: list[tuple[float, int]] = []
        for position, (item, filters) in enumerate(entries):
            bit = 1 << position
            self._items.append(item)
            self._filters.append(filters)
            if filters.keywords_any or filters.keywords_none:
                self._keywords |= bit
            to_let[filters.to_let] |= bit
            for_sale[filters.for_sale] |= bit
            if filters.property_types:
                for slug in filters.property_type_set:
                    self._types[slug] = self._types.get(slug, 0) | bit
            else:
                self._types_any |= bit
            if filters.postcode_prefixes:
                for prefix in filters.postcode_prefixes:
                    self._postcodes[prefix] = self._postcodes.get(prefix, 0) | bit
            else:
                self._postcodes_any |= bit
            if filters.size_min is None and filters.size_max is None:
                self._size_any |= bit
            else:
                low = filters.size_min if filters.size_min is not None else -math.inf
                high = filters.size_max if filters.size_max is not None else math.inf
                size_mins.append((low, bit))
                size_maxes.append((high, bit))
            if filters.rent_max is None:
                self._rent_any |= bit
            else:
                rent_maxes.append((filters.rent_max, bit))
        self._all = (1 << len(self._items)) - 1
        # A listing's to_let / for_sale value picks one precomputed set.
        self._to_let = {value: to_let[None] | to_let[value] for value in (True, False)}
        self._for_sale = {value: for_sale[None] | for_sale[value] for value in (True, False)}
        self._size_sized = self._all & ~self._size_any
        self._size_min = _Bands(size_mins)
        self._size_max = _Bands(size_maxes)
        self._rent = _Bands(rent_maxes)

    def __len__(self) -> int:
        return len(self._items)

    def matches(self, listing: Listing, whole: Callable[[], Listing] | None = None) -> list[T]:
        """The entries whose local filters accept ``listing``, in entry order.

        ``whole``, when given, returns the whole listing, and ``listing`` may be a lean one
        (only the indexed fields read: ``Observation.matchable``): keyword filters are
        then confirmed on ``whole()``, asked for only when a keyword entry is a candidate.
        """
        mask = self._candidates(listing)
        if not mask:
            return []
        keywords = mask & self._keywords
        items, filters = self._items, self._filters
        out: list[T] = []
        while mask:
            low = mask & -mask
            position = low.bit_length() - 1
            mask ^= low
            if not (low & keywords):
                out.append(items[position])
            else:
                if whole is not None:
                    listing, whole = whole(), None
                if local_match(filters[position], listing):
                    out.append(items[position])
        return out

    def _candidates(self, listing: Listing) -> int:
        mask = self._postcodes_any
        if self._postcodes and listing.postcode:
            postcode = "".join(listing.postcode.split()).upper()
            found = self._postcodes
            for end in range(1, len(postcode) + 1):
                mask |= found.get(postcode[:end], 0)
        mask &= self._to_let[listing.to_let] & self._for_sale[listing.for_sale]
        if not mask:
            return 0
        if self._types:
            types = self._types_any
            for value in _listing_types(listing):
                types |= self._types.get(value, 0)
            mask &= types
            if not mask:
                return 0
        if self._size_sized:
            mask &= self._size_any | self._size_mask(listing)
            if not mask:
                return 0
        if self._rent.limits:
            rent = rent_per_sqft(listing)
            if rent is None:
                mask &= self._rent_any
            elif math.isnan(rent):
                pass  # no comparison with NaN fails: local_match lets it through
            else:
                mask &= self._rent_any | self._rent.at_least(rent)
        return mask

    def _size_mask(self, listing: Listing) -> int:
        """Entries with a size filter that ``listing``'s size passes (see ``_size_match``)."""
        low = listing.size_sqft if listing.size_sqft is not None else listing.size_max_sqft
        if low is None:
            return 0
        high = listing.size_max_sqft if listing.size_max_sqft is not None else low
        if math.isnan(low) or math.isnan(high):
            return self._size_sized
        return self._size_min.at_most(high) & self._size_max.at_least(low)


class _Bands:
    """Entries keyed by one numeric limit: those whose limit is <= x, or >= x, as a bit set."""

    def __init__(self, limits: list[tuple[float, int]]) -> None:
        limits.sort(key=lambda pair: pair[0])
        self.limits: list[float] = []
        self._upto: list[int] = []  # entries whose limit <= limits[i]
        self._from: list[int] = []  # entries whose limit >= limits[i]
        acc = 0
        for value, bit in limits:
            acc |= bit
            if self.limits and self.limits[-1] == value:
                self._upto[-1] = acc
            else:
                self.limits.append(value)
                self._upto.append(acc)
        acc = 0
        for value, bit in reversed(limits):
            acc |= bit
            index = bisect.bisect_left(self.limits, value)
            if len(self._from) < len(self.limits) - index:
                self._from.append(acc)
            else:
                self._from[-1] = acc
        self._from.reverse()

    def at_most(self, x: float) -> int:
        """Entries whose limit is <= ``x``."""
        index = bisect.bisect_right(self.limits, x)
        return self._upto[index - 1] if index else 0

    def at_least(self, x: float) -> int:
        """Entries whose limit is >= ``x``."""
        index = bisect.bisect_left(self.limits, x)
        return self._from[index] if index < len(self._from) else 0


def _listing_types(listing: Listing) -> set[str]:
    types = {slug(t) for t in listing.property_types}
    if listing.property_type is not None:
        types.add(slug(listing.property_type))
    return types
