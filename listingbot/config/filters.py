"""Each source's ``filters:`` of a subscription, and the filters listingbot applies itself."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cache, cached_property
from typing import Annotated, Any, ClassVar, Literal, Self, get_origin

from pydantic import (
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from listingbot.config._errors import Problems, num, problem
from listingbot.config._types import Float, Model, NonNegFloat, NonNegInt, PosFloat, shared
from listingbot.text import slug

# The documented values of Kotohomes' property_types filter (later docs).
KOTOHOMES_PROPERTY_TYPES: frozenset[str] = frozenset(
    """
    acreage apartment cattle_ranch commercial community condominium duplex farm
    fishing_land foreclosure garage home_with_acreage house hunting_land lots_land
    mobile_manufactured mountain_land multifamily new_construction ranch ranch_horse
    recreational_land residential retail senior_community single_family timberland
    townhouse unspecified vacation_home waterfront
    """.split()  # noqa: SIM905 - reads as the documented list
)

# Kato's values as far as they are known (kato.md, the maintained importer, the sandbox):
# Kato documents neither list, so a value close to one of these is a typo (refused) and
# any other value is only warned about.
KATO_STATUSES: tuple[str, ...] = ("available", "under_offer", "coming_soon", "let", "sold")
KATO_PROPERTY_TYPES: tuple[str, ...] = (
    *("office", "retail", "industrial", "warehouse", "leisure", "restaurant"),
    *("flexible_workspace", "medical", "land"),
)
# USPS codes of the states, DC and the territories: anything else matches no listing.
US_STATE_CODES: frozenset[str] = frozenset(
    """
    AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH
    NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR VI GU AS MP
    """.split()  # noqa: SIM905 - reads as the list
)


def _casefold_unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v.strip().casefold() for v in values if v.strip()}))


def _postcode(value: str) -> str:
    return "".join(value.split()).upper()


def _as_list(value: Any) -> Any:
    """A bare string (or number) is a one-item list; null is an empty one."""
    if value is None:
        return ()
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list | tuple):
        # ZIP and MLS numbers are often written unquoted; they are still strings.
        return [
            str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in value
        ]
    return value


class _ItemError(ValueError):
    """One list item is wrong; ``safe`` is the wording without the item's value."""

    def __init__(self, text: str, safe: str) -> None:
        super().__init__(text)
        self.text = text
        self.safe = safe


def _check_items(values: tuple[str, ...], check: Callable[[str], str]) -> tuple[str, ...]:
    """Normalize each item with ``check``; report every bad item by its index."""
    problems = Problems()
    out: list[str] = []
    for i, raw in enumerate(values):
        try:
            out.append(check(raw))
        except _ItemError as err:
            problems.add((i,), err.text, err.safe)
    problems.raise_if_any()
    return tuple(sorted(set(out)))


def _nonempty_item(value: str) -> str:
    text = value.strip()
    if not text:
        raise _ItemError("must not be empty", "must not be empty")
    return text


def _state(value: str) -> str:
    text = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", text):
        raise _ItemError(
            f"{value!r} is not a 2-letter state code (e.g. NY)",
            "not a 2-letter state code (e.g. NY)",
        )
    if text not in US_STATE_CODES:
        raise _ItemError(
            f"{value!r} is not a US state code (USPS codes such as NY, NJ, CA; DC, PR)",
            "not a US state code (USPS codes such as NY, NJ, CA; DC, PR)",
        )
    return text


def _keyword(value: str) -> str:
    text = _nonempty_item(value)
    if "," in text or ";" in text:
        words = ", ".join(w.strip() for w in re.split(r"[,;]", text) if w.strip())
        raise _ItemError(
            f"{value!r} looks like a list written as one keyword; write a list: [{words}]",
            "looks like a list written as one keyword; write a list: [first, second]",
        )
    return text


def _kato_known(kind: str, known: tuple[str, ...]) -> Callable[[str], str]:
    """A checker for a Kato value: a slug; a near miss of a known value is refused."""

    def check(value: str) -> str:
        text = slug(_nonempty_item(value))
        if not text:
            raise _ItemError(f"{value!r} is not a Kato {kind}", f"not a Kato {kind}")
        if text not in known:
            close = difflib.get_close_matches(text, known, n=1, cutoff=0.75)
            if close:
                raise _ItemError(
                    f"unknown Kato {kind} {value!r}; did you mean {close[0]!r}? "
                    f"(known: {', '.join(known)})",
                    f"unknown Kato {kind} (known: {', '.join(known)})",
                )
        return text

    return check


def _zip(value: str) -> str:
    text = value.strip()
    if not re.fullmatch(r"\d{5}(?:-\d{4})?", text):
        raise _ItemError(
            f"{value!r} is not a ZIP code (5 digits or ZIP+4; quote codes like '07030')",
            "not a ZIP code (5 digits or ZIP+4)",
        )
    return text


def _kotohomes_type(value: str) -> str:
    text = slug(value)
    if text not in KOTOHOMES_PROPERTY_TYPES:
        close = difflib.get_close_matches(text, sorted(KOTOHOMES_PROPERTY_TYPES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (see the README for the list)"
        raise _ItemError(
            f"unknown Kotohomes property type {value!r}{hint}",
            "unknown Kotohomes property type",
        )
    return text


def _postcode_prefix(value: str) -> str:
    text = _postcode(value)
    if not re.fullmatch(r"[A-Z0-9]{1,8}", text):
        raise _ItemError(
            f"{value!r} is not a postcode prefix (letters and digits, e.g. EC2 or SW1A)",
            "not a postcode prefix (letters and digits, e.g. EC2 or SW1A)",
        )
    return text


def _check_range(problems: Problems, model: BaseModel, low: str, high: str) -> None:
    lo, hi = getattr(model, low), getattr(model, high)
    if lo is not None and hi is not None and lo > hi:
        problems.add((high,), f"must be >= {low} ({num(hi)} < {num(lo)})", f"must be >= {low}")


def _param_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return num(value)
    return str(value)


def _params(model: BaseModel, names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    pairs: set[tuple[str, str]] = set()
    for name in names:
        value = getattr(model, name)
        if value is None:
            continue
        if isinstance(value, tuple):
            pairs.update((name, _param_value(v)) for v in value)
        else:
            pairs.add((name, _param_value(value)))
    return tuple(sorted(pairs))


class Filters(Model):
    """What every ``filters:`` model shares: the one place for list coercion, range checks
    and query parameters.

    - Every list field (``tuple[str, ...]``) also takes a bare value (a one-item list) or
      null (an empty one), and numbers in it are strings (ZIP codes written unquoted).
    - ``item_checks`` names, per list field, the check and normalization of each item;
      every bad item is reported by its index.
    - ``ranges`` names the ``<stem>_min``/``<stem>_max`` pairs: ``_max`` must be >= ``_min``.
      A source's other rules (``more_rules``) are reported in the same breath.
    - ``upstream_params()`` are the canonical, sorted ``(name, value)`` query pairs of
      ``upstream_names()``; ``warnings()`` what is valid but probably not meant.
    """

    item_checks: ClassVar[Mapping[str, Callable[[str], str]]] = {}
    ranges: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {k: _as_list(v) if k in _list_fields(cls) else v for k, v in data.items()}

    @field_validator("*")
    @classmethod
    def _items(cls, value: Any, info: ValidationInfo) -> Any:
        check = cls.item_checks.get(info.field_name or "")
        value = value if check is None else _check_items(value, check)
        # A list (of ZIP codes, say) that many subscriptions repeat is kept once.
        if type(value) is tuple and all(type(v) is str for v in value):
            return shared(tuple(sys.intern(v) for v in value))
        return value

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems = Problems()
        for stem in self.ranges:
            _check_range(problems, self, f"{stem}_min", f"{stem}_max")
        self.more_rules(problems)
        problems.raise_if_any()
        return self

    def more_rules(self, problems: Problems) -> None:
        """Rules across fields beyond the ranges (a source's own), added to ``problems``."""

    @classmethod
    def upstream_names(cls) -> tuple[str, ...]:
        """The fields sent upstream as query parameters."""
        return ()

    def upstream_params(self) -> tuple[tuple[str, str], ...]:
        """Canonical ``(name, value)`` pairs sent upstream (names without ``[]``)."""
        return self._upstream

    @cached_property
    def _upstream(self) -> tuple[tuple[str, str], ...]:
        return _params(self, self.upstream_names())

    def warnings(self) -> list[tuple[str, str]]:
        """``(key path below filters, text)`` of what is valid but probably not meant."""
        return []


@cache
def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name for name, f in model.model_fields.items() if get_origin(f.annotation) is tuple
    )


class LocalFilters(Filters):
    """Filters listingbot applies itself to normalized listings (both sources).

    Values are stored normalized (keywords case-folded, postcode prefixes upper-case
    without spaces, types as slugs, all sorted and unique) so that matching is a plain
    comparison and equal filters compare and hash equal.
    """

    keywords_any: tuple[str, ...] = ()
    keywords_none: tuple[str, ...] = ()
    property_types: tuple[str, ...] = ()
    size_min: float | None = None
    size_max: float | None = None
    rent_max: float | None = None
    postcode_prefixes: tuple[str, ...] = ()
    to_let: bool | None = None
    for_sale: bool | None = None

    @field_validator("keywords_any", "keywords_none")
    @classmethod
    def _keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _casefold_unique(value)

    @field_validator("property_types")
    @classmethod
    def _types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The one slug normalization gives listings, so "Office/Retail" finds them.
        return tuple(sorted({slug(v) for v in value if slug(v)}))

    @field_validator("postcode_prefixes")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({_postcode(v) for v in value if v.strip()}))

    def is_empty(self) -> bool:
        """True when these filters let every listing through."""
        return self == _NO_LOCAL_FILTERS

    @cached_property
    def property_type_set(self) -> frozenset[str]:
        return frozenset(self.property_types)


_NO_LOCAL_FILTERS = LocalFilters()


class KotohomesFilters(Filters):
    """Kotohomes query parameters (sent upstream) plus the keyword filters (local)."""

    item_checks: ClassVar[Mapping[str, Callable[[str], str]]] = {
        "mls_numbers": _nonempty_item,
        "keywords_any": _keyword,
        "keywords_none": _keyword,
        "states": _state,
        "zip_codes": _zip,
        "property_types": _kotohomes_type,
    }
    ranges: ClassVar[tuple[str, ...]] = (
        *("price", "living_area", "year_built", "bedrooms", "bathrooms"),
    )

    mls_numbers: tuple[str, ...] = ()
    property_types: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    zip_codes: tuple[str, ...] = ()
    price_min: NonNegInt | None = None
    price_max: NonNegInt | None = None
    living_area_min: NonNegInt | None = None
    living_area_max: NonNegInt | None = None
    year_built_min: NonNegInt | None = None
    year_built_max: NonNegInt | None = None
    bedrooms_min: NonNegFloat | None = None
    bedrooms_max: NonNegFloat | None = None
    bathrooms_min: NonNegFloat | None = None
    bathrooms_max: NonNegFloat | None = None
    latitude: Annotated[Float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[Float, Field(ge=-180, le=180)] | None = None
    radius: PosFloat | None = None  # miles
    territory: str | None = None  # a predefined Kotohomes territory id (later docs)
    type: Literal["for_sale", "for_rent"] | None = None
    open_houses_only: bool | None = None
    keywords_any: tuple[str, ...] = ()
    keywords_none: tuple[str, ...] = ()

    @field_validator("territory")
    @classmethod
    def _territory(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if not text or any(ch.isspace() for ch in text):
            raise problem(
                f"{value!r} is not a territory id (one word, as Kotohomes gives it)",
                "not a territory id (one word, as Kotohomes gives it)",
            )
        return text

    def more_rules(self, problems: Problems) -> None:
        geo = {"latitude": self.latitude, "longitude": self.longitude, "radius": self.radius}
        given = [k for k, v in geo.items() if v is not None]
        if given and len(given) < 3:
            for name in geo:
                if name not in given:
                    problems.add(
                        (name,),
                        f"required when {given[0]} is set "
                        "(latitude, longitude and radius go together)",
                    )
        if not (self.states or self.zip_codes or self.mls_numbers or self.territory or given):
            problems.add(
                (),
                "needs a geographic constraint: zip_codes, territory, mls_numbers, or "
                "latitude + longitude + radius (Kotohomes rejects searches without one)",
            )

    @classmethod
    def upstream_names(cls) -> tuple[str, ...]:
        return tuple(n for n in cls.model_fields if n not in {"keywords_any", "keywords_none"})

    def warnings(self) -> list[tuple[str, str]]:
        geo = self.latitude is not None
        if self.states and not (self.zip_codes or self.mls_numbers or self.territory or geo):
            return [
                (
                    "",
                    "today's Kotohomes API refuses a search by states alone (400); "
                    "add zip_codes, territory, mls_numbers or latitude + longitude + radius",
                )
            ]
        return []

    @cached_property
    def local(self) -> LocalFilters:
        return LocalFilters(keywords_any=self.keywords_any, keywords_none=self.keywords_none)


class KatoFilters(Filters):
    """Kato availability filters: three sent upstream, the rest applied locally."""

    item_checks: ClassVar[Mapping[str, Callable[[str], str]]] = {
        "keywords_any": _keyword,
        "keywords_none": _keyword,
        "status": _kato_known("status", KATO_STATUSES),
        "property_types": _kato_known("property type", KATO_PROPERTY_TYPES),
        "postcode_prefixes": _postcode_prefix,
    }
    ranges: ClassVar[tuple[str, ...]] = ("size",)

    status: tuple[str, ...] = ()
    published_to_website: bool | None = None
    api_controlled: bool | None = None
    keywords_any: tuple[str, ...] = ()
    keywords_none: tuple[str, ...] = ()
    property_types: tuple[str, ...] = ()
    size_min: NonNegFloat | None = None  # sq ft
    size_max: NonNegFloat | None = None
    rent_max: PosFloat | None = None  # GBP per sq ft per year
    postcode_prefixes: tuple[str, ...] = ()
    to_let: bool | None = None
    for_sale: bool | None = None

    @classmethod
    def upstream_names(cls) -> tuple[str, ...]:
        return ("status", "published_to_website", "api_controlled")

    def warnings(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, values, known in (
            ("status", self.status, KATO_STATUSES),
            ("property_types", self.property_types, KATO_PROPERTY_TYPES),
        ):
            for j, value in enumerate(values):
                if value not in known:
                    out.append(
                        (
                            f".{name}[{j}]",
                            f"{value!r} is not a value listingbot knows "
                            f"(known: {', '.join(known)}); Kato does not document the list, "
                            "so check that your listings carry it",
                        )
                    )
        return out

    @cached_property
    def local(self) -> LocalFilters:
        return LocalFilters(
            keywords_any=self.keywords_any,
            keywords_none=self.keywords_none,
            property_types=self.property_types,
            size_min=self.size_min,
            size_max=self.size_max,
            rent_max=self.rent_max,
            postcode_prefixes=self.postcode_prefixes,
            to_let=self.to_let,
            for_sale=self.for_sale,
        )


FILTERS_BY_SOURCE: dict[str, type[KotohomesFilters] | type[KatoFilters]] = {
    "kotohomes": KotohomesFilters,
    "kato": KatoFilters,
}

# Keys people put into filters that belong to listingbot (or to sources.*).
RESERVED_FILTER_KEYS: dict[str, dict[str, str]] = {
    "kotohomes": {
        "key": "the API key belongs in sources.kotohomes.key",
        "sort_by": "listingbot sets sort_by itself; remove it",
        "limit": "listingbot sets limit itself (sources.kotohomes.limit); remove it",
        "created_min": "listingbot sets created_min itself to find new listings; remove it",
    },
    "kato": {
        "page": "listingbot walks every page itself; remove it",
        "limit": "listingbot sets the page size (sources.kato.page_size); remove it",
        "sort_by": "listingbot sweeps every page, so sort_by has no use; remove it",
    },
}
