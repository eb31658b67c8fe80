"""The Kato normalizer as it was before its fast paths (main at c3c5544), kept verbatim
but for one fix made to both since: a date a time zone moves before year 1 in UTC is a
dropped field, not an OverflowError out of the normalizer (which failed the whole poll).

``tests/test_kato_fast_paths.py`` checks that today's ``normalize_kato`` answers as this one
does (the same listing, the same problems) over the simulator's records in every PHP
shape: the speed-up changes no output. Nothing outside that test imports it. It uses
today's ``listingbot.text`` (``slug`` is now memoized: the same pure function).
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar
from urllib.parse import quote

from pydantic import ValidationError

from listingbot.config import KATO_URL_FIELDS
from listingbot.models import Listing, Price, PriceUnit
from listingbot.normalize import FieldProblem, MalformedRecord
from listingbot.text import cap, clean, slug

SQM_TO_SQFT = 10.7639
ACRE_TO_SQFT = 43_560.0
HECTARE_TO_SQFT = 107_639.1

MAX_MONEY = 1e10
SUMMARY_MAX_CHARS = 600
TITLE_MAX_CHARS = 140
FIELD_MAX_CHARS = 300  # any other text field (addresses, names)
URL_MAX_CHARS = 2048
RAW_TEXT_MAX_CHARS = 10_000
EARLIEST_YEAR, LATEST_YEAR = 1900, 2200

_CURRENCY_SYMBOLS = {"£": "GBP", "$": "USD", "€": "EUR"}
_AMOUNT = re.compile(r"-?\d+(?:\.\d+)?")
_HTML_BREAK = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6]|/tr)\b[^<>]*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?>")
FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")
_UNIT_DIGITS = re.compile(r"(?i)(?:ft|m)[2²]")
_LETTERS = re.compile(r"[A-Za-z0-9]")
_ON_APPLICATION = re.compile(r"(?i)\bpoa\b|on application|upon request")
_CURRENCY_CODES = tuple((code, re.compile(rf"\b{code}\b")) for code in ("GBP", "USD", "EUR"))
_BOOL_WORDS = {"1": True, "0": False, "true": True, "false": False, "yes": True, "no": False}


# A source's normalizer as the poller calls it: the raw record and where problems go.
Normalizer = Callable[[Mapping[str, Any], "list[FieldProblem] | None"], "Listing"]


class _BadField(ValueError):
    """A field that cannot be read; caught where the field is read, never escapes."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


# --- text ----------------------------------------------------------------------------------


def html_to_text(text: str) -> str:
    """Kato marketing text is HTML: tags out, breaks kept, entities decoded."""
    return html.unescape(_HTML_TAG.sub("", _HTML_BREAK.sub("\n", text)))


def short(value: Any) -> str:
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
                assert isinstance(reader, FieldReader)
                reader.report(err)
                result: _T = default
                return result

        return read

    return wrap


class FieldReader:
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

    # The readers below answer the common, well-formed value at once and hand anything
    # else to their checked (lenient) twin, which reports what it cannot read. Every
    # changed record goes through a few dozen of these: the checked path's wrapper and
    # isinstance checks against ABCs were a third of normalizing a Kato record.

    def text(self, value: Any, name: str, *, multiline: bool = False) -> str | None:
        if type(value) is not str:
            return None if value is None else self._text(value, name, multiline=multiline)
        # Every cap is far below this; cleaning a 100 kB description whole is wasted work.
        cleaned = clean(value[:RAW_TEXT_MAX_CHARS], multiline=multiline)
        if not multiline:
            cleaned = cap(cleaned, FIELD_MAX_CHARS)
        return cleaned or None

    def url(self, value: Any, name: str) -> str | None:
        """An http(s) URL, else None: a link nobody can follow is no fact worth skipping for."""
        if type(value) is not str:
            return None if value is None else self._url(value, name)
        return _http_url(value)

    def code(self, value: Any, name: str, *, digits: int = 0) -> str | None:
        """An identifier-like value (ZIP, MLS number) that may arrive as a number."""
        if type(value) is int:
            return str(value).zfill(digits)
        return self.text(value, name) if type(value) is str else self._code(value, name)

    def number(
        self,
        value: Any,
        name: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        kind = type(value)
        if kind is float or kind is int:
            number = float(value)
            if (
                math.isfinite(number)
                and (minimum is None or number >= minimum)
                and (maximum is None or number <= maximum)
            ):
                return number
        elif value is None:
            return None
        return self._number(value, name, minimum=minimum, maximum=maximum)

    def amount(
        self, value: Any, name: str, *, maximum: float = MAX_MONEY
    ) -> tuple[float | None, str | None]:
        """A non-negative amount, also from a formatted string, and the currency its symbol
        or code implies (see ``_amount``)."""
        kind = type(value)
        if kind is float or kind is int:
            number = float(value)
            if math.isfinite(number) and 0.0 <= number <= maximum:
                return number, None
        elif value is None:
            return None, None
        return self._amount(value, name, maximum=maximum)

    def boolean(self, value: Any, name: str) -> bool | None:
        """true/false, and PHP's forms of them: 0/1, "0"/"1", "true"/"false"."""
        if value is None or value is True or value is False:
            return value
        return self._boolean(value, name)

    def mapping(self, value: Any, name: str) -> Mapping[str, Any] | None:
        """An object; ``[]`` is how PHP writes an empty one."""
        if type(value) is dict or value is None:
            return value
        return self._mapping(value, name)

    def items(self, value: Any, name: str) -> Sequence[Any]:
        if type(value) is list:
            return value or ()
        return () if value is None else self._items(value, name)

    @_lenient(None)
    def _text(self, value: Any, name: str, *, multiline: bool = False) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected text, got {type(value).__name__}")
        # Every cap is far below this; cleaning a 100 kB description whole is wasted work.
        cleaned = clean(value[:RAW_TEXT_MAX_CHARS], multiline=multiline)
        if not multiline:
            cleaned = cap(cleaned, FIELD_MAX_CHARS)
        return cleaned or None

    @_lenient(None)
    def _url(self, value: Any, name: str) -> str | None:
        """An http(s) URL, else None: a link nobody can follow is no fact worth skipping for."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected a URL, got {type(value).__name__}")
        return _http_url(value)

    @_lenient(None)
    def _code(self, value: Any, name: str, *, digits: int = 0) -> str | None:
        """An identifier-like value (ZIP, MLS number) that may arrive as a number."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value).zfill(digits)
        return self.text(value, name)

    @_lenient(None)
    def _number(
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
                self.fail(name, f"expected a number, got {short(value)}")
            number = float(value)
        else:
            self.fail(name, f"expected a number, got {type(value).__name__}")
        return self._in_range(number, name, minimum, maximum)

    @_lenient((None, None))
    def _amount(
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
        for code, pattern in _CURRENCY_CODES:
            if pattern.search(upper):
                currency = code
        # Units with digits in them (ft2, m2) are no figure.
        figures = FIGURE.findall(_UNIT_DIGITS.sub(" ", text))
        if not figures:
            if not _LETTERS.search(text) or _ON_APPLICATION.search(text):
                return None, currency  # "", "£", "POA": no figure given, none to read
            self.fail(name, f"expected an amount, got {short(value)}")
        if len(figures) > 1:
            self.fail(name, f"more than one figure in {short(value)}")
        if re.search(r"-\s*[\d.]", text) and not re.search(r"\d\s*-", text):
            self.fail(name, f"{short(value)} is below 0")
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
            self.fail(name, f"expected a whole number, got {short(value)}")
        return int(number)

    @_lenient(None)
    def _boolean(self, value: Any, name: str) -> bool | None:
        """true/false, and PHP's forms of them: 0/1, "0"/"1", "true"/"false"."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        return self.fail(name, f"expected true or false, got {short(value)}")

    @_lenient(None)
    def when(self, value: Any, name: str) -> datetime | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected an ISO-8601 date-time, got {type(value).__name__}")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(name, f"not an ISO-8601 date-time: {short(value)}")
        # Naive times are UTC by both APIs' documentation.
        try:
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first datetime in UTC
            self.fail(name, f"implausible date {short(value)}")
        if not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
            self.fail(name, f"implausible date {short(value)}")
        return parsed

    @_lenient(None)
    def _mapping(self, value: Any, name: str) -> Mapping[str, Any] | None:
        """An object; ``[]`` is how PHP writes an empty one."""
        if isinstance(value, list) and not value:
            return {}
        if value is not None and not isinstance(value, Mapping):
            self.fail(name, f"expected an object, got {type(value).__name__}")
        return value

    @_lenient(())
    def _items(self, value: Any, name: str) -> Sequence[Any]:
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
            self.fail(name, f"not a currency code: {short(value)}")
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


def _http_url(value: str) -> str | None:
    url = clean(value)
    if (
        not url.lower().startswith(("http://", "https://"))
        or " " in url
        or len(url) > URL_MAX_CHARS
    ):
        return None
    return url


def read_record_id(raw: Mapping[str, Any]) -> str:
    value = raw.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        # Since 2026-12-03 a lone surrogate (Cs) is refused here too, on purpose (it is no
        # id the state file can hold): the oracle follows, as it is not a fast path.
        if len(text) > 200 or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
            raise MalformedRecord(None, f"id: unusable id {short(text)}")
        return text
    raise MalformedRecord(None, "id: missing or not a string/integer")


def build_listing(record_id: str, fields: dict[str, Any]) -> Listing:
    try:
        return Listing(**fields)
    except ValidationError as err:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors()[:3])
        raise MalformedRecord(record_id, f"does not fit the listing model ({where})") from None


def words(slug_text: str) -> str:
    return slug_text.replace("_", " ")


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def summary(text: str | None) -> str | None:
    return cap(text, SUMMARY_MAX_CHARS) if text else None


# --- kato.py's normalizer


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
    record_id = read_record_id(raw)
    r = FieldReader(record_id, problems)

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

    return build_listing(
        record_id,
        {
            "source": "kato",
            "id": record_id,
            "url": _kato_url(r, raw, record_id, listing_url),
            "title": _kato_title(record_id, name or line1, town, property_types),
            "summary": summary(r.guard(None, lambda: _kato_summary(r, raw.get("marketing")))),
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
        kind = capitalized(words(property_types[0])) if property_types else "Availability"
        title = f"{kind} in {town}" if town else f"{kind} {record_id}"
    return cap(clean(title), TITLE_MAX_CHARS)


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _kato_url(
    r: FieldReader, raw: Mapping[str, Any], record_id: str, template: str | None
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


def _fill(r: FieldReader, template: str, raw: Mapping[str, Any], record_id: str) -> str | None:
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


def _kato_status(r: FieldReader, value: Any) -> str | None:
    """A slug, from a string or from an object under any of the keys Laravel apps use."""
    if isinstance(value, Mapping):
        for key in ("key", "slug", "value", "code", "name", "label", "title"):
            text = r.text(value.get(key), f"status.{key}")
            if text:
                return slug(text) or None
        return None
    text = r.text(value, "status")
    return (slug(text) or None) if text else None


def _kato_property_types(r: FieldReader, value: Any) -> tuple[str, ...]:
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


def _kato_price(r: FieldReader, value: Any) -> Price | None:
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
        qualifier=words(qualifier) if qualifier else None,
    )


def _kato_rent(r: FieldReader, value: Any) -> Price | None:
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
        r.fail("rent.metric", f"unknown rent metric {short(metric)}")
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
    words = FIGURE.sub(" ", value).replace("£", " ").replace("$", " ").replace("€", " ")
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


def _kato_size(r: FieldReader, value: Any) -> tuple[float | None, float | None]:
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


def _kato_summary(r: FieldReader, value: Any) -> str | None:
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


def _kato_photo(r: FieldReader, value: Any) -> str | None:
    for index, image in enumerate(r.items(value, "images")):
        url = image.get("url") if isinstance(image, Mapping) else image
        text = r.url(url, f"images[{index}].url")
        if text:
            return text
    return None


def _kato_agent(r: FieldReader, value: Any) -> str | None:
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
