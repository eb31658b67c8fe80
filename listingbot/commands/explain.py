"""Which of a subscription's filters a listing passes, one verdict per filter (pure).

Local filters are judged by the matcher itself (``matching.local_match`` over filters
holding just that one), so an explanation can never disagree with what is posted. The
filters a source applies upstream are judged by the source (``Source.chat.judge``) from
the listing's own fields where they show it; a filter only the source can judge (a
territory, open houses) says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from listingbot import sources
from listingbot.commands.grammar import NO_FILTERS, describe_filters
from listingbot.config import LocalFilters, Subscription
from listingbot.matching import local_match
from listingbot.models import Listing

__all__ = ["Verdict", "explain"]


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
    judge = sources.get(sub.source).chat.judge
    for name in data:
        if name in done:
            continue
        stem = name.removesuffix("_min").removesuffix("_max")
        group = [n for n in (f"{stem}_min", f"{stem}_max") if n in data] if stem != name else [name]
        done.update(group)
        # Just this filter (unvalidated: alone it may not be a valid search).
        only = type(filters).model_construct(**{n: data[n] for n in group})
        text = describe_filters(sub.source, only)
        label = ",".join(group) if text == NO_FILTERS else text
        if name in local_fields and name not in sent:
            single = LocalFilters(**{n: getattr(filters, n) for n in group})
            out.append(Verdict(label, local_match(single, listing), _shown(listing, stem)))
        else:
            out.append(Verdict(label, judge(filters, stem, listing), _shown(listing, stem)))
    return out


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
