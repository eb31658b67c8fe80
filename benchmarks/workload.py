"""Realistic subscription sets and configs for the benchmarks (and the tripwire test).

People subscribe the way the market is shaped: most Kotohomes searches name one of a few
popular states or a couple of ZIP codes in a big city, with round price bands and a
bedroom minimum, so thousands of subscriptions collapse into far fewer distinct upstream
queries. Kato has no server-side search worth the name: every Kato subscription sends the
same (empty) upstream query and differs only in its local filters - postcode districts,
property types, to let / for sale, size band, rent ceiling, keywords.

Everything is drawn from one seeded RNG, so a seed names a workload.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from listingbot.config import Config, Subscription
from listingbot.sim._places import UK_TOWNS, US_CITIES, us_zip_codes
from listingbot.sim._shapes import KATO_TYPES

ENV = {
    "CHATKITTY_CLIENT_ID": "test-ck-id",
    "CHATKITTY_CLIENT_SECRET": "test-ck-secret",
    "KOTOHOMES_API_KEY": "test-kotohomes-key",
    "KATO_CLIENT_ID": "test-kato-id",
    "KATO_CLIENT_SECRET": "test-kato-secret",
}
FIRST_CHANNEL = 9001

# Popularity falls off quickly (a Zipf-like shape): the first choices dominate.
_STATES = ("NY", "CA", "TX", "FL", "NJ", "WA", "IL", "MA")
_SALE_BANDS = (
    (None, 500_000),
    (None, 750_000),
    (None, 1_000_000),
    (300_000, 600_000),
    (500_000, 1_000_000),
    (None, 400_000),
    (1_000_000, 2_000_000),
    (None, 2_000_000),
)
_RENT_MAX = (3000, 2500, 4000, 2000, 5000)
_BEDROOMS = (None, 2, 3, 1, 4)
_US_TYPES = ("single_family", "condominium", "townhouse", "apartment")
_US_KEYWORDS = ("garage", "backyard", "renovated", "hardwood", "roof deck", "washer")
_UK_KEYWORDS = ("air conditioning", "parking", "lift", "refurbished", "24-hour", "loading")
_SIZE_BANDS = ((None, 1000), (500, 2000), (1000, 3000), (2000, 5000), (5000, None), (None, 2500))


def _zipf(rng: random.Random, items: Sequence[Any], s: float = 1.1) -> Any:
    weights = [1.0 / (rank + 1) ** s for rank in range(len(items))]
    return rng.choices(items, weights=weights)[0]


def kotohomes_filters(rng: random.Random) -> dict[str, Any]:
    """One Kotohomes search: a state (or a ZIP code), sale or rent, a standard price band,
    maybe a bedroom minimum; now and then a property type or a keyword (local)."""
    rent = rng.random() < 0.15
    state = _zipf(rng, _STATES)
    filters: dict[str, Any] = {"type": "for_rent" if rent else "for_sale"}
    if rng.random() < 0.2:
        city = _zipf(rng, [c for c in US_CITIES if c.state == state])
        filters["zip_codes"] = [_zipf(rng, city.zips)]
    else:
        # Today's Kotohomes API refuses states alone: the state's ZIP codes constrain it.
        filters["states"] = [state]
        filters["zip_codes"] = list(us_zip_codes(state))
    if rent:
        filters["price_max"] = _zipf(rng, _RENT_MAX)
    else:
        low, high = _zipf(rng, _SALE_BANDS)
        if low is not None:
            filters["price_min"] = low
        filters["price_max"] = high
    bedrooms = _zipf(rng, _BEDROOMS)
    if bedrooms is not None:
        filters["bedrooms_min"] = bedrooms
    if rng.random() < 0.05:
        filters["property_types"] = [_zipf(rng, _US_TYPES)]
    # Keywords are local: they never change the upstream query.
    if rng.random() < 0.2:
        filters["keywords_any"] = [rng.choice(_US_KEYWORDS)]
    return filters


def kato_filters(rng: random.Random) -> dict[str, Any]:
    """One Kato search: only local filters, the upstream query is the same for everyone.

    Searches are local, as agents' requirements are: a postcode sector ("EC2M 4"), a
    district ("EC2M") or now and then a whole town; usually a property type, to let or for
    sale and a size band. On the simulator's market (12 towns, 37 districts) the median
    subscription matches a handful of listings, the broad ones a few hundred.
    """
    filters: dict[str, Any] = {}
    town = _zipf(rng, UK_TOWNS, s=0.8)
    reach = rng.random()
    if reach < 0.03:  # the whole town
        filters["postcode_prefixes"] = list(town.districts)
    else:
        districts = rng.sample(town.districts, min(len(town.districts), rng.choice((1, 1, 2))))
        sector = reach < 0.78
        filters["postcode_prefixes"] = sorted(
            f"{d} {rng.randint(1, 9)}" if sector else d for d in districts
        )
    if rng.random() < 0.8:
        types = [name for name, _weight in KATO_TYPES]
        weights = [weight for _name, weight in KATO_TYPES]
        filters["property_types"] = rng.choices(types, weights=weights)
    deal = rng.random()
    if deal < 0.7:
        filters["to_let"] = True
    elif deal < 0.85:
        filters["for_sale"] = True
    if rng.random() < 0.6:
        low, high = rng.choice(_SIZE_BANDS)
        if low is not None:
            filters["size_min"] = low
        if high is not None:
            filters["size_max"] = high
    if filters.get("to_let") and rng.random() < 0.3:
        filters["rent_max"] = rng.choice((20, 30, 40, 60))
    if rng.random() < 0.1:
        filters["keywords_any"] = [rng.choice(_UK_KEYWORDS)]
    if rng.random() < 0.05:
        filters["keywords_none"] = ["land"]
    return filters


def subscriptions(
    count: int,
    *,
    seed: int,
    kato_share: float = 0.3,
    channels: int = 20,
    sources: Sequence[str] = ("kotohomes", "kato"),
) -> list[dict[str, Any]]:
    """``count`` subscriptions as config mappings, spread over ``channels`` channels."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for index in range(count):
        if len(sources) == 1:
            source = sources[0]
        else:
            source = "kato" if rng.random() < kato_share else "kotohomes"
        filters = kato_filters(rng) if source == "kato" else kotohomes_filters(rng)
        sub: dict[str, Any] = {
            "name": f"sub-{index:05d}",
            "source": source,
            "channel": FIRST_CHANNEL + rng.randrange(channels),
            "filters": filters,
        }
        if rng.random() < 0.4:
            sub["notify"] = ["new", "price_drop"]
        out.append(sub)
    return out


def channel_ids(channels: int) -> list[int]:
    return [FIRST_CHANNEL + i for i in range(channels)]


def config_data(
    subs: list[dict[str, Any]],
    *,
    state_path: Path,
    kotohomes_url: str,
    kato_url: str,
    chatkitty_url: str,
    chatkitty_token_url: str,
    kato_rpm: int = 60,
    kato_page_size: int = 50,
    secrets: Mapping[str, str] = ENV,
) -> dict[str, Any]:
    """A whole config file as a mapping, secrets (the simulators' test ones) filled in."""
    sources = {s["source"] for s in subs}
    data: dict[str, Any] = {
        "state": {"path": str(state_path)},
        "chatkitty": {
            "api_url": chatkitty_url,
            "path_prefix": "/v1",
            "token_url": chatkitty_token_url,
            "client_id": secrets["CHATKITTY_CLIENT_ID"],
            "client_secret": secrets["CHATKITTY_CLIENT_SECRET"],
        },
        "sources": {},
        "subscriptions": subs,
        "ops": {"listen": None},
        "log": {"level": "warning", "format": "json"},
    }
    if "kotohomes" in sources:
        data["sources"]["kotohomes"] = {
            "api_url": kotohomes_url,
            "key": secrets["KOTOHOMES_API_KEY"],
        }
    if "kato" in sources:
        data["sources"]["kato"] = {
            "api_url": kato_url,
            "client_id": secrets["KATO_CLIENT_ID"],
            "client_secret": secrets["KATO_CLIENT_SECRET"],
            "requests_per_minute": kato_rpm,
            "page_size": kato_page_size,
        }
    return data


def parse(data: dict[str, Any]) -> Config:
    """Validate a config mapping with the same models a config file goes through.

    Not through ``parse_config``: its YAML walk stops at 100,000 nodes, and 10,000
    subscriptions are about 120,000 (reported as a defect of config.py).
    """
    return Config.model_validate(data)


def write_config(data: dict[str, Any], path: Path) -> Path:
    """The config as a file for the CLI (JSON is YAML); secrets as ``${VAR}`` from ``ENV``."""
    text = json.dumps(data, indent=1)
    for name, value in ENV.items():
        text = text.replace(json.dumps(value), json.dumps("${" + name + "}"))
    path.write_text(text)
    return path


def validated(subs: list[dict[str, Any]]) -> list[Subscription]:
    """Subscriptions as models, without a whole config around them."""
    return [Subscription.model_validate(s) for s in subs]


def naive_requests(subs: Sequence[Subscription], kato_pages: int) -> int:
    """What one-request-per-subscription polling would cost: every Kotohomes subscription
    its own two searches, every Kato subscription its own sweep."""
    return sum(2 if s.source == "kotohomes" else kato_pages for s in subs)


def distinct_queries(subs: Sequence[Subscription], source: str) -> int:
    return len({s.upstream_params() for s in subs if s.source == source})


def secret(name: str) -> SecretStr:
    """One of the simulators' test credentials, as the config would carry it."""
    return SecretStr(ENV[name])
