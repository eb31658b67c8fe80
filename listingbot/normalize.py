"""Raw Kotohomes and Kato records into the one frozen :class:`~listingbot.models.Listing`.

Pure functions: no I/O, no clock. Reading is lenient field by field: a field that cannot
be read without guessing (bedrooms ``"three"``, a date of February 30th, a negative price)
is dropped - the listing carries no value for it rather than a wrong one - and reported as
a :class:`FieldProblem` to the caller's ``problems`` list, which counts and logs it. Only a
record without a usable id (nothing to know it by) or one that cannot form a listing at
all raises :class:`MalformedRecord`; the caller skips and counts that.

Kato's API is PHP/Laravel and is read the way the maintained importer reads it: ``[]`` is
an empty object, booleans arrive as ``0``/``1``/``"1"``, money as ``"£45.00 psf"``,
``status`` as a string or an object, rent metrics beyond sq ft / sq m.

Text is cleaned here (control characters, bidi overrides, invalid surrogates, runs of
whitespace, length caps); neutralizing chat mention syntax is the message renderer's job.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar
from urllib.parse import quote

from pydantic import ValidationError

from listingbot.models import Listing, Price, PriceUnit

MAX_MONEY = 1e10
SUMMARY_MAX_CHARS = 600
TITLE_MAX_CHARS = 140
FIELD_MAX_CHARS = 300  # any other text field (addresses, names)
URL_MAX_CHARS = 2048
RAW_TEXT_MAX_CHARS = 10_000
SQM_TO_SQFT = 10.7639
ACRE_TO_SQFT = 43_560.0
HECTARE_TO_SQFT = 107_639.1
_EARLIEST_YEAR, _LATEST_YEAR = 1900, 2200

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n", "\t": " "})
_CURRENCY_SYMBOLS = {"£": "GBP", "$": "USD", "€": "EUR"}
_AMOUNT = re.compile(r"-?\d+(?:\.\d+)?")
_HTML_BREAK = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6]|/tr)\b[^<>]*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?>")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
_FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")
_UNIT_DIGITS = re.compile(r"(?i)(?:ft|m)[2²]")
_LETTERS = re.compile(r"[A-Za-z0-9]")
_ON_APPLICATION = re.compile(r"(?i)\bpoa\b|on application|upon request")
_BOOL_WORDS = {"1": True, "0": False, "true": True, "false": False, "yes": True, "no": False}


@dataclass(frozen=True)
class FieldProblem:
    """One field of one record that was dropped, and why (no value from the record)."""

    record_id: str
    field: str
    reason: str

    @property
    def top_field(self) -> str:
        """The top-level field (``rent`` for ``rent.from``): a bounded metric label."""
        return re.split(r"[.\[]", self.field, maxsplit=1)[0]


# A source's normalizer as the poller calls it: the raw record and where problems go.
Normalizer = Callable[[Mapping[str, Any], "list[FieldProblem] | None"], "Listing"]


class _BadField(ValueError):
    """A field that cannot be read; caught where the field is read, never escapes."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class MalformedRecord(ValueError):
    """A record listingbot cannot use; ``record_id`` is None when even the id is unusable."""

    def __init__(self, record_id: str | None, reason: str) -> None:
        super().__init__(f"record {record_id or '(no id)'}: {reason}")
        self.record_id = record_id
        self.reason = reason


# --- text ----------------------------------------------------------------------------------


def clean_text(text: str, *, multiline: bool = False) -> str:
    """``text`` without control characters, bidi overrides or invalid surrogates.

    Single-line text has every run of whitespace collapsed to one space; multi-line text
    keeps line breaks (at most one blank line in a row) and collapses spaces within lines.
    """
    if text.isascii() and text.isprintable():
        # The common case, and a hot path (every text field of every changed record):
        # printable ASCII holds no control, bidi, surrogate or line-break character, so
        # only whitespace needs collapsing, in both modes. Same result, about 2x faster.
        return " ".join(text.split())
    # Lone surrogates (from JSON like "\\ud800") cannot even be encoded to UTF-8 for SQLite.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = text.replace("\r\n", "\n").translate(_LINE_BREAKS)
    text = "".join(
        ch
        for ch in text
        if ch == "\n" or (unicodedata.category(ch) != "Cc" and ch not in _BIDI_CONTROLS)
    )
    if not multiline:
        return " ".join(text.split())
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def cap(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    if boundary >= limit * 0.6:
        cut = cut[:boundary]
    return cut.rstrip(" \n,;:-") + "…"


def html_to_text(text: str) -> str:
    """Kato marketing text is HTML: tags out, breaks kept, entities decoded."""
    return html.unescape(_HTML_TAG.sub("", _HTML_BREAK.sub("\n", text)))


def slug(text: str) -> str:
    """``"Under Offer"`` -> ``"under_offer"``."""
    return _SLUG_JUNK.sub("_", clean_text(text).lower()).strip("_")


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:39] + "…"


# --- typed field readers ----------------------------------------------------------------------


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _lenient(default: Any) -> Callable[[Callable[_P, _T]], Callable[_P, _T]]:
    """A reader method that answers ``default`` (and reports the field) when the value
    cannot be read, instead of failing the record."""

    def wrap(method: Callable[_P, _T]) -> Callable[_P, _T]:
        @wraps(method)
        def read(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                return method(*args, **kwargs)
            except _BadField as err:
                reader = args[0]
                assert isinstance(reader, _Reader)
                reader.report(err)
                result: _T = default
                return result

        return read

    return wrap


class _Reader:
    """Reads the fields of one record; a field that cannot be read is reported, not kept."""

    def __init__(self, record_id: str, problems: list[FieldProblem] | None) -> None:
        self.record_id = record_id
        self.problems = problems

    def fail(self, name: str, problem: str) -> NoReturn:
        raise _BadField(name, problem)

    def report(self, err: _BadField) -> None:
        if self.problems is not None:
            self.problems.append(FieldProblem(self.record_id, err.name, err.problem[:200]))

    def guard(self, default: _T, read: Callable[[], _T]) -> _T:
        """``read()``, or ``default`` when a field it reads cannot be read."""
        try:
            return read()
        except _BadField as err:
            self.report(err)
            return default

    @_lenient(None)
    def text(self, value: Any, name: str, *, multiline: bool = False) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected text, got {type(value).__name__}")
        # Every cap is far below this; cleaning a 100 kB description whole is wasted work.
        cleaned = clean_text(value[:RAW_TEXT_MAX_CHARS], multiline=multiline)
        if not multiline:
            cleaned = cap(cleaned, FIELD_MAX_CHARS)
        return cleaned or None

    @_lenient(None)
    def url(self, value: Any, name: str) -> str | None:
        """An http(s) URL, else None: a link nobody can follow is no fact worth skipping for."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected a URL, got {type(value).__name__}")
        url = clean_text(value)
        if (
            not url.lower().startswith(("http://", "https://"))
            or " " in url
            or len(url) > URL_MAX_CHARS
        ):
            return None
        return url

    @_lenient(None)
    def code(self, value: Any, name: str, *, digits: int = 0) -> str | None:
        """An identifier-like value (ZIP, MLS number) that may arrive as a number."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value).zfill(digits)
        return self.text(value, name)

    @_lenient(None)
    def number(
        self,
        value: Any,
        name: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool):
            self.fail(name, "expected a number, got a boolean")
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            if not value.strip():
                return None
            if not _AMOUNT.fullmatch(value.strip()):
                self.fail(name, f"expected a number, got {_short(value)}")
            number = float(value)
        else:
            self.fail(name, f"expected a number, got {type(value).__name__}")
        return self._in_range(number, name, minimum, maximum)

    @_lenient((None, None))
    def amount(
        self, value: Any, name: str, *, maximum: float = MAX_MONEY
    ) -> tuple[float | None, str | None]:
        """A non-negative amount, also from a formatted string, and the currency its symbol
        or code implies: ``"£45.00 psf"`` -> (45.0, "GBP"), ``"1,250,000"`` -> 1250000.

        As the maintained importer does, everything but the figure is set aside (symbols,
        codes, unit suffixes); a string with no figure, or two (a range), is not guessed at.
        """
        if not isinstance(value, str):
            return self._plain_amount(value, name, maximum), None
        text = value.strip()
        currency = None
        for symbol, code in _CURRENCY_SYMBOLS.items():
            if symbol in text:
                currency = code
        upper = text.upper()
        for code in ("GBP", "USD", "EUR"):
            if re.search(rf"\b{code}\b", upper):
                currency = code
        # Units with digits in them (ft2, m2) are no figure.
        figures = _FIGURE.findall(_UNIT_DIGITS.sub(" ", text))
        if not figures:
            if not _LETTERS.search(text) or _ON_APPLICATION.search(text):
                return None, currency  # "", "£", "POA": no figure given, none to read
            self.fail(name, f"expected an amount, got {_short(value)}")
        if len(figures) > 1:
            self.fail(name, f"more than one figure in {_short(value)}")
        if re.search(r"-\s*[\d.]", text) and not re.search(r"\d\s*-", text):
            self.fail(name, f"{_short(value)} is below 0")
        number = float(figures[0].replace(",", ""))
        return self._in_range(number, name, 0.0, maximum), currency

    def _plain_amount(self, value: Any, name: str, maximum: float) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(name, f"expected an amount, got {type(value).__name__}")
        return self._in_range(float(value), name, 0.0, maximum)

    @_lenient(None)
    def integer(self, value: Any, name: str) -> int | None:
        number = self.number(value, name)
        if number is None:
            return None
        if not number.is_integer():
            self.fail(name, f"expected a whole number, got {_short(value)}")
        return int(number)

    @_lenient(None)
    def boolean(self, value: Any, name: str) -> bool | None:
        """true/false, and PHP's forms of them: 0/1, "0"/"1", "true"/"false"."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        return self.fail(name, f"expected true or false, got {_short(value)}")

    @_lenient(None)
    def when(self, value: Any, name: str) -> datetime | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected an ISO-8601 date-time, got {type(value).__name__}")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(name, f"not an ISO-8601 date-time: {_short(value)}")
        # Naive times are UTC by both APIs' documentation.
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        if not _EARLIEST_YEAR <= parsed.year <= _LATEST_YEAR:
            self.fail(name, f"implausible date {_short(value)}")
        return parsed

    @_lenient(None)
    def mapping(self, value: Any, name: str) -> Mapping[str, Any] | None:
        """An object; ``[]`` is how PHP writes an empty one."""
        if isinstance(value, list) and not value:
            return {}
        if value is not None and not isinstance(value, Mapping):
            self.fail(name, f"expected an object, got {type(value).__name__}")
        return value

    @_lenient(())
    def items(self, value: Any, name: str) -> Sequence[Any]:
        if value is not None and not isinstance(value, list):
            self.fail(name, f"expected a list, got {type(value).__name__}")
        return value or ()

    @_lenient(None)
    def currency(self, value: Any, name: str) -> str | None:
        text = self.text(value, name)
        if text is None:
            return None
        text = _CURRENCY_SYMBOLS.get(text, text).upper()
        if not re.fullmatch(r"[A-Z]{3}", text):
            self.fail(name, f"not a currency code: {_short(value)}")
        return text

    def _in_range(
        self, number: float, name: str, minimum: float | None, maximum: float | None
    ) -> float:
        if not math.isfinite(number):
            self.fail(name, "not a finite number")
        if minimum is not None and number < minimum:
            self.fail(name, f"{number:g} is below {minimum:g}")
        if maximum is not None and number > maximum:
            self.fail(name, f"{number:g} is implausibly large")
        return number


def _record_id(raw: Mapping[str, Any]) -> str:
    value = raw.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if len(text) > 200 or any(unicodedata.category(ch) == "Cc" for ch in text):
            raise MalformedRecord(None, f"id: unusable id {_short(text)}")
        return text
    raise MalformedRecord(None, "id: missing or not a string/integer")


def _build(record_id: str, fields: dict[str, Any]) -> Listing:
    try:
        return Listing(**fields)
    except ValidationError as err:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors()[:3])
        raise MalformedRecord(record_id, f"does not fit the listing model ({where})") from None


def _words(slug_text: str) -> str:
    return slug_text.replace("_", " ")


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- Kotohomes ---------------------------------------------------------------------------


def normalize_kotohomes(
    raw: Mapping[str, Any], *, problems: list[FieldProblem] | None = None
) -> Listing:
    """One Kotohomes search record as a Listing; fields that cannot be read are dropped
    and appended to ``problems``. Raises MalformedRecord without a usable id."""
    if not isinstance(raw, Mapping):
        raise MalformedRecord(None, "record is not an object")
    record_id = _record_id(raw)
    r = _Reader(record_id, problems)

    created_at = r.when(raw.get("created_at"), "created_at")
    updated_at = r.when(raw.get("updated_at"), "updated_at")

    kind = r.guard(None, lambda: _kotohomes_type(r, raw.get("type")))
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
    year_built = r.guard(None, lambda: _year_built(r, raw.get("year_built")))
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

    return _build(
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
            "summary": _summary(r.text(raw.get("description"), "description", multiline=True)),
            "address": address,
            "city": city,
            "region": state,
            "postcode": postcode,
            "country": "US",
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
            "photo_url": r.url(raw.get("photo_url"), "photo_url"),
            "agent": _kotohomes_agent(r, raw),
            "created_at": created_at,
            "updated_at": updated_at,
        },
    )


def _kotohomes_type(r: _Reader, value: Any) -> str | None:
    kind = r.text(value, "type")
    if kind is not None and slug(kind) not in ("for_sale", "for_rent"):
        r.fail("type", f"unknown listing type {_short(kind)}")
    return kind


def _year_built(r: _Reader, value: Any) -> int | None:
    year = r.integer(value, "year_built")
    if year is not None and year > _LATEST_YEAR:
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
    head = _words(property_type) if property_type else "home"
    if bedrooms:
        head = f"{bedrooms:g} bd {head}"
    if to_let:
        head += " for rent"
    place = ", ".join(part for part in (city, state) if part) or street
    title = f"{head} in {place}" if place else f"{head} {record_id}"
    return cap(_capitalized(clean_text(title)), TITLE_MAX_CHARS)


def _kotohomes_agent(r: _Reader, raw: Mapping[str, Any]) -> str | None:
    for field in ("agent", "broker"):
        person = r.mapping(raw.get(field), field)
        if person is None:
            continue
        name = r.text(person.get("name"), f"{field}.name")
        phone = r.text(person.get("phone"), f"{field}.phone")
        if name:
            return f"{name}, {phone}" if phone else name
    return None


def _summary(text: str | None) -> str | None:
    return cap(text, SUMMARY_MAX_CHARS) if text else None


# --- Kato ------------------------------------------------------------------------------


def normalize_kato(
    raw: Mapping[str, Any],
    *,
    listing_url: str | None = None,
    problems: list[FieldProblem] | None = None,
) -> Listing:
    """One Kato availability record as a Listing; fields that cannot be read are dropped
    and appended to ``problems``. Raises MalformedRecord without a usable id.

    The record has no public link. ``listing_url`` is the operator's template over
    ``{id}``, ``{reference_number}`` and ``{external_ref}``
    (``"https://agency.example/property/{reference_number}"``); without one, or when the
    record lacks a value it names, the brochure (else the particulars) file is the link.
    """
    if not isinstance(raw, Mapping):
        raise MalformedRecord(None, "record is not an object")
    record_id = _record_id(raw)
    r = _Reader(record_id, problems)

    address = r.mapping(raw.get("address"), "address") or {}
    name = r.text(address.get("name"), "address.name")
    line1 = r.text(address.get("line1"), "address.line1")
    line2 = r.text(address.get("line2"), "address.line2")
    town = r.text(address.get("town"), "address.town")
    county = r.text(address.get("county"), "address.county")
    postcode = r.text(address.get("postcode"), "address.postcode")
    postcode = postcode.upper() if postcode else None
    position = r.mapping(raw.get("position"), "position") or {}

    property_types = _kato_property_types(r, raw.get("property_types"))
    no_size: tuple[float | None, float | None] = (None, None)
    size_from, size_to = r.guard(no_size, lambda: _kato_size(r, raw.get("size")))
    status = _kato_status(r, raw.get("status"))

    parts: list[str] = []
    for part in (name, line1, line2, town, county, postcode):
        if part and part not in parts:
            parts.append(part)

    return _build(
        record_id,
        {
            "source": "kato",
            "id": record_id,
            "url": _kato_url(r, raw, record_id, listing_url),
            "title": _kato_title(record_id, name or line1, town, property_types),
            "summary": _summary(r.guard(None, lambda: _kato_summary(r, raw.get("marketing")))),
            "address": ", ".join(parts) or None,
            "city": town,
            "region": county,
            "postcode": postcode,
            "country": "GB",
            "latitude": r.number(position.get("lat"), "position.lat", minimum=-90, maximum=90),
            "longitude": r.number(position.get("lng"), "position.lng", minimum=-180, maximum=180),
            "for_sale": bool(r.boolean(raw.get("for_sale"), "for_sale")),
            "to_let": bool(r.boolean(raw.get("to_let"), "to_let")),
            "price": _kato_price(r, raw.get("price")),
            "rent": r.guard(None, lambda: _kato_rent(r, raw.get("rent"))),
            "size_sqft": size_from,
            "size_max_sqft": size_to,
            "property_type": property_types[0] if property_types else None,
            "property_types": property_types,
            "status": status,
            "photo_url": _kato_photo(r, raw.get("images")),
            "agent": _kato_agent(r, raw.get("assignees")),
            "created_at": r.when(raw.get("created_at"), "created_at"),
            "updated_at": r.when(raw.get("updated_at"), "updated_at"),
        },
    )


def _kato_title(
    record_id: str, place: str | None, town: str | None, property_types: Sequence[str]
) -> str:
    """``"1 King St, Leeds"``; without an address, the type: ``"Office in Leeds"``."""
    if place:
        title = f"{place}, {town}" if town and town != place else place
    else:
        kind = _capitalized(_words(property_types[0])) if property_types else "Availability"
        title = f"{kind} in {town}" if town else f"{kind} {record_id}"
    return cap(clean_text(title), TITLE_MAX_CHARS)


KATO_URL_FIELDS = ("id", "reference_number", "external_ref")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _kato_url(
    r: _Reader, raw: Mapping[str, Any], record_id: str, template: str | None
) -> str | None:
    for field in ("url", "website_url"):
        url = r.url(raw.get(field), field)
        if url:
            return url
    if template:
        url = _fill(r, template, raw, record_id)
        if url:
            return url
    files = r.items(raw.get("files"), "files")
    for wanted in ("brochure", "particulars"):
        for index, item in enumerate(files):
            if isinstance(item, Mapping) and str(item.get("type", "")).lower() == wanted:
                url = r.url(item.get("url"), f"files[{index}].url")
                if url:
                    return url
    return None


def _fill(r: _Reader, template: str, raw: Mapping[str, Any], record_id: str) -> str | None:
    """The template with the record's values (URL-quoted), or None when one is missing."""
    values: dict[str, str] = {"id": record_id}
    for name in KATO_URL_FIELDS[1:]:
        value = r.code(raw.get(name), name)
        if value:
            values[name] = value
    missing = [n for n in _PLACEHOLDER.findall(template) if n not in values]
    if missing:
        return None
    return _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), template)


def _kato_status(r: _Reader, value: Any) -> str | None:
    """A slug, from a string or from an object under any of the keys Laravel apps use."""
    if isinstance(value, Mapping):
        for key in ("key", "slug", "value", "code", "name", "label", "title"):
            text = r.text(value.get(key), f"status.{key}")
            if text:
                return slug(text) or None
        return None
    text = r.text(value, "status")
    return (slug(text) or None) if text else None


def _kato_property_types(r: _Reader, value: Any) -> tuple[str, ...]:
    found: list[str] = []
    for index, item in enumerate(r.items(value, "property_types")):
        where = f"property_types[{index}]"
        if isinstance(item, Mapping):
            text = r.text(item.get("key") or item.get("slug") or item.get("name"), where)
        else:
            text = r.text(item, where)
        key = slug(text) if text else ""
        if key and key not in found:
            found.append(key)
    return tuple(found)


def _kato_price(r: _Reader, value: Any) -> Price | None:
    block = r.mapping(value, "price")
    if block is None:
        return None
    on_application = bool(
        r.boolean(block.get("price_on_application"), "price.price_on_application")
    )
    amount, implied = r.amount(block.get("value"), "price.value")
    amount = amount or None  # 0 is how an empty price block says "no price"
    if amount is None and not on_application:
        return None
    qualifier = r.text(block.get("qualifier"), "price.qualifier")
    return Price(
        amount=None if on_application else amount,
        currency=r.currency(block.get("currency"), "price.currency") or implied or "GBP",
        unit=PriceUnit.TOTAL,
        on_application=on_application,
        qualifier=_words(qualifier) if qualifier else None,
    )


def _kato_rent(r: _Reader, value: Any) -> Price | None:
    block = r.mapping(value, "rent")
    if block is None:
        return None
    on_application = bool(r.boolean(block.get("rent_on_application"), "rent.rent_on_application"))
    low, implied_low = r.amount(block.get("from"), "rent.from")
    high, implied_high = r.amount(block.get("to"), "rent.to")
    low, high = low or None, high or None
    if low is None:
        low, high = high, None
    if low is not None and high is not None and high < low:
        r.fail("rent", f"range runs backwards ({low:g} to {high:g})")
    if low is None and not on_application:
        return None
    metric = r.text(block.get("metric"), "rent.metric") or _metric_hint(block.get("from"))
    unit = _rent_unit(metric)
    if unit is None:
        r.fail("rent.metric", f"unknown rent metric {_short(metric)}")
    currency = r.currency(block.get("currency"), "rent.currency")
    return Price(
        amount=None if on_application else low,
        amount_max=None if on_application or high == low else high,
        currency=currency or implied_low or implied_high or "GBP",
        unit=unit,
        on_application=on_application,
    )


def _metric_hint(value: Any) -> str | None:
    """The unit a formatted figure names itself (``"£45.00 psf"`` -> ``"psf"``)."""
    if not isinstance(value, str):
        return None
    words = _FIGURE.sub(" ", value).replace("£", " ").replace("$", " ").replace("€", " ")
    words = re.sub(r"(?i)\b(?:GBP|USD|EUR)\b", " ", words).strip(" -")
    return words or None


def _rent_unit(metric: str | None) -> PriceUnit | None:
    """Kato's rent metric as a unit; no metric means a yearly rent (UK commercial habit)."""
    if metric is None:
        return PriceUnit.PER_YEAR
    key = re.sub(r"[^a-z0-9]", "", metric.lower())
    if any(token in key for token in ("sqft", "psf", "ft2", "squarefo", "squarefe")):
        return PriceUnit.PER_SQFT
    if any(token in key for token in ("sqm", "m2", "psm", "squaremet")):
        return PriceUnit.PER_SQM
    if "desk" in key or "workstation" in key:
        return PriceUnit.PER_DESK
    if "month" in key or key in ("pcm", "pm"):
        return PriceUnit.PER_MONTH
    if any(token in key for token in ("annum", "year", "annual")) or key in ("pa", "pax"):
        return PriceUnit.PER_YEAR
    return None


_SIZE_FACTORS = {
    "sqft": 1.0,
    "sqm": SQM_TO_SQFT,
    "acres": ACRE_TO_SQFT,
    "hectares": HECTARE_TO_SQFT,
}
_SIZE_ALIASES = {
    "sqft": "sqft", "ft2": "sqft", "sqfeet": "sqft", "squarefeet": "sqft", "squarefoot": "sqft",
    "sqm": "sqm", "m2": "sqm", "squaremetres": "sqm", "squaremeters": "sqm",
    "acre": "acres", "acres": "acres", "ac": "acres",
    "hectare": "hectares", "hectares": "hectares", "ha": "hectares",
}  # fmt: skip


def _kato_size(r: _Reader, value: Any) -> tuple[float | None, float | None]:
    block = r.mapping(value, "size")
    if block is None:
        return None, None
    low, _ = r.amount(block.get("from"), "size.from", maximum=1e9)
    high, _ = r.amount(block.get("to"), "size.to", maximum=1e9)
    low, high = low or None, high or None
    if low is None:
        low, high = high, None
    if low is None:
        return None, None
    if high is not None and high < low:
        r.fail("size", f"range runs backwards ({low:g} to {high:g})")
    metric = r.text(block.get("metric"), "size.metric")
    unit = "sqft" if metric is None else _SIZE_ALIASES.get(re.sub(r"[^a-z0-9]", "", metric.lower()))
    if unit is None:
        # An unknown unit would make any figure a wrong fact; the listing itself is fine.
        return None, None
    factor = _SIZE_FACTORS[unit]
    return round(low * factor, 1), (round(high * factor, 1) if high is not None else None)


def _kato_summary(r: _Reader, value: Any) -> str | None:
    marketing = r.mapping(value, "marketing")
    if marketing is None:
        return None
    texts = r.items(marketing.get("text"), "marketing.text")
    chosen: Any = None
    for index, item in enumerate(texts):
        block = r.mapping(item, f"marketing.text[{index}]")
        if block is None or block.get("content") is None:
            continue
        if chosen is None or block.get("key") == "summary":
            chosen = block.get("content")
        if block.get("key") == "summary":
            break
    if chosen is not None:
        if not isinstance(chosen, str):
            r.fail("marketing.text.content", f"expected text, got {type(chosen).__name__}")
        return r.text(html_to_text(chosen), "marketing.text.content", multiline=True)
    points = [
        r.text(point, f"marketing.key_points[{index}]")
        for index, point in enumerate(r.items(marketing.get("key_points"), "marketing.key_points"))
    ]
    return "\n".join(point for point in points if point) or None


def _kato_photo(r: _Reader, value: Any) -> str | None:
    for index, image in enumerate(r.items(value, "images")):
        url = image.get("url") if isinstance(image, Mapping) else image
        text = r.url(url, f"images[{index}].url")
        if text:
            return text
    return None


def _kato_agent(r: _Reader, value: Any) -> str | None:
    for index, person in enumerate(r.items(value, "assignees")):
        block = r.mapping(person, f"assignees[{index}]")
        if block is None:
            continue
        names = [
            r.text(block.get(key), f"assignees[{index}].{key}") for key in ("forename", "surname")
        ]
        name = " ".join(part for part in names if part)
        office: Any = block.get("office")
        if isinstance(office, Mapping):
            office = office.get("name")
        office_name = r.text(office, f"assignees[{index}].office")
        if name:
            return f"{name}, {office_name}" if office_name else name
    return None
