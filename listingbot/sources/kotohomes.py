"""Kotohomes (US homes): its settings, client, fetcher and normalizer.

Per query, a poll reads the newest listings by update (price and status changes) and the
listings created since the query's high-water mark (new ones); see
:class:`KotohomesFetcher`. Its records are read with the lenient field readers of
:mod:`listingbot.normalize`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from listingbot.clients.kotohomes import KotohomesClient
from listingbot.config.filters import KotohomesFilters
from listingbot.models import Listing, OpenHouse, Price, PriceUnit
from listingbot.normalize import (
    LATEST_YEAR,
    TITLE_MAX_CHARS,
    FieldProblem,
    FieldReader,
    MalformedRecord,
    build_listing,
    capitalized,
    read_record_id,
    short,
    summary,
    words,
)
from listingbot.records import Cursor
from listingbot.sources.base import ChatFilter, ChatWords, Fetched, Query, Read
from listingbot.text import cap, clean, slug

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from listingbot.clock import Clock
    from listingbot.config import Config, KotohomesConfig
    from listingbot.config.filters import Filters
    from listingbot.metrics import Metrics


EARTH_RADIUS_MILES = 3958.8


def _judge(filters: Filters, key: str, listing: Listing) -> bool | None:
    """Whether ``listing`` passes the upstream filter ``key`` (see ``ChatWords.judge``)."""
    assert isinstance(filters, KotohomesFilters)
    ranges = {
        "price": listing.asking_amount,
        "living_area": listing.size_sqft,
        "year_built": listing.year_built,
        "bedrooms": listing.bedrooms,
        "bathrooms": listing.bathrooms,
    }
    if key in ranges:
        value = ranges[key]
        low, high = getattr(filters, f"{key}_min"), getattr(filters, f"{key}_max")
        return (
            value is not None and (low is None or value >= low) and (high is None or value <= high)
        )
    if key == "zip_codes":
        code = (listing.postcode or "")[:5]
        return any(z[:5] == code for z in filters.zip_codes) if code else False
    if key == "states":
        return (listing.region or "").upper() in filters.states
    if key == "property_types":
        return bool(set(listing.property_types) & set(filters.property_types))
    if key == "mls_numbers":
        return listing.mls_number in filters.mls_numbers if listing.mls_number else None
    if key == "type":
        return listing.for_sale if filters.type == "for_sale" else listing.to_let
    if key in {"latitude", "longitude", "radius"}:
        return _within(filters, listing)
    return None  # territory, open houses: only Kotohomes knows


def _within(filters: KotohomesFilters, listing: Listing) -> bool | None:
    """Whether the listing lies within the search circle (haversine, miles)."""
    if filters.latitude is None or filters.longitude is None or filters.radius is None:
        return None
    if listing.latitude is None or listing.longitude is None:
        return None
    lat1, lon1 = math.radians(filters.latitude), math.radians(filters.longitude)
    lat2, lon2 = math.radians(listing.latitude), math.radians(listing.longitude)
    a = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_MILES * math.asin(math.sqrt(a)) <= filters.radius


# `/listings subscribe kotohomes …`: the chat's words for the filters (config/filters.py).
CHAT_WORDS = ChatWords(
    filters={
        "zip": ChatFilter("list", "zip_codes"),
        "state": ChatFilter("list", "states"),
        "mls": ChatFilter("list", "mls_numbers"),
        "property_type": ChatFilter("list", "property_types"),
        "price": ChatFilter("range", "price", money=True),
        "beds": ChatFilter("range", "bedrooms", number=True),
        "baths": ChatFilter("range", "bathrooms", number=True),
        "area": ChatFilter("range", "living_area", money=True),
        "year": ChatFilter("range", "year_built", number=True),
        "lat": ChatFilter("scalar", "latitude", number=True),
        "lon": ChatFilter("scalar", "longitude", number=True),
        "radius": ChatFilter("scalar", "radius", number=True),
        "territory": ChatFilter("scalar", "territory"),
        "type": ChatFilter("scalar", "type"),
        "open_houses_only": ChatFilter("bool", "open_houses_only"),
        "keywords": ChatFilter("list", "keywords_any"),
        "exclude": ChatFilter("list", "keywords_none"),
    },
    synonyms={
        "zips": "zip",
        "zip_code": "zip",
        "states": "state",
        "mls_number": "mls",
        "property_types": "property_type",
        "bedrooms": "beds",
        "bathrooms": "baths",
        "living_area": "area",
        "sqft": "area",
        "year_built": "year",
        "latitude": "lat",
        "longitude": "lon",
        "lng": "lon",
        "keyword": "keywords",
        "keywords_any": "keywords",
        "keywords_none": "exclude",
    },
    example="kotohomes zip=10001,10002 price<=900k beds>=3 type=for_sale",
    judge=_judge,
)


class Kotohomes:
    """The Kotohomes Listing API as a source (``sources.kotohomes``)."""

    name: Literal["kotohomes"] = "kotohomes"
    country = "US"
    chat = CHAT_WORDS

    def settings(self, config: Config) -> KotohomesConfig | None:
        return config.sources.kotohomes

    def secrets(self, config: Config) -> tuple[SecretStr, ...]:
        k = config.sources.kotohomes
        return () if k is None else (k.key,)

    def fetcher(
        self, config: Config, *, session: aiohttp.ClientSession, clock: Clock, metrics: Metrics
    ) -> KotohomesFetcher:
        k = config.sources.kotohomes
        assert k is not None, "kotohomes is not configured"
        return KotohomesFetcher(_client(k, session, clock, metrics), limit=k.limit)

    async def check_credentials(
        self, config: Config, *, session: aiohttp.ClientSession, clock: Clock
    ) -> str:
        k = config.sources.kotohomes
        assert k is not None, "kotohomes is not configured"
        await _client(k, session, clock, None).check_credentials()
        return "API key accepted"

    def refused_credentials(self, error: str) -> str | None:
        # A key cannot be refreshed: polling again with it would be refused the same way.
        return (
            "Kotohomes refused the API key: polling of kotohomes is stopped until the "
            f"configuration changes (fix sources.kotohomes.key and reload). {error}"
        )


def _client(
    k: KotohomesConfig, session: aiohttp.ClientSession, clock: Clock, metrics: Metrics | None
) -> KotohomesClient:
    return KotohomesClient(
        base_url=k.api_url,
        key=k.key,
        session=session,
        clock=clock,
        array_style=k.array_style,
        created_sort=k.created_sort,
        timeout_s=k.timeout_s,
        min_request_interval_s=k.min_request_interval_s,
        observer=metrics,
    )


class KotohomesFetcher:
    """Per query: the newest by update (price and status changes), then the listings
    created since the high-water mark (new ones), read the way the server orders them
    (``KotohomesClient.new_listings``). Kotohomes has no paging, so where a full page may
    hide changes it is reported as a possible gap instead of being passed over in silence.

    On a query's first poll there is no mark yet. An ascending server is walked from its
    oldest listing, so the first run sees the whole query when it fits in the walk; when
    it does not, the newest creation among the recent updates becomes the mark (the
    listings in between existed before the first run: nothing new is skipped). A
    descending server's first page is its newest. Either way the oldest page is never
    taken for the newest.
    """

    def __init__(self, client: KotohomesClient, *, limit: int) -> None:
        self.client = client
        self.limit = limit

    def normalize(self, raw: Mapping[str, Any], problems: list[FieldProblem] | None) -> Listing:
        return normalize_kotohomes(raw, problems=problems)

    async def fetch(self, query: Query, cursor: Cursor | None, read: Read) -> Fetched:
        created_hw = _parse(cursor.created_hw) if cursor else None
        updated_hw = _parse(cursor.updated_hw) if cursor else None
        updates = await self.client.recent_updates(query.params, limit=self.limit)
        read_updated = await read(updates.records)
        new_updated, bad_updated = read_updated.observed, read_updated.bad
        created = await self.client.new_listings(query.params, since=created_hw, limit=self.limit)
        read_created = await read(created.records)
        new_created, bad_created = read_created.observed, read_created.bad
        listings = {o.facts.id: o for o in [*new_created, *new_updated]}
        skipped = len(bad_created | bad_updated)
        gap = created.gap or updates.gap
        if updated_hw is not None and len(updates.records) >= self.limit:
            marks = [o.facts.updated_at for o in new_updated if o.facts.updated_at]
            gap = gap or (bool(marks) and min(marks) > updated_hw)
        # A walk cut short has not reached the newest creations: the mark moves only as
        # far as it read, and the next poll carries on from there - except on a first
        # poll, where what lies beyond is older than the first run and the recent
        # updates show where today's creations are.
        reached = listings.values() if created.complete or created_hw is None else new_created
        created_marks = [o.facts.created_at for o in reached if o.facts.created_at]
        updated_marks = [o.facts.updated_at for o in listings.values() if o.facts.updated_at]
        new_cursor = Cursor(
            query.key,
            query.source,
            _max_iso(created_hw, created_marks),
            _max_iso(updated_hw, updated_marks),
        )
        return Fetched(
            list(listings.values()),
            new_cursor,
            skipped,
            gap,
            requests=updates.requests + created.requests,
        )

    async def exists(self, listing_id: str) -> bool:
        """Whether Kotohomes still knows the listing (its single-listing endpoint)."""
        return await self.client.get(listing_id) is not None


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _max_iso(current: datetime | None, marks: Sequence[datetime]) -> str | None:
    best = max([*marks, *([current] if current else [])], default=None)
    return None if best is None else best.isoformat()


# --- normalizing ---------------------------------------------------------------------------


def normalize_kotohomes(
    raw: Mapping[str, Any], *, problems: list[FieldProblem] | None = None
) -> Listing:
    """One Kotohomes search record as a Listing; fields that cannot be read are dropped
    and appended to ``problems``. Raises MalformedRecord without a usable id."""
    if not isinstance(raw, Mapping):
        raise MalformedRecord(None, "record is not an object")
    record_id = read_record_id(raw)
    r = FieldReader(record_id, problems)

    created_at = r.when(raw.get("created_at"), "created_at")
    updated_at = r.when(raw.get("updated_at"), "updated_at")

    kind = r.read_or(None, _kotohomes_type, raw.get("type"))
    to_let = kind is not None and slug(kind) == "for_rent"
    amount, _ = r.amount(raw.get("price"), "price")
    amount = amount or None  # a price of 0 means "not given", never "free"
    price = rent = None
    if amount is not None:
        if to_let:
            rent = Price(amount=amount, currency="USD", unit=PriceUnit.PER_MONTH)
        else:
            price = Price(amount=amount, currency="USD", unit=PriceUnit.TOTAL)

    street = r.text(raw.get("street_address"), "street_address")
    unit = r.code(raw.get("unit_number"), "unit_number")
    city = r.text(raw.get("city"), "city")
    state = r.text(raw.get("state"), "state")
    state = state.upper() if state else None
    postcode = r.code(raw.get("zip_code"), "zip_code", digits=5)

    bedrooms = r.number(raw.get("bedrooms"), "bedrooms", minimum=0, maximum=1000)
    bathrooms = r.number(raw.get("bathrooms"), "bathrooms", minimum=0, maximum=1000)
    living_area = r.number(raw.get("living_area"), "living_area", minimum=0, maximum=1e8)
    lot_size = r.number(raw.get("lot_size"), "lot_size", minimum=0, maximum=1e7)
    year_built = r.read_or(None, _year_built, raw.get("year_built"))
    property_type_text = r.text(raw.get("property_type"), "property_type")
    property_type = slug(property_type_text) if property_type_text else None
    status_text = r.text(raw.get("status"), "status")

    street_line = street
    if street and unit:
        street_line = (
            f"{street} {unit}"
            if unit.startswith("#") or unit[0].isalpha()
            else (f"{street} #{unit}")
        )
    region_line = " ".join(part for part in (state, postcode) if part)
    address = ", ".join(part for part in (street_line, city, region_line) if part) or None

    return build_listing(
        record_id,
        {
            "source": "kotohomes",
            "id": record_id,
            "url": r.url(raw.get("url"), "url"),
            "title": _kotohomes_title(
                record_id,
                bedrooms=bedrooms,
                property_type=property_type,
                to_let=to_let,
                city=city,
                state=state,
                street=street,
            ),
            "summary": summary(r.text(raw.get("description"), "description", multiline=True)),
            "address": address,
            "city": city,
            "region": state,
            "postcode": postcode,
            "country": Kotohomes.country,
            "latitude": r.number(raw.get("latitude"), "latitude", minimum=-90, maximum=90),
            "longitude": r.number(raw.get("longitude"), "longitude", minimum=-180, maximum=180),
            "for_sale": not to_let,
            "to_let": to_let,
            "price": price,
            "rent": rent,
            "size_sqft": living_area or None,
            "lot_size_acres": lot_size or None,
            "bedrooms": bedrooms,
            "bathrooms": bathrooms,
            # 0 is the usual "unknown" placeholder for a build year.
            "year_built": year_built or None,
            "property_type": property_type or None,
            "property_types": (property_type,) if property_type else (),
            "status": slug(status_text) if status_text else None,
            "mls_number": r.code(raw.get("mls_number"), "mls_number"),
            "photo_url": r.url(raw.get("photo_url"), "photo_url")
            or _kotohomes_template_photo(r, raw.get("photo_template")),
            "agent": _kotohomes_agent(r, raw),
            "open_houses": _kotohomes_open_houses(r, raw.get("open_houses")),
            "created_at": created_at,
            "updated_at": updated_at,
        },
    )


def _kotohomes_type(r: FieldReader, value: Any) -> str | None:
    kind = r.text(value, "type")
    if kind is not None and slug(kind) not in ("for_sale", "for_rent"):
        r.fail("type", f"unknown listing type {short(kind)}")
    return kind


def _year_built(r: FieldReader, value: Any) -> int | None:
    year = r.integer(value, "year_built")
    if year is not None and year > LATEST_YEAR:
        r.fail("year_built", f"implausible year {year}")
    return year


def _kotohomes_title(
    record_id: str,
    *,
    bedrooms: float | None,
    property_type: str | None,
    to_let: bool,
    city: str | None,
    state: str | None,
    street: str | None,
) -> str:
    """``"3 bd single family in Brooklyn, NY"``."""
    head = words(property_type) if property_type else "home"
    if bedrooms:
        head = f"{bedrooms:g} bd {head}"
    if to_let:
        head += " for rent"
    place = ", ".join(part for part in (city, state) if part) or street
    title = f"{head} in {place}" if place else f"{head} {record_id}"
    return cap(capitalized(clean(title)), TITLE_MAX_CHARS)


def _kotohomes_agent(r: FieldReader, raw: Mapping[str, Any]) -> str | None:
    for field in ("agent", "broker"):
        person = r.mapping(raw.get(field), field)
        if person is None:
            continue
        name = r.text(person.get("name"), f"{field}.name")
        phone = r.text(person.get("phone"), f"{field}.phone")
        if name:
            return f"{name}, {phone}" if phone else name
    return None


# The next few are all a message can use.
_OPEN_HOUSES_KEPT = 10


def _kotohomes_open_houses(r: FieldReader, value: Any) -> tuple[OpenHouse, ...]:
    """``open_houses [{start, end}]``, earliest first; one unreadable costs only itself."""
    out: list[OpenHouse] = []
    for index, item in enumerate(r.items(value, "open_houses")):
        block = r.mapping(item, f"open_houses[{index}]")
        if block is None:
            continue
        start = r.when(block.get("start"), f"open_houses[{index}].start")
        if start is None:
            continue
        end = r.guard(None, partial(_end, r, block, start, f"open_houses[{index}].end"))
        out.append(OpenHouse(start=start, end=end))
    return tuple(sorted(out, key=lambda house: house.start)[:_OPEN_HOUSES_KEPT])


def _end(r: FieldReader, block: Mapping[str, Any], start: datetime, name: str) -> datetime | None:
    end = r.when(block.get("end"), name)
    if end is not None and end < start:
        r.fail(name, "ends before it starts")
    return end


def _kotohomes_template_photo(r: FieldReader, template: Any) -> str | None:
    """The first large photo from ``photo_template`` (``{offset}``, ``{size}``), for a
    record without a ``photo_url``."""
    if type(template) is not str or "{offset}" not in template:
        return None
    filled = template.replace("{offset}", "0").replace("{size}", "large")
    return r.url(filled, "photo_template")
