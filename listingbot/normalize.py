"""Reading raw upstream records: the lenient field reader both sources' normalizers use.

Each source's normalizer (``listingbot.sources.kotohomes``, ``listingbot.sources.kato``)
turns its raw records into the one frozen :class:`~listingbot.models.Listing` with the
readers here. Pure functions: no I/O, no clock. Reading is lenient field by field: a
field that cannot be read without guessing (bedrooms ``"three"``, a date of February
30th, a negative price) is dropped - the listing carries no value for it rather than a
wrong one - and reported as a :class:`FieldProblem` to the caller's ``problems`` list,
which counts and logs it. Only a record without a usable id (nothing to know it by) or
one that cannot form a listing at all raises :class:`MalformedRecord`; the caller skips
and counts that.

The readers take the forms both APIs use (Kato's is PHP/Laravel): ``[]`` is an empty
object, booleans arrive as ``0``/``1``/``"1"``, money as ``"£45.00 psf"``.

Text is cleaned here with :mod:`listingbot.text` (control characters, bidi overrides,
invalid surrogates, runs of whitespace, length caps); neutralizing chat mention syntax is
the message renderer's job.
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

from pydantic import ValidationError

from listingbot.models import Listing, Price
from listingbot.text import cap, clean

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
# The one figure of the money texts PHP writes most ("£54,300.00", "£45.00 psf", "1250.50"):
# what _amount reads of them, with no symbol but £, no code, no sign and no unit digits.
_PLAIN_MONEY = re.compile(r"(£?)(\d[\d,]*(?:\.\d+)?)(?: ps[fm])?")
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


def html_to_text(text: str) -> str:
    """Kato marketing text is HTML: tags out, breaks kept, entities decoded."""
    if "<" not in text and "&" not in text:
        return text  # no tag and no entity: nothing to take out or decode
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

    def read_or(self, default: _T, read: Callable[[FieldReader, Any], _T], value: Any) -> _T:
        """``read(self, value)``, or ``default`` when a field it reads cannot be read: a
        ``guard`` without a closure to build for each record (the field readers' way)."""
        try:
            return read(self, value)
        except _BadField as err:
            self.report(err)
            return default

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
        if len(value) <= FIELD_MAX_CHARS and value.isascii() and value.isprintable():
            # Most values: clean's own fast path (whitespace runs collapsed), and no cap
            # to apply, in this one call.
            return " ".join(value.split()) or None
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
        elif kind is str:
            plain = _PLAIN_MONEY.fullmatch(value)
            if plain is not None:
                number = float(plain[2].replace(",", ""))
                if number <= maximum:
                    return number, ("GBP" if plain[1] else None)
        return self._amount(value, name, maximum=maximum)

    def boolean(self, value: Any, name: str) -> bool | None:
        """true/false, and PHP's forms of them: 0/1, "0"/"1", "true"/"false"."""
        if value is None or value is True or value is False:
            return value
        if type(value) is int and value in {0, 1}:
            return value == 1
        return self._boolean(value, name)

    def when(self, value: Any, name: str) -> datetime | None:
        """An ISO-8601 date-time, in UTC (naive times are UTC by both APIs' documentation)."""
        if type(value) is str:
            text = value.strip()
            try:
                parsed = datetime.fromisoformat(text) if text else None
            except ValueError:
                parsed = None
            if parsed is not None and EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
                # Within those years, a time zone cannot move it out of datetime's range.
                parsed = (
                    parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
                )
                if EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
                    return parsed
        return self._when(value, name)

    def currency(self, value: Any, name: str) -> str | None:
        """A three-letter currency code (or the symbol of one)."""
        if type(value) is str and len(value) == 3 and value.isascii() and value.isupper():
            return value if value.isalpha() else self._currency(value, name)
        return self._currency(value, name)

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
    def _when(self, value: Any, name: str) -> datetime | None:
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
    def _currency(self, value: Any, name: str) -> str | None:
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
    return read_id(raw.get("id"))


def read_id(value: Any) -> str:
    """A record's ``id`` value as its id; raises MalformedRecord when it is none."""
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        # A control or a lone surrogate (JSON can escape one; UTF-8 cannot hold it) is no
        # id to keep, post or store: the record is skipped, the rest of the answer read.
        if len(text) > 200 or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
            raise MalformedRecord(None, f"id: unusable id {short(text)}")
        return text
    raise MalformedRecord(None, "id: missing or not a string/integer")


def build_listing(record_id: str, fields: dict[str, Any]) -> Listing:
    try:
        return Listing.model_validate(fields)
    except ValidationError as err:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors()[:3])
        raise MalformedRecord(record_id, f"does not fit the listing model ({where})") from None


# Every field of a Listing with its default (a required one's is a placeholder the
# normalizer always replaces), in the model's order.
_LISTING_DEFAULTS: dict[str, Any] = {
    name: field.default for name, field in Listing.model_fields.items()
}
_ID_MAX_CHARS = 200  # Listing.id's max_length
_set = object.__setattr__


def trusted_listing(record_id: str, fields: dict[str, Any]) -> Listing:
    """``build_listing`` for fields the normalizer's own readers produced, each already of
    its field's type (text cleaned, numbers finite floats, prices built as ``Price``):
    the Listing validation would make, without validating each value again.
    An id is the one text no reader cleaned: one that is not plain ASCII goes through
    validation (which refuses a lone surrogate), as does one too long (a huge integer).
    ``tests/test_kato_fast_paths.py`` holds the result to the validated one."""
    if len(record_id) > _ID_MAX_CHARS or not record_id.isascii():
        return build_listing(record_id, fields)
    listing = Listing.__new__(Listing)
    _set(listing, "__dict__", {**_LISTING_DEFAULTS, **fields})
    _set(listing, "__pydantic_fields_set__", set(fields))
    _set(listing, "__pydantic_extra__", None)
    _set(listing, "__pydantic_private__", None)
    return listing


# Every field of a Price with its default, in the model's order.
_PRICE_DEFAULTS: dict[str, Any] = {
    name: field.default for name, field in Price.model_fields.items()
}


def trusted_price(**fields: Any) -> Price:
    """``Price(**fields)`` for values the normalizer's own readers produced (amounts
    finite floats, the currency a code, the unit a ``PriceUnit``): the model validation
    would make, the same fields set, without validating each value again. A first sweep
    builds one or two a record. ``tests/test_kato_fast_paths.py`` holds the result to the
    validated one."""
    price = Price.__new__(Price)
    _set(price, "__dict__", {**_PRICE_DEFAULTS, **fields})
    _set(price, "__pydantic_fields_set__", set(fields))
    _set(price, "__pydantic_extra__", None)
    _set(price, "__pydantic_private__", None)
    return price


def words(slug_text: str) -> str:
    return slug_text.replace("_", " ")


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def summary(text: str | None) -> str | None:
    return cap(text, SUMMARY_MAX_CHARS) if text else None
