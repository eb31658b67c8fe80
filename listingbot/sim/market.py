"""A seeded market of listings that the Kotohomes and Kato simulators serve.

US homes (Kotohomes) and UK commercial availability (Kato) in the APIs' own JSON shapes,
evolving tick by tick on market time: new listings appear, prices move (mostly down),
statuses change, some listings disappear. Everything is drawn from one seeded RNG, so the
same seed and the same calls give the same data and the same ``history``.

Why the two sources' builders stay methods of one class: they share that one RNG and
the id counters, and the order of draws *is* the data. Every test and benchmark that
names a seed depends on it, so splitting the builders into per-source objects would
have to thread the same stream through them in the same order for no gain. What does
not change over time (the types and weights, money and rent shapes, rounding, places
and descriptions) lives in ``listingbot.sim._shapes``.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from listingbot.models import SOURCES, Source
from listingbot.sim._http import JsonDict, copy_record, iso_ms, iso_us, parse_iso
from listingbot.sim._places import (
    FIRST_NAMES,
    LAST_NAMES,
    UK_BUILDINGS,
    UK_OFFICES,
    UK_STREETS,
    US_BROKERS,
    US_STREETS,
    US_SUFFIXES,
    UkTown,
    UsCity,
)
from listingbot.sim._shapes import (
    BASE62,
    KATO_QUALIFIERS,
    KATO_RENT_BASE,
    KATO_STATUSES,
    KATO_TYPES,
    KOTOHOMES_TYPES,
    ONE_MS,
    ONE_US,
    POSTCODE_LETTERS,
    STACKED_TYPES,
    as_source,
    is_number,
    js_number,
    kato_price,
    kato_rent,
    other_rent_metric,
    pick_city,
    pick_town,
    round_gbp_price,
    round_us_price,
    status_of,
    truncate,
    uk_key_points,
    uk_summary,
    us_description,
    weighted,
)

EventKind = Literal["created", "price_changed", "status_changed", "removed"]

DEFAULT_START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # FakeClock's default start


@dataclass(frozen=True)
class MarketEvent:
    """Something that happened in the market; ``old``/``new`` are prices or statuses."""

    at: datetime
    source: Source
    listing_id: str
    kind: EventKind
    old: Any = None
    new: Any = None


class Market:
    """The listings behind both source simulators, and how they change.

    Rates are expected events per tick for each source (2.5 means two, sometimes three).
    ``hostile_rate`` is the share of records the simulators serve corrupted (see
    ``faults``); the market's own records stay clean.
    """

    def __init__(
        self,
        seed: int = 1,
        *,
        start: datetime | None = None,
        kotohomes_count: int = 300,
        kato_count: int = 120,
        tick_s: float = 60.0,
        new_rate: float = 0.5,
        price_change_rate: float = 0.6,
        status_change_rate: float = 0.25,
        removal_rate: float = 0.1,
        hostile_rate: float = 0.0,
    ) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self.seed = seed
        self.now: datetime = (start or DEFAULT_START).astimezone(UTC)
        self.tick_s = tick_s
        self.new_rate = new_rate
        self.price_change_rate = price_change_rate
        self.status_change_rate = status_change_rate
        self.removal_rate = removal_rate
        self.hostile_rate = hostile_rate
        self.history: list[MarketEvent] = []
        self._rng = random.Random(seed)
        self._kotohomes: dict[str, JsonDict] = {}
        self._kato: dict[str, JsonDict] = {}
        self._kato_text_money: set[str] = set()  # records whose money is served as "£45.00"
        self._kato_text_id: set[str] = set()  # records whose id is served as a string
        self._last_created: dict[Source, datetime] = {
            "kotohomes": datetime.min.replace(tzinfo=UTC),
            "kato": datetime.min.replace(tzinfo=UTC),
        }
        self._mls_serial = self._rng.randint(10_000, 60_000)
        self._next_kato_id = 40_000 + self._rng.randint(0, 999)
        self._populate(kotohomes_count, kato_count)

    # ----------------------------------------------------------------- time

    def step(self) -> list[MarketEvent]:
        """Advance one tick and return what happened in it."""
        first = len(self.history)
        previous = self.now
        self.now = previous + timedelta(seconds=self.tick_s)
        for source in SOURCES:
            store = self._store(source)
            existing = list(store)
            created = self._draw_count(self.new_rate)
            for i in range(created):
                # New listings arrive spread over the tick, not all at its end.
                at = previous + timedelta(seconds=self.tick_s * (i + 1) / (created + 1))
                self._create(source, at, {})
            for _ in range(self._draw_count(self.price_change_rate)):
                priced = [i for i in existing if self._asking(source, store[i]) is not None]
                if priced:
                    self._move_price(source, self._rng.choice(priced))
            for _ in range(self._draw_count(self.status_change_rate)):
                if existing:
                    self._move_status(source, self._rng.choice(existing))
            for _ in range(self._draw_count(self.removal_rate)):
                if existing:
                    listing_id = self._pick_for_removal(source, existing)
                    existing.remove(listing_id)
                    self.remove(source, listing_id)
        # New listings are dated inside the tick, changes at its end: keep time order.
        self.history[first:] = sorted(self.history[first:], key=lambda event: event.at)
        return self.history[first:]

    def advance(self, seconds: float) -> list[MarketEvent]:
        """``floor(seconds / tick_s)`` steps; returns all their events."""
        events: list[MarketEvent] = []
        for _ in range(math.floor(seconds / self.tick_s + 1e-9)):
            events.extend(self.step())
        return events

    # ----------------------------------------------------------------- reading

    def kotohomes_records(self) -> list[JsonDict]:
        """Every live US listing (copies), oldest first, in the Kotohomes JSON shape."""
        return [copy_record(record) for record in self._kotohomes.values()]

    def kato_records(self) -> list[JsonDict]:
        """Every live UK availability record (copies), in id order, in Kato's JSON shape."""
        return [self._render_kato(key) for key in self._kato]

    def live(self, source: Source) -> list[JsonDict]:
        """The simulators' read path: Kotohomes records as stored (do not mutate them);
        Kato records rendered as served."""
        if source == "kotohomes":
            return list(self._kotohomes.values())
        return self.kato_records()

    def find(self, source: Source, listing_id: str) -> JsonDict | None:
        """One live record as served (a copy), or None."""
        key = str(listing_id)
        if source == "kotohomes":
            record = self._kotohomes.get(key)
            return None if record is None else copy_record(record)
        return self._render_kato(key) if key in self._kato else None

    def ids(self, source: Source) -> list[str]:
        """The ids of the live listings of ``source``, oldest first."""
        return list(self._store(source))

    # ----------------------------------------------------------------- test hooks

    def add_kotohomes(self, **overrides: Any) -> JsonDict:
        """Insert a listing now (created_at = market now, strictly after every other);
        ``overrides`` replace generated fields. Returns the record as served."""
        return copy_record(self._create("kotohomes", self.now, overrides))

    def add_kato(self, **overrides: Any) -> JsonDict:
        """Insert an availability record now; ``overrides`` replace generated fields
        (``price``/``rent`` given as a number set ``price.value``/``rent.from``)."""
        record = self._create("kato", self.now, overrides)
        return self._render_kato(str(record["id"]))

    def update_kotohomes(self, id: str, **changes: Any) -> None:
        """Change fields of a listing; bumps ``updated_at`` to now and records events."""
        self._update("kotohomes", str(id), changes)

    def update_kato(self, id: str, **changes: Any) -> None:
        """Change fields of a record (``price``/``rent`` as a number change the figure
        only); bumps ``updated_at`` to now and records events."""
        self._update("kato", str(id), changes)

    def remove(self, source: str, id: str) -> None:
        """Take a listing off the market (KeyError when it is not live)."""
        src = as_source(source)
        key = str(id)
        store = self._store(src)
        if key not in store:
            raise KeyError(f"no live {src} listing {key!r}")
        record = store.pop(key)
        self._kato_text_money.discard(key)
        self._kato_text_id.discard(key)
        self.history.append(
            MarketEvent(self.now, src, key, "removed", old=self._asking(src, record))
        )

    # ----------------------------------------------------------------- internals

    def _store(self, source: Source) -> dict[str, JsonDict]:
        return self._kotohomes if source == "kotohomes" else self._kato

    def _draw_count(self, rate: float) -> int:
        whole = math.floor(rate)
        return whole + (1 if self._rng.random() < rate - whole else 0)

    def _populate(self, kotohomes_count: int, kato_count: int) -> None:
        for source, count, span_days in (
            ("kotohomes", kotohomes_count, 90),
            ("kato", kato_count, 180),
        ):
            span = timedelta(days=span_days)
            offsets = sorted(self._rng.uniform(0.0, 1.0) for _ in range(count))
            for offset in offsets:
                created = self.now - span + span * offset
                # Most listings have been touched since they were created.
                if self._rng.random() < 0.6:
                    updated = created + (self.now - created) * self._rng.random()
                else:
                    updated = created
                self._create(as_source(source), created, {}, updated=updated, log=False)

    def _next_created(self, source: Source, at: datetime) -> datetime:
        unit = ONE_MS if source == "kotohomes" else ONE_US
        at = truncate(at, unit)
        last = self._last_created[source]
        if at <= last:
            at = last + unit
        self._last_created[source] = at
        return at

    def _create(
        self,
        source: Source,
        at: datetime,
        overrides: Mapping[str, Any],
        *,
        updated: datetime | None = None,
        log: bool = True,
    ) -> JsonDict:
        created = self._next_created(source, at)
        updated_at = max(created, updated or created)
        if source == "kotohomes":
            city = pick_city(self._rng, overrides)
            record = self._build_kotohomes(city, created, updated_at)
            fmt: Callable[[datetime], str] = iso_ms
        else:
            town = pick_town(self._rng, overrides)
            record = self._build_kato(town, created, updated_at)
            fmt = iso_us
        for key, value in overrides.items():
            self._apply(source, record, key, value, fmt)
        if source == "kato" and not overrides.keys() & {"rent", "size", "property_types"}:
            other_rent_metric(record)
        key = str(record.get("id"))
        if source == "kato" and isinstance(record.get("id"), int):
            self._next_kato_id = max(self._next_kato_id, record["id"])
        store = self._store(source)
        if key in store:
            raise ValueError(f"{source} listing {key!r} already exists")
        if "created_at" in overrides:
            # A test may insert a deliberately unparseable date: then there is no order.
            with contextlib.suppress(ValueError):
                self._last_created[source] = max(
                    self._last_created[source], parse_iso(str(record["created_at"]))
                )
        store[key] = record
        if log:
            self.history.append(
                MarketEvent(created, source, key, "created", new=self._asking(source, record))
            )
        return record

    def _apply(
        self,
        source: Source,
        record: JsonDict,
        key: str,
        value: Any,
        fmt: Callable[[datetime], str],
    ) -> None:
        if isinstance(value, datetime):
            value = fmt(value)
        if source == "kato" and key == "price" and is_number(value):
            price = record.get("price")
            if not isinstance(price, dict):
                price = kato_price(None)
                record["price"] = price
                record["for_sale"] = True
            price["value"] = value
            return
        if source == "kato" and key == "rent" and is_number(value):
            rent = record.get("rent")
            if not isinstance(rent, dict):
                rent = kato_rent(None, None)
                record["rent"] = rent
                record["to_let"] = True
            rent["from"] = value
            if is_number(rent.get("to")) and rent["to"] < value:
                rent["to"] = None
            return
        record[key] = value

    def _update(self, source: Source, key: str, changes: Mapping[str, Any]) -> None:
        store = self._store(source)
        if key not in store:
            raise KeyError(f"no live {source} listing {key!r}")
        record = store[key]
        old_asking = self._asking(source, record)
        old_status = status_of(record)
        fmt = iso_ms if source == "kotohomes" else iso_us
        for name, value in changes.items():
            self._apply(source, record, name, value, fmt)
        if "updated_at" not in changes:
            record["updated_at"] = fmt(self.now)
        new_asking = self._asking(source, record)
        new_status = status_of(record)
        if new_asking != old_asking:
            self.history.append(
                MarketEvent(self.now, source, key, "price_changed", old_asking, new_asking)
            )
        if new_status != old_status:
            self.history.append(
                MarketEvent(self.now, source, key, "status_changed", old_status, new_status)
            )

    def _asking(self, source: Source, record: JsonDict) -> Any:
        """The figure a price change moves: the price, else the rent (Kato: per sq ft)."""
        if source == "kotohomes":
            return record.get("price")
        price = record.get("price")
        if record.get("for_sale") and isinstance(price, dict) and price.get("value") is not None:
            return price.get("value")
        rent = record.get("rent")
        if isinstance(rent, dict):
            return rent.get("from")
        return None

    def _move_price(self, source: Source, key: str) -> None:
        record = self._store(source)[key]
        old = self._asking(source, record)
        # Mostly reductions, as a market clearing stale stock does; sometimes a rise.
        if self._rng.random() < 0.75:
            factor = 1.0 - self._rng.uniform(0.02, 0.10)
        else:
            factor = 1.0 + self._rng.uniform(0.01, 0.06)
        if source == "kotohomes":
            new = round_us_price(old * factor, rent=record.get("type") == "for_rent")
            if new == old:
                new = old - (25 if record.get("type") == "for_rent" else 1000)
            self._update(source, key, {"price": new})
            return
        price = record.get("price")
        if record.get("for_sale") and isinstance(price, dict) and price.get("value") is not None:
            self._update(source, key, {"price": round_gbp_price(old * factor)})
            return
        rent = dict(record["rent"])
        new_from = max(0.5, round(old * factor * 4) / 4)
        if new_from == old:
            new_from = max(0.5, old - 0.25)
        if is_number(rent.get("to")):
            rent["to"] = max(new_from, round(rent["to"] * factor * 4) / 4)
        rent["from"] = new_from
        self._update(source, key, {"rent": rent})

    def _move_status(self, source: Source, key: str) -> None:
        record = self._store(source)[key]
        status = status_of(record)
        rng = self._rng
        if source == "kotohomes":
            new = "pending" if status == "active" else "active"
        elif status == "coming_soon":
            new = "available"
        elif status == "available":
            done = "sold" if record.get("for_sale") and not record.get("to_let") else "let"
            new = rng.choice(("under_offer", "under_offer", "under_offer", done))
        elif status == "under_offer":
            done = "sold" if record.get("for_sale") and not record.get("to_let") else "let"
            new = rng.choice(("available", done, done))
        else:
            new = "available"  # let or sold, back on the market
        self._update(source, key, {"status": new})

    def _pick_for_removal(self, source: Source, existing: list[str]) -> str:
        store = self._store(source)
        closed = ("pending",) if source == "kotohomes" else ("let", "sold", "under_offer")
        preferred = [i for i in existing if status_of(store[i]) in closed]
        if preferred and self._rng.random() < 0.7:
            return self._rng.choice(preferred)
        return self._rng.choice(existing)

    # ----------------------------------------------------------------- builders

    def _build_kotohomes(self, city: UsCity, created: datetime, updated: datetime) -> JsonDict:
        rng = self._rng
        listing_id = "li_" + "".join(rng.choice(BASE62) for _ in range(20))
        while listing_id in self._kotohomes:
            listing_id = "li_" + "".join(rng.choice(BASE62) for _ in range(20))
        property_type = weighted(rng, KOTOHOMES_TYPES)
        for_rent = rng.random() < 0.15
        bedrooms = rng.choices((1, 2, 3, 4, 5, 6), weights=(12, 26, 30, 19, 9, 4))[0]
        if property_type in STACKED_TYPES:
            bedrooms = min(bedrooms, 4)
        bathrooms = rng.choice([b / 2 for b in range(2, min(2 * bedrooms + 3, 12))])
        living_area = int(round(bedrooms * rng.uniform(330, 620) + rng.uniform(150, 700), -1))
        if for_rent:
            monthly = rng.uniform(1300, 4200) * city.price_factor * (0.7 + 0.15 * bedrooms)
            price = round_us_price(min(max(monthly, 900), 15_000), rent=True)
        else:
            base = math.exp(rng.uniform(math.log(150_000), math.log(1_400_000)))
            scaled = base * city.price_factor * (0.7 + 0.12 * bedrooms)
            price = round_us_price(min(max(scaled, 150_000), 3_000_000), rent=False)
        street = f"{rng.randint(1, 9899)} {rng.choice(US_STREETS)} {rng.choice(US_SUFFIXES)}"
        unit = (
            f"{rng.randint(1, 32)}{rng.choice('ABCDEFGH')}"
            if property_type in STACKED_TYPES or rng.random() < 0.05
            else None
        )
        self._mls_serial += rng.randint(1, 37)
        broker_name, domain = rng.choice(US_BROKERS)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        year_built = rng.choices(
            (rng.randint(1885, 1945), rng.randint(1946, 1999), rng.randint(2000, 2025)),
            weights=(3, 4, 3),
        )[0]
        status = "active" if rng.random() < 0.85 else "pending"
        photo_count = rng.randint(4, 42)
        open_houses: list[JsonDict] = []
        if not for_rent and status == "active" and rng.random() < 0.25:
            day = truncate(self.now, timedelta(days=1)) + timedelta(days=rng.randint(1, 9))
            start = day + timedelta(hours=rng.choice((10, 11, 13, 14, 15)))
            open_houses.append({"start": iso_ms(start), "end": iso_ms(start + timedelta(hours=2))})
        full_baths = int(bathrooms)
        return {
            "id": listing_id,
            "created_at": iso_ms(created),
            "updated_at": iso_ms(updated),
            "type": "for_rent" if for_rent else "for_sale",
            "mls_number": f"{city.state}{rng.choice(('RS', 'MX', 'BK', 'NR'))}-{self._mls_serial}",
            "status": status,
            "property_type": property_type,
            "description": us_description(rng, property_type, bedrooms, city),
            "price": price,
            "year_built": year_built,
            "street_address": street,
            "unit_number": unit,
            "city": city.name,
            "state": city.state,
            "zip_code": rng.choice(city.zips),
            "lot_size": None
            if property_type in STACKED_TYPES
            else js_number(
                round(rng.choice((0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)) * rng.uniform(0.8, 1.6), 2)
            ),
            "living_area": living_area,
            "url": f"https://www.kotohomes.com/listings/{listing_id}",
            "longitude": round(city.lng + rng.uniform(-0.045, 0.045), 6),
            "latitude": round(city.lat + rng.uniform(-0.035, 0.035), 6),
            "bedrooms": bedrooms,
            "bathrooms": js_number(bathrooms),
            "bathrooms_full": full_baths,
            "bathrooms_three_quarter": None,
            "bathrooms_half": 1 if bathrooms != full_baths else 0,
            "bathrooms_quarter": None,
            "agent": {
                "name": f"{first} {last}",
                "email": f"{first}.{last}@{domain}".lower().replace("'", ""),
                "phone": f"{city.area_code}{rng.randint(2_000_000, 9_999_999)}",
            },
            "broker": {
                "name": broker_name,
                "email": f"info@{domain}",
                "phone": f"{city.area_code}555{rng.randint(1000, 9999)}",
                "logo_url": f"https://media.kotohomes.com/brokers/{domain.split('.')[0]}.png",
            },
            "photo_url": f"https://photos.kotohomes.com/{listing_id}/0_large.jpg",
            "photo_count": photo_count,
            "photo_template": f"https://photos.kotohomes.com/{listing_id}/{{offset}}_{{size}}.jpg",
            "open_houses": open_houses,
        }

    def _build_kato(self, town: UkTown, created: datetime, updated: datetime) -> JsonDict:
        rng = self._rng
        self._next_kato_id += rng.randint(1, 9)
        listing_id = self._next_kato_id
        kind = weighted(rng, KATO_TYPES)
        types = [kind]
        if kind == "office" and rng.random() < 0.2:
            types.append("flexible_workspace")
        if kind == "retail" and rng.random() < 0.25:
            types.append("restaurant")
        deal = rng.random()
        to_let, for_sale = (
            (True, False) if deal < 0.7 else (False, True) if deal < 0.9 else (True, True)
        )
        size_from = int(
            round(rng.uniform(300, 9000) * (3 if kind in ("industrial", "warehouse") else 1), -1)
        )
        size_to = int(round(size_from * rng.uniform(1.2, 3.5), -1)) if rng.random() < 0.35 else None
        size_metric = "sqm" if rng.random() < 0.15 else "sqft"
        if size_metric == "sqm":
            size_from = max(10, round(size_from / 10.7639))
            size_to = None if size_to is None else max(size_from, round(size_to / 10.7639))
        rent = None
        if to_let:
            if rng.random() < 0.08:
                rent = kato_rent(None, None, on_application=True)
            else:
                per_sqft = KATO_RENT_BASE[kind] * town.rent_factor * rng.uniform(0.7, 1.35)
                low = max(1.0, round(per_sqft * 4) / 4)
                high = round(low * rng.uniform(1.05, 1.3) * 4) / 4 if rng.random() < 0.3 else None
                rent = kato_rent(low, high)
        price = None
        if for_sale:
            if rng.random() < 0.1:
                price = kato_price(None, on_application=True)
            else:
                sqft = size_from * (10.7639 if size_metric == "sqm" else 1)
                value = round_gbp_price(sqft * rng.uniform(150, 600) * town.rent_factor)
                price = kato_price(value, qualifier=rng.choice(KATO_QUALIFIERS))
        status = rng.choices(KATO_STATUSES, weights=(60, 15, 10, 8, 7))[0]
        if status == "let" and not to_let:
            status = "sold"
        if status == "sold" and not for_sale:
            status = "let"
        street = f"{rng.randint(1, 240)} {rng.choice(UK_STREETS)}"
        district = rng.choice(town.districts)
        inward = "".join(rng.choice(POSTCODE_LETTERS) for _ in range(2))
        postcode = f"{district} {rng.randint(1, 9)}{inward}"
        building = rng.choice(UK_BUILDINGS) if rng.random() < 0.6 else None
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        published = rng.random() < 0.8
        key = str(listing_id)
        if rng.random() < 0.15:
            self._kato_text_money.add(key)
        if rng.random() < 0.1:
            self._kato_text_id.add(key)
        return {
            "id": listing_id,
            "external_ref": f"EXT-{rng.randint(100000, 999999)}" if rng.random() < 0.5 else None,
            "reference_number": f"AV{created.year}-{listing_id:06d}",
            "created_at": iso_us(created),
            "updated_at": iso_us(updated),
            "status": status,
            "api_controlled": rng.random() < 0.2,
            "address": {
                "name": building,
                "line1": street,
                "line2": f"Unit {rng.randint(1, 30)}" if rng.random() < 0.3 else None,
                "town": town.name,
                "county": town.county,
                "postcode": postcode,
                "country": "United Kingdom",
            },
            "position": {
                "lat": round(town.lat + rng.uniform(-0.03, 0.03), 6),
                "lng": round(town.lng + rng.uniform(-0.045, 0.045), 6),
            },
            "for_sale": for_sale,
            "to_let": to_let,
            "price": price,
            "rent": rent,
            "size": {"from": size_from, "to": size_to, "metric": size_metric},
            "fitted_space": rng.random() < 0.25,
            "fitted_space_comment": None,
            "property_types": [{"key": t} for t in types],
            "marketing": {
                "text": [
                    {
                        "key": "summary",
                        "heading": "Summary",
                        "content": uk_summary(rng, kind, town, size_from, size_metric),
                    },
                    {
                        "key": "location",
                        "heading": "Location",
                        "content": f"Close to {town.name} city centre, with good transport links.",
                    },
                ],
                "key_points": uk_key_points(rng, kind),
            },
            "published_to_website": {
                "featured": rng.random() < 0.15,
                "floor_unit_table": rng.random() < 0.3,
            }
            if published
            else None,
            "floor_units": [],
            "images": [
                {
                    "url": f"https://media.kato.app/availability/{listing_id}/{n}.jpg",
                    "updated_at": iso_us(created),
                }
                for n in range(1, rng.randint(2, 6))
            ],
            "files": [
                {
                    "type": "brochure",
                    "url": f"https://media.kato.app/availability/{listing_id}/brochure.pdf",
                }
            ],
            "videos": [],
            "assignees": [{"forename": first, "surname": last, "office": rng.choice(UK_OFFICES)}],
        }

    def _render_kato(self, key: str) -> JsonDict:
        record = copy_record(self._kato[key])
        if key in self._kato_text_id:
            record["id"] = str(record["id"])
        if key in self._kato_text_money:
            # The reference warns money may arrive as formatted strings.
            rent = record.get("rent")
            if isinstance(rent, dict):
                for end in ("from", "to"):
                    if is_number(rent.get(end)):
                        rent[end] = f"£{rent[end]:,.2f}"
            price = record.get("price")
            if isinstance(price, dict) and is_number(price.get("value")):
                price["value"] = f"£{price['value']:,.0f}"
        return record
