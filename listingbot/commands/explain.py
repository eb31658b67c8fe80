"""Which of a subscription's filters a listing passes, one verdict per filter (pure).

Local filters are judged by the matcher itself (``matching.local_match`` over filters
holding just that one), so an explanation can never disagree with what is posted. The
filters a source applies upstream are judged from the listing's own fields where they
show it; a filter only the source can judge (a territory, open houses) says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from listingbot.commands.grammar import describe_filters
from listingbot.config import KatoFilters, KotohomesFilters, LocalFilters, Subscription
from listingbot.matching import local_match
from listingbot.models import Listing

__all__ = ["Verdict", "explain"]

EARTH_RADIUS_MILES = 3958.8


@dataclass(frozen=True)
class Verdict:
    """One filter as the chat writes it, whether the listing passes (None: only the
    source can tell), and what the listing shows for it."""

    filter: str
    passed: bool | None
    shown: str

    def text(self) -> str:
        mark = {True: "pass", False: "FAIL", None: "decided by the source"}[self.passed]
        return f"{self.filter} {mark} ({self.shown})"


def explain(sub: Subscription, listing: Listing) -> list[Verdict]:
    """A verdict for each filter ``sub`` sets, in the order the chat describes them."""
    filters = sub.filters
    out: list[Verdict] = []
    data = filters.model_dump(exclude_defaults=True)
    local_fields = set(LocalFilters.model_fields)
    sent = {name for name, _ in sub.upstream_params()}
    done: set[str] = set()
    for name in data:
        if name in done:
            continue
        stem = name.removesuffix("_min").removesuffix("_max")
        group = [n for n in (f"{stem}_min", f"{stem}_max") if n in data] if stem != name else [name]
        done.update(group)
        only = type(filters).model_validate({**_place(filters), **{n: data[n] for n in group}})
        label = _label(sub.source, only, group)
        if name in local_fields and name not in sent:
            single = LocalFilters(**{n: getattr(filters, n) for n in group})
            out.append(Verdict(label, local_match(single, listing), _shown(listing, stem)))
        else:
            out.append(Verdict(label, _upstream(filters, group, listing), _shown(listing, stem)))
    return out


def _place(filters: KotohomesFilters | KatoFilters) -> dict[str, Any]:
    """A geographic constraint, so that one Kotohomes filter alone still validates."""
    return {"territory": "x"} if isinstance(filters, KotohomesFilters) else {}


def _label(source: str, only: KotohomesFilters | KatoFilters, group: list[str]) -> str:
    text = describe_filters(source, only)
    parts = [p for p in text.split(" ") if not p.startswith("territory=")]
    return " ".join(parts) or ",".join(group)


def _between(value: float | None, low: float | None, high: float | None) -> bool:
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _upstream(
    filters: KotohomesFilters | KatoFilters, group: list[str], listing: Listing
) -> bool | None:
    name = group[0]
    stem = name.removesuffix("_min").removesuffix("_max")
    if isinstance(filters, KatoFilters):
        if name == "status":
            return listing.status in filters.status
        return None  # published_to_website / api_controlled: the listing does not say
    if stem in {"price", "living_area", "year_built", "bedrooms", "bathrooms"}:
        value = {
            "price": listing.asking_amount,
            "living_area": listing.size_sqft,
            "year_built": listing.year_built,
            "bedrooms": listing.bedrooms,
            "bathrooms": listing.bathrooms,
        }[stem]
        return _between(value, getattr(filters, f"{stem}_min"), getattr(filters, f"{stem}_max"))
    if name == "zip_codes":
        code = (listing.postcode or "")[:5]
        return any(z[:5] == code for z in filters.zip_codes) if code else False
    if name == "states":
        return (listing.region or "").upper() in filters.states
    if name == "property_types":
        return bool(set(listing.property_types) & set(filters.property_types))
    if name == "mls_numbers":
        return listing.mls_number in filters.mls_numbers if listing.mls_number else None
    if name == "type":
        return listing.for_sale if filters.type == "for_sale" else listing.to_let
    if name in {"latitude", "longitude", "radius"}:
        return _within(filters, listing)
    return None  # territory, open houses: only Kotohomes knows


def _within(filters: KotohomesFilters, listing: Listing) -> bool | None:
    if None in (filters.latitude, filters.longitude, filters.radius):
        return None
    if listing.latitude is None or listing.longitude is None:
        return None
    assert filters.latitude is not None
    assert filters.longitude is not None
    assert filters.radius is not None
    lat1, lon1 = math.radians(filters.latitude), math.radians(filters.longitude)
    lat2, lon2 = math.radians(listing.latitude), math.radians(listing.longitude)
    a = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_MILES * math.asin(math.sqrt(a)) <= filters.radius


def _shown(listing: Listing, stem: str) -> str:
    value: Any = {
        "zip_codes": listing.postcode,
        "postcode_prefixes": listing.postcode,
        "states": listing.region,
        "price": listing.asking_amount,
        "rent_max": listing.rent.amount if listing.rent else None,
        "living_area": listing.size_sqft,
        "size": listing.size_sqft,
        "year_built": listing.year_built,
        "bedrooms": listing.bedrooms,
        "bathrooms": listing.bathrooms,
        "property_types": ",".join(listing.property_types) or None,
        "status": listing.status,
        "type": "for sale" if listing.for_sale else "to let" if listing.to_let else None,
        "to_let": listing.to_let,
        "for_sale": listing.for_sale,
        "mls_numbers": listing.mls_number,
    }.get(stem)
    if stem in {"latitude", "longitude", "radius"} and listing.latitude is not None:
        value = f"{listing.latitude:.4f},{listing.longitude:.4f}"
    if stem in {"keywords_any", "keywords_none"}:
        return "title and description"
    if value is None:
        return "listing: not given"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"listing: {value}"
