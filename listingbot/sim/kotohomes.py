"""Kotohomes Listing API simulator: ``GET /v1/listings`` and ``GET /v1/listings/{id}``.

Holds the client to the reference: the ``key`` query parameter (403 otherwise), every
documented filter evaluated server-side with inclusive bounds, both array forms
(``states[]=NY`` and ``states=NY``), the constraint rule, ``limit`` 1-50, and a 400 with a
hint for anything it cannot make sense of - including parameter names it does not know,
so a misspelt filter fails loudly here instead of silently matching everything.

Two modes, because the API's documentation moved on after the seed was written:

- ``"current"`` (the default) follows today's docs: a search must carry
  latitude/longitude/radius, ``territory``, ``zip_codes`` or ``mls_numbers`` (``states``
  alone is refused with a hint); ``territory`` is a filter; ``sort_by`` is a repeatable
  list of fields with an optional direction, a field named without one sorting
  *ascending*; ``created_min`` takes whole seconds only;
- ``"seed"`` follows the seed: any geographic filter, ``states`` included, is enough;
  ``territory`` is an unknown parameter; ``sort_by`` is ``updated_at`` or ``created_at``,
  always descending; ``created_min`` takes any ISO-8601 time.

Both answer a search without ``sort_by`` newest update first, and both accept the
deprecated ``states[]=`` names beside the plain ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from listingbot.sim._http import (
    JsonDict,
    RequestLog,
    json_errors_middleware,
    json_response,
    parse_iso,
    request_log_middleware,
)
from listingbot.sim._photos import KOTOHOMES_PHOTO_ORIGIN, PhotoHost, rehost_kotohomes
from listingbot.sim._places import TERRITORIES
from listingbot.sim.faults import Faults, FaultTarget
from listingbot.sim.market import Market

Mode = Literal["current", "seed"]
MODES: tuple[Mode, ...] = ("current", "seed")
DEFAULT_KEY = "test-kotohomes-key"
ARRAY_PARAMS = ("mls_numbers", "property_types", "states", "zip_codes")
INT_RANGES = ("price", "living_area", "year_built")
FLOAT_RANGES = ("bedrooms", "bathrooms")
SCALAR_PARAMS = frozenset(
    {
        "key",
        "type",
        "limit",
        "created_min",
        "open_houses_only",
        "latitude",
        "longitude",
        "radius",
        "territory",
        *(f"{name}_{end}" for name in (*INT_RANGES, *FLOAT_RANGES) for end in ("min", "max")),
    }
)
PROPERTY_TYPES = frozenset(
    {
        "acreage",
        "apartment",
        "cattle_ranch",
        "commercial",
        "community",
        "condominium",
        "duplex",
        "farm",
        "fishing_land",
        "foreclosure",
        "garage",
        "home_with_acreage",
        "house",
        "hunting_land",
        "lots_land",
        "mobile_manufactured",
        "mountain_land",
        "multifamily",
        "new_construction",
        "ranch",
        "ranch_horse",
        "recreational_land",
        "residential",
        "retail",
        "senior_community",
        "single_family",
        "timberland",
        "townhouse",
        "unspecified",
        "vacation_home",
        "waterfront",
    }
)
SEED_SORT_FIELDS = ("updated_at", "created_at")
SORT_FIELDS: tuple[str, ...] = (
    *("created_at", "updated_at", "price", "living_area", "year_built"),
    *("bedrooms", "bathrooms"),
)
DEFAULT_SORT = (("updated_at", True),)  # (field, descending): both versions' default
# Today's datetime form: YYYY-MM-DDThh:mm[:ss][+HH:MM|-HH:MM|Z], whole seconds.
WHOLE_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:\d{2})?")
TIME_FIELDS = frozenset({"created_at", "updated_at"})
DEFAULT_LIMIT = 25
MAX_LIMIT = 50
EARTH_RADIUS_MILES = 3958.8
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
OLDEST = datetime.min.replace(tzinfo=UTC)


class BadParameter(Exception):
    """A query parameter the API would answer with 400."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass
class Search:
    """A parsed, validated search."""

    arrays: dict[str, set[str]] = field(default_factory=dict)
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    centre: tuple[float, float, float] | None = None  # latitude, longitude, radius (miles)
    territory: str | None = None
    type: str | None = None
    created_min: datetime | None = None
    open_houses_only: bool = False
    sort: tuple[tuple[str, bool], ...] = DEFAULT_SORT  # (field, descending), first key first
    limit: int = DEFAULT_LIMIT


def error_body(status: int, message: str, *, parameter: str | None = None) -> JsonDict:
    codes = {
        400: "bad_request",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        429: "too_many_requests",
        500: "server_error",
        503: "service_unavailable",
    }
    body: JsonDict = {"error": codes.get(status, "error"), "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    return body


class KotohomesSim:
    """The Kotohomes API over a ``Market``; ``requests`` logs every call (key redacted)."""

    def __init__(
        self,
        market: Market,
        *,
        api_keys: Collection[str] = (DEFAULT_KEY,),
        faults: Faults | None = None,
        mode: Mode = "current",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode: Mode = mode
        self.market = market
        self.api_keys = set(api_keys)
        self.faults = faults if faults is not None else Faults()
        self.requests: list[RequestLog] = []
        # The photo CDN: the records' photo URLs point here (fault switches: see _photos).
        self.photos = PhotoHost(KOTOHOMES_PHOTO_ORIGIN, "/photos", rehost_kotohomes)

    def app(self) -> web.Application:
        target = FaultTarget(
            name="kotohomes",
            error_body=lambda status: error_body(status, _FAULT_MESSAGES[status]),
        )
        app = web.Application(
            middlewares=[
                request_log_middleware(self.requests, secret_params={"key"}),
                self.faults.middleware(target),
                json_errors_middleware(error_body),
            ]
        )
        app.router.add_get("/v1/listings", self._search)
        app.router.add_get("/v1/listings/{id}", self._get)
        self.photos.add_routes(app)
        return app

    def _authorized(self, request: web.Request) -> bool:
        keys = request.query.getall("key", [])
        return len(keys) == 1 and keys[0] in self.api_keys

    async def _search(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _forbidden()
        try:
            search = parse_search(request.query.items(), mode=self.mode)
        except BadParameter as exc:
            return json_response(error_body(400, exc.message, parameter=exc.parameter), status=400)
        found = [r for r in self.market.live("kotohomes") if _matches(r, search, self.market)]
        found = sort_records(found, search.sort)
        page = self.faults.serve_records(
            "kotohomes",
            "kotohomes",
            found[: search.limit],
            base_rate=self.market.hostile_rate,
        )
        return json_response({"data": self.photos.rehost(request, page)})

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _forbidden()
        listing_id = request.match_info["id"]
        record = self.market.find("kotohomes", listing_id)
        if record is None:
            return json_response(error_body(404, f"No listing with id {listing_id!r}."), status=404)
        served = self.faults.serve_records(
            "kotohomes", "kotohomes", [record], base_rate=self.market.hostile_rate
        )
        return json_response({"data": self.photos.rehost(request, served)[0]})


_FAULT_MESSAGES = {
    429: "Too many requests. Slow down.",
    500: "Internal server error. Try again later.",
    503: "Service temporarily unavailable. Try again later.",
}


def _forbidden() -> web.Response:
    return json_response(
        error_body(403, "Missing or invalid API key, or inactive account."), status=403
    )


def parse_search(pairs: Collection[tuple[str, str]], *, mode: Mode = "current") -> Search:
    """Validate the query pairs of a search; raises ``BadParameter`` with a hint."""
    search = Search()
    scalars: dict[str, str] = {}
    known = SCALAR_PARAMS if mode == "current" else SCALAR_PARAMS - {"territory"}
    sorts: list[str] = []
    for raw_name, value in pairs:
        name = raw_name.removesuffix("[]")
        if name == "sort_by":
            sorts.append(value)
        elif name in ARRAY_PARAMS:
            if not value.strip():
                raise BadParameter(name, f"{raw_name} must not be empty.")
            search.arrays.setdefault(name, set()).add(value.strip())
        elif raw_name in known:
            if raw_name in scalars:
                raise BadParameter(raw_name, f"{raw_name} was given more than once.")
            scalars[raw_name] = value
        else:
            raise BadParameter(
                raw_name,
                f"Unknown parameter {raw_name!r}. Known parameters: "
                + ", ".join(sorted({*known, *ARRAY_PARAMS, "sort_by"})),
            )
    unknown_types = search.arrays.get("property_types", set()) - PROPERTY_TYPES
    if unknown_types:
        raise BadParameter(
            "property_types",
            f"Unknown property_types {sorted(unknown_types)}. "
            f"Allowed: {', '.join(sorted(PROPERTY_TYPES))}.",
        )
    for name in INT_RANGES:
        search.bounds[name] = (_int(scalars, f"{name}_min"), _int(scalars, f"{name}_max"))
    for name in FLOAT_RANGES:
        search.bounds[name] = (_float(scalars, f"{name}_min"), _float(scalars, f"{name}_max"))
    for name, (low, high) in search.bounds.items():
        if low is not None and high is not None and low > high:
            raise BadParameter(f"{name}_min", f"{name}_min must not exceed {name}_max.")
    geo = {name: _float(scalars, name) for name in ("latitude", "longitude", "radius")}
    given = [name for name, value in geo.items() if value is not None]
    if given and len(given) != 3:
        missing = ", ".join(name for name in geo if geo[name] is None)
        raise BadParameter(
            missing.split(", ")[0],
            f"latitude, longitude and radius must be provided together (missing: {missing}).",
        )
    if len(given) == 3:
        lat, lng, radius = geo["latitude"], geo["longitude"], geo["radius"]
        assert lat is not None
        assert lng is not None
        assert radius is not None
        if not -90 <= lat <= 90:
            raise BadParameter("latitude", "latitude must be between -90 and 90.")
        if not -180 <= lng <= 180:
            raise BadParameter("longitude", "longitude must be between -180 and 180.")
        if radius <= 0:
            raise BadParameter("radius", "radius must be a positive number of miles.")
        search.centre = (lat, lng, radius)
    if "type" in scalars:
        if scalars["type"] not in ("for_sale", "for_rent"):
            raise BadParameter("type", "type must be for_sale or for_rent.")
        search.type = scalars["type"]
    if sorts:
        search.sort = _parse_sort(sorts, mode)
    if "limit" in scalars:
        limit = _int(scalars, "limit")
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            raise BadParameter("limit", f"limit must be an integer from 1 to {MAX_LIMIT}.")
        search.limit = limit
    if "created_min" in scalars:
        text = scalars["created_min"].strip()
        if mode == "current" and not WHOLE_SECONDS.fullmatch(text):
            raise BadParameter(
                "created_min",
                "created_min must be YYYY-MM-DDThh:mm[:ss][+HH:MM|-HH:MM|Z] in whole seconds, "
                "e.g. 2021-04-25T17:35:23Z.",
            )
        try:
            search.created_min = parse_iso(text)
        except ValueError:
            raise BadParameter(
                "created_min",
                "created_min must be an ISO-8601 date-time, e.g. 2021-04-25T17:35:23Z.",
            ) from None
    if "open_houses_only" in scalars:
        word = scalars["open_houses_only"].strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise BadParameter("open_houses_only", "open_houses_only must be true or false.")
        search.open_houses_only = word in TRUE_WORDS
    if "territory" in scalars:
        territory = scalars["territory"].strip()
        if territory not in TERRITORIES:
            raise BadParameter("territory", f"Unknown territory {territory[:60]!r}.")
        search.territory = territory
    _check_constraint(search, mode)
    return search


def _parse_sort(values: list[str], mode: Mode) -> tuple[tuple[str, bool], ...]:
    """Seed: one of two fields, descending. Today: fields with an optional direction; a
    field without one sorts ascending."""
    if mode == "seed":
        if len(values) > 1:
            raise BadParameter("sort_by", "sort_by was given more than once.")
        if values[0] not in SEED_SORT_FIELDS:
            raise BadParameter("sort_by", "sort_by must be updated_at or created_at.")
        return ((values[0], True),)
    out: list[tuple[str, bool]] = []
    for value in values:
        field_name, _, direction = value.strip().partition(" ")
        direction = direction.strip().lower() or "asc"
        if field_name not in SORT_FIELDS or direction not in ("asc", "desc"):
            raise BadParameter(
                "sort_by",
                f"sort_by must be one of {', '.join(SORT_FIELDS)}, optionally followed by "
                f"asc or desc (got {value[:40]!r}).",
            )
        out.append((field_name, direction == "desc"))
    return tuple(out)


def sort_records(records: list[JsonDict], keys: tuple[tuple[str, bool], ...]) -> list[JsonDict]:
    """``records`` sorted by ``keys`` (first key first); records without a key's value
    come after those with one; ties keep id order."""
    out = sorted(records, key=lambda r: str(r.get("id")))
    for name, descending in reversed(keys):
        present = [r for r in out if _sort_value(r, name) is not None]
        missing = [r for r in out if _sort_value(r, name) is None]
        present.sort(key=lambda r: _sort_value(r, name), reverse=descending)
        out = present + missing
    return out


def _sort_value(record: JsonDict, name: str) -> Any:
    if name in TIME_FIELDS:
        moment = _time(record.get(name))
        return None if moment == OLDEST else moment
    return _number(record.get(name))


def _check_constraint(search: Search, mode: Mode) -> None:
    """Today's rule (changelog 2022-06-13, 2022-06-30) or the seed's looser one."""
    if mode == "seed":
        if not (search.arrays.keys() & {"states", "zip_codes", "mls_numbers"} or search.centre):
            raise BadParameter(
                "states",
                "A search must be constrained geographically: give states, zip_codes, "
                "mls_numbers, or latitude, longitude and radius.",
            )
        return
    if search.arrays.keys() & {"zip_codes", "mls_numbers"} or search.centre or search.territory:
        return
    alone = " (states alone is not a constraint)" if "states" in search.arrays else ""
    raise BadParameter(
        "latitude",
        f"You must always provide latitude/longitude/radius, territory, zip_codes or "
        f"mls_numbers{alone}.",
    )


def _int(scalars: dict[str, str], name: str) -> int | None:
    if name not in scalars:
        return None
    text = scalars[name].strip()
    try:
        return int(text)
    except ValueError:
        raise BadParameter(name, f"{name} must be an integer, got {text[:40]!r}.") from None


def _float(scalars: dict[str, str], name: str) -> float | None:
    if name not in scalars:
        return None
    text = scalars[name].strip()
    try:
        number = float(text)
    except ValueError:
        raise BadParameter(name, f"{name} must be a number, got {text[:40]!r}.") from None
    if not math.isfinite(number):
        raise BadParameter(name, f"{name} must be a finite number.")
    return number


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        return OLDEST
    try:
        return parse_iso(value)
    except ValueError:
        return OLDEST


def _matches(record: JsonDict, search: Search, market: Market) -> bool:
    fields = {
        "states": "state",
        "zip_codes": "zip_code",
        "mls_numbers": "mls_number",
        "property_types": "property_type",
    }
    for name, wanted in search.arrays.items():
        value = record.get(fields[name])
        if not isinstance(value, str):
            return False
        if name == "states":
            if value.upper() not in {w.upper() for w in wanted}:
                return False
        elif value not in wanted:
            return False
    for name, (low, high) in search.bounds.items():
        if low is None and high is None:
            continue
        number = _number(record.get(name))
        if number is None:
            return False
        if (low is not None and number < low) or (high is not None and number > high):
            return False
    if search.centre is not None:
        lat, lng = _number(record.get("latitude")), _number(record.get("longitude"))
        if lat is None or lng is None:
            return False
        if miles_between(search.centre[0], search.centre[1], lat, lng) > search.centre[2]:
            return False
    if search.territory is not None and record.get("zip_code") not in TERRITORIES[search.territory]:
        return False
    if search.type is not None and record.get("type") != search.type:
        return False
    if search.created_min is not None:
        created = _time(record.get("created_at"))
        if created == OLDEST or created < search.created_min:
            return False
    if search.open_houses_only:
        upcoming = [
            house
            for house in record.get("open_houses") or []
            if isinstance(house, dict) and _time(house.get("end")) >= market.now
        ]
        if not upcoming:
            return False
    return True


def miles_between(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in miles (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lng2 - lng1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_MILES * math.asin(min(1.0, math.sqrt(a)))
