"""The vocabulary of the two APIs' record shapes, for the market simulator.

What a Kotohomes home and a Kato availability look like piece by piece: the status and type
tables with their weights, the money and rent shapes, rounding the way agents quote, the
place and description generators. ``market.py`` keeps what changes over time (the seeded
market, its clock and its events) and draws from these. Every generator takes the
market's RNG, so moving them here leaves each seed's stream exactly as it was.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from listingbot.models import Source
from listingbot.sim._http import JsonDict
from listingbot.sim._places import UK_TOWNS, US_CITIES, UkTown, UsCity

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ONE_MS = timedelta(milliseconds=1)
ONE_US = timedelta(microseconds=1)
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward part of UK postcodes

KOTOHOMES_STATUSES = ("active", "pending")
KATO_STATUSES = ("available", "under_offer", "coming_soon", "let", "sold")
# Weighted mostly towards the everyday types, as a real feed is.
KOTOHOMES_TYPES: tuple[tuple[str, int], ...] = (
    ("single_family", 30),
    ("condominium", 20),
    ("townhouse", 15),
    ("house", 14),
    ("apartment", 5),
    ("multifamily", 4),
    ("duplex", 3),
    ("residential", 3),
    ("new_construction", 2),
    ("waterfront", 1),
    ("mobile_manufactured", 1),
    ("vacation_home", 1),
)
STACKED_TYPES = frozenset({"condominium", "apartment"})  # have unit numbers, no lot
KATO_TYPES: tuple[tuple[str, int], ...] = (
    ("office", 40),
    ("retail", 18),
    ("industrial", 14),
    ("warehouse", 8),
    ("leisure", 5),
    ("restaurant", 5),
    ("flexible_workspace", 4),
    ("medical", 3),
    ("land", 3),
)
KATO_QUALIFIERS = (None, None, "guide_price", "offers_over", "offers_in_excess_of")
KATO_RENT_BASE = {  # GBP per sq ft per year, before the town factor
    "office": 28.0,
    "retail": 32.0,
    "industrial": 9.0,
    "warehouse": 8.0,
    "leisure": 18.0,
    "restaurant": 26.0,
    "flexible_workspace": 40.0,
    "medical": 22.0,
    "land": 4.0,
}


def as_source(source: str) -> Source:
    if source == "kotohomes":
        return "kotohomes"
    if source == "kato":
        return "kato"
    raise ValueError(f"unknown source {source!r}")


def status_of(record: JsonDict) -> Any:
    return record.get("status")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def js_number(value: float) -> float | int:
    """Whole numbers as ints, the way a JavaScript backend serializes them (``"lot_size": 2``)."""
    return int(value) if float(value).is_integer() else value


def truncate(moment: datetime, unit: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // unit) * unit


def weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([name for name, _ in table], weights=[w for _, w in table])[0]


def round_us_price(value: float, *, rent: bool) -> int:
    if rent:
        return max(25, int(round(value / 25) * 25))
    step = 5000 if value >= 1_000_000 else 1000
    return max(step, int(round(value / step) * step))


def round_gbp_price(value: float) -> int:
    step = 25_000 if value >= 1_000_000 else 5_000
    return max(step, int(round(value / step) * step))


OTHER_METRIC_SHARE = 0.12  # Kato records whose rent is quoted per annum or per desk


def other_rent_metric(record: JsonDict) -> None:
    """Quote a share of rents the other ways agents do: a whole-unit yearly rent, or per
    desk for flexible workspace. Chosen by a hash of the id, so the market's random stream
    (and every other record) stays as it was."""
    rent, size = record.get("rent"), record.get("size")
    if not isinstance(rent, dict) or not is_number(rent.get("from")):
        return
    digest = hashlib.sha256(f"metric:{record.get('id')}".encode()).digest()
    if int.from_bytes(digest[:8], "big") / 2**64 >= OTHER_METRIC_SHARE:
        return
    types = [t.get("key") for t in record.get("property_types") or [] if isinstance(t, dict)]
    if "flexible_workspace" in types:
        rent.update({"from": 250 + digest[8] % 40 * 10, "to": None, "metric": "per_desk"})
    elif isinstance(size, dict) and size.get("metric") == "sqft" and is_number(size.get("from")):
        yearly = round(rent["from"] * size["from"], -2)
        rent.update({"from": yearly, "to": None, "metric": "per_annum"})


def kato_rent(low: float | None, high: float | None, *, on_application: bool = False) -> JsonDict:
    return {
        "from": low,
        "to": high,
        "metric": "sqft",
        "currency": "GBP",
        "rent_on_application": on_application,
    }


def kato_price(
    value: float | None, *, qualifier: str | None = None, on_application: bool = False
) -> JsonDict:
    return {
        "value": value,
        "currency": "GBP",
        "price_on_application": on_application,
        "qualifier": qualifier,
    }


def pick_city(rng: random.Random, overrides: Mapping[str, Any]) -> UsCity:
    """A city consistent with the overrides (same state/city name) when possible."""
    candidates = list(US_CITIES)
    if isinstance(overrides.get("state"), str):
        state = overrides["state"].upper()
        candidates = [c for c in candidates if c.state == state] or candidates
    if isinstance(overrides.get("city"), str):
        named = [c for c in candidates if c.name.lower() == overrides["city"].lower()]
        candidates = named or candidates
    return rng.choice(candidates)


def pick_town(rng: random.Random, overrides: Mapping[str, Any]) -> UkTown:
    address = overrides.get("address")
    if isinstance(address, dict) and isinstance(address.get("town"), str):
        named = [t for t in UK_TOWNS if t.name.lower() == address["town"].lower()]
        if named:
            return named[0]
    return rng.choice(UK_TOWNS)


_US_OPENERS = (
    "Sun-filled",
    "Beautifully renovated",
    "Charming",
    "Spacious",
    "Modern",
    "Classic",
    "Move-in ready",
    "Light-drenched",
    "Quiet",
    "Stylish",
)
_US_FEATURES = (
    "Chef's kitchen with quartz counters and stainless appliances",
    "Hardwood floors throughout",
    "Private backyard with mature trees",
    "Primary suite with walk-in closet",
    "In-unit washer and dryer",
    "Central air and new HVAC",
    "Finished basement with plenty of storage",
    "Roof deck with skyline views",
    "Two-car garage",
    "Walking distance to shops, parks and transit",
    "Top-rated school district",
    "Open floor plan ideal for entertaining",
)
_UK_ADJECTIVES = ("Refurbished", "Grade A", "Self-contained", "Prominent", "Modern", "Character")


def us_description(rng: random.Random, property_type: str, bedrooms: int, city: UsCity) -> str:
    label = property_type.replace("_", " ")
    features = rng.sample(_US_FEATURES, 3)
    return (
        f"{rng.choice(_US_OPENERS)} {bedrooms}-bedroom {label} in {city.name}. "
        f"{features[0]}. {features[1]}. {features[2]}. Schedule a showing today."
    )


def uk_summary(rng: random.Random, kind: str, town: UkTown, size: int, metric: str) -> str:
    unit = "sq ft" if metric == "sqft" else "sq m"
    label = kind.replace("_", " ")
    return (
        f"{rng.choice(_UK_ADJECTIVES)} {label} accommodation of {size:,} {unit} "
        f"in {town.name}, available on flexible terms."
    )


def uk_key_points(rng: random.Random, kind: str) -> list[str]:
    points = [
        "Air conditioning",
        "Raised access floors",
        "24-hour access",
        "Secure cycle storage",
        "Passenger lift",
        "EPC rating B",
        "Allocated parking",
        "Shower facilities",
        "LED lighting",
    ]
    if kind in ("industrial", "warehouse"):
        points = ["Eaves height 8m", "Level access loading door", "Secure yard", "3-phase power"]
    return rng.sample(points, min(len(points), rng.randint(2, 4)))
