"""The configuration users write: YAML in, a validated and frozen ``Config`` out.

``load_config`` reads the file, ``parse_config`` does the rest: YAML with a few YAML 1.1
surprises switched off, ``${VAR}`` interpolation from the environment, validation by the
models below, and one ``ConfigError`` listing every problem by key path
(``subscriptions[1].filters.price_max: must be >= price_min (900000 < 1000000)``).
No message ever carries a secret or a value that came from the environment.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeAlias, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from listingbot.errors import ConfigError
from listingbot.models import SOURCES, EventType, Source
from listingbot.normalize import slug
from listingbot.quiet import QuietHours, QuietHoursError
from listingbot.sources.kato import KATO_URL_FIELDS
from listingbot.templates import Template, TemplateError, cached_template, parse_template

__all__ = [
    "KATO_PROPERTY_TYPES",
    "KATO_STATUSES",
    "KOTOHOMES_PROPERTY_TYPES",
    "US_STATE_CODES",
    "ChatKittyConfig",
    "Config",
    "DeliveryConfig",
    "KatoConfig",
    "KatoFilters",
    "KotohomesConfig",
    "KotohomesFilters",
    "LocalFilters",
    "LogConfig",
    "OpsConfig",
    "SourcesConfig",
    "StateConfig",
    "Subscription",
    "config_warnings",
    "load_config",
    "parse_config",
    "parse_interval",
]

Loc: TypeAlias = tuple[str | int, ...]

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

# Fields whose values are secrets: never echoed, even when written literally in the file.
_SECRET_KEYS = frozenset({"key", "client_id", "client_secret"})
_MAX_PROBLEMS = 40
# Aliases can make a tiny file expand enormously when walked. Without aliases every node
# takes at least one character of the file, so a budget of max(floor, file length) admits
# any honest file (10,000 subscriptions included) and still stops an alias bomb.
_MAX_NODES = 100_000


# --------------------------------------------------------------------------- problems


def _problem(text: str, safe: str | None = None) -> PydanticCustomError:
    """A validation error; ``safe`` is the wording without the offending value."""
    return PydanticCustomError("listingbot", "{text}", {"text": text, "safe": safe or text})


@dataclass
class _Problems:
    """Problems found by one validator at several places below its own location."""

    items: list[tuple[Loc, str, str]] = field(default_factory=list)

    def add(self, where: Loc, text: str, safe: str | None = None) -> None:
        self.items.append((where, text, safe or text))

    def raise_if_any(self) -> None:
        if self.items:
            raise PydanticCustomError(
                "listingbot_problems",
                "{summary}",
                {"summary": self.items[0][2], "problems": tuple(self.items)},
            )


def _show(value: object) -> str:
    """A short rendering of a user-written value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return _num(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _num(value: float) -> str:
    """Numbers as people write them: ``3`` not ``3.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- scalar types


def _not_bool(value: Any) -> Any:
    # pydantic would read true as 1; in a config file that is always a mistake.
    if isinstance(value, bool):
        raise _problem(f"expected a number (got {_show(value)})", "expected a number")
    return value


_Int = Annotated[int, BeforeValidator(_not_bool)]
_Float = Annotated[float, BeforeValidator(_not_bool)]
NonNegInt = Annotated[_Int, Field(ge=0)]
NonNegFloat = Annotated[_Float, Field(ge=0)]
PosFloat = Annotated[_Float, Field(gt=0)]

_INTERVAL_RE = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h|d))+")
_INTERVAL_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTERVAL_HINT = "(use e.g. 30s, 5m, 1h)"


def parse_interval(value: object, *, allow_zero: bool = False) -> timedelta:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"1.5s"``, ``"500ms"``, ``"2d"`` or seconds.

    Raises a pydantic custom error (a ``ValueError``) whose text quotes the value.
    """
    seconds: float
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _problem(
            f"invalid interval {_show(value)} {_INTERVAL_HINT}",
            f"invalid interval {_INTERVAL_HINT}",
        )
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            if not _INTERVAL_RE.fullmatch(text):
                raise _problem(
                    f"invalid interval {value!r} {_INTERVAL_HINT}",
                    f"invalid interval {_INTERVAL_HINT}",
                ) from None
            parts = _INTERVAL_PART_RE.findall(text)
            units = [unit for _, unit in parts]
            if len(set(units)) != len(units):
                raise _problem(
                    f"invalid interval {value!r}: a unit appears twice {_INTERVAL_HINT}",
                    f"invalid interval: a unit appears twice {_INTERVAL_HINT}",
                ) from None
            seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    if not math.isfinite(seconds):
        raise _problem(
            f"invalid interval {_show(value)} {_INTERVAL_HINT}",
            f"invalid interval {_INTERVAL_HINT}",
        )
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise _problem(f"must be {bound} (got {_show(value)})", f"must be {bound}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise _problem("interval is too large") from None


def _interval(value: object) -> timedelta:
    return parse_interval(value)


def _interval_or_zero(value: object) -> timedelta:
    return parse_interval(value, allow_zero=True)


Interval = Annotated[timedelta, BeforeValidator(_interval)]
Jitter = Annotated[timedelta, BeforeValidator(_interval_or_zero)]


def _http_url(value: str) -> str:
    # Never echo a URL: it may carry credentials (user:password@host).
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _problem("must be an http(s) URL, e.g. https://api.example.com")
    if parts.username or parts.password:
        raise _problem("must not contain credentials; put them in the client_id/secret keys")
    if parts.query or parts.fragment:
        raise _problem("must not contain a query string or fragment")
    return value.strip().rstrip("/")


def _secret_ok(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    if not raw:
        raise _problem("must not be empty")
    if raw != raw.strip():
        raise _problem("has leading or trailing whitespace (check the variable or the file)")
    return value


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    """Frozen, strict about unknown keys, and no NaN/inf sneaking in as a number."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        # cached_property values live in __dict__ beside the fields; a copy must recompute.
        for name in [n for n in copy.__dict__ if n not in type(self).model_fields]:
            del copy.__dict__[name]
        return copy


class StateConfig(_Model):
    """Where the SQLite state lives, and when what it holds is forgotten."""

    path: Path
    # Unseen this long: a listing is checked for (not forgotten), sent messages are
    # compacted, unconfigured subscriptions and unpolled queries are forgotten.
    retention: Interval = timedelta(days=30)
    # Kotohomes: long-unseen listings asked about (GET /v1/listings/{id}) per poll.
    gone_checks_per_poll: Annotated[_Int, Field(ge=0, le=1000)] = 5
    # Kato: complete sweeps in a row without a listing before it is forgotten.
    gone_after_sweeps: Annotated[_Int, Field(ge=1, le=1000)] = 3

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str | Path):
            raise _problem(f"expected a file path (got {_show(value)})", "expected a file path")
        text = str(value).strip()
        if not text:
            raise _problem("must not be empty")
        path = Path(text).expanduser()
        base_dir = (info.context or {}).get("base_dir")
        # Relative to the config file, so the service finds its state whatever its cwd is.
        if not path.is_absolute() and isinstance(base_dir, Path):
            path = base_dir / path
        return path


class ChatKittyConfig(_Model):
    """The destination: ChatKitty's Platform API and its client-credentials login."""

    api_url: str
    path_prefix: str = "/v1"
    token_url: str
    client_id: SecretStr
    client_secret: SecretStr
    timeout_s: PosFloat = 30.0

    @field_validator("api_url", "token_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        text = value.strip().rstrip("/")
        if text and not text.startswith("/"):
            raise _problem(
                f"must be empty or start with '/' (got {value!r}), e.g. /v1",
                "must be empty or start with '/', e.g. /v1",
            )
        if any(ch.isspace() or ch in "?#" for ch in text):
            raise _problem("must be a plain path such as /v1 or /v1/applications/<id>")
        return text

    @field_validator("client_id", "client_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return _secret_ok(value)


class KotohomesConfig(_Model):
    """The Kotohomes Listing API (US homes)."""

    api_url: str = "https://api.kotohomes.com"
    key: SecretStr
    poll_interval: Interval = timedelta(minutes=5)
    poll_jitter: Jitter = timedelta(seconds=10)
    limit: Annotated[_Int, Field(ge=1, le=50)] = 50
    # states=NY (today's form) / states[]=NY (the seed's, deprecated but still accepted)
    array_style: Literal["brackets", "repeat"] = "repeat"
    # sort_by of the new-listings search; an explicit direction only today's API knows
    created_sort: Literal["created_at", "created_at desc", "created_at asc"] = "created_at"
    min_request_interval_s: NonNegFloat = 0.0  # no documented rate limit: pace politely
    timeout_s: PosFloat = 30.0

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("key")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return _secret_ok(value)


class KatoConfig(_Model):
    """The Kato Client API (UK commercial availability)."""

    # Production (documented default); the sandbox is client-api.integrations.kato-sandbox.app
    api_url: str = "https://client-api.kato.app"
    api_version: Literal["v1", "v2"] = "v2"
    token_path: str = "/oauth/token"  # noqa: S105 - a URL path, not a secret
    client_id: SecretStr
    client_secret: SecretStr
    scope: str = "*"
    poll_interval: Interval = timedelta(minutes=10)
    poll_jitter: Jitter = timedelta(seconds=10)
    requests_per_minute: Annotated[_Int, Field(ge=1, le=6000)] = 60
    # The seed's changelog: "Availability: Pagination limit changed to 50" - the maximum.
    page_size: Annotated[_Int, Field(ge=1, le=50)] = 50
    timeout_s: PosFloat = 30.0
    # The link posted for a listing (records carry none): a template over {id},
    # {reference_number} and {external_ref}. Without one: the brochure/particulars file.
    listing_url: str | None = None

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("listing_url")
    @classmethod
    def _listing_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        names = re.findall(r"\{([^{}]*)\}", text)
        unknown = [n for n in names if n not in KATO_URL_FIELDS]
        if unknown:
            known = ", ".join("{" + n + "}" for n in KATO_URL_FIELDS)
            raise _problem(f"unknown placeholder {{{unknown[0]}}} (use {known})")
        parts = urlsplit(re.sub(r"\{[^{}]*\}", "x", text))
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise _problem(
                "must be an http(s) URL template, e.g. "
                "https://agency.example/property/{reference_number}"
            )
        return text

    @field_validator("token_path")
    @classmethod
    def _token_path(cls, value: str) -> str:
        text = value.strip()
        if not text.startswith("/") or any(ch.isspace() or ch in "?#" for ch in text):
            raise _problem("must be a path starting with '/', e.g. /oauth/token")
        return text

    @field_validator("client_id", "client_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return _secret_ok(value)


class SourcesConfig(_Model):
    """The listing sources; configure at least one."""

    kotohomes: KotohomesConfig | None = None
    kato: KatoConfig | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> SourcesConfig:
        if self.kotohomes is None and self.kato is None:
            raise _problem("configure at least one source: kotohomes or kato")
        return self

    def configured(self) -> tuple[Source, ...]:
        """The names of the configured sources, in ``SOURCES`` order."""
        return tuple(s for s in SOURCES if getattr(self, s) is not None)


class OpsConfig(_Model):
    """The health/metrics endpoint and the outbox-age readiness threshold."""

    listen: str | None = "127.0.0.1:9108"  # "host:port", or null to switch the endpoint off
    max_outbox_age: Interval = timedelta(minutes=15)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        if value is None or value is False:
            return None
        if not isinstance(value, str):
            raise _problem(
                f'expected "host:port" or null (got {_show(value)})', 'expected "host:port" or null'
            )
        text = value.strip()
        if text.lower() in {"", "off", "false", "null", "none"}:
            return None
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise _problem(
                f'must be "host:port", e.g. 127.0.0.1:9108 (got {value!r})',
                'must be "host:port", e.g. 127.0.0.1:9108',
            )
        return text


class DeliveryConfig(_Model):
    """How the outbox is drained into ChatKitty."""

    interval: Interval = timedelta(seconds=30)
    concurrency: Annotated[_Int, Field(ge=1, le=64)] = 4
    # Accepted so that existing configs keep loading; unused since messages give up by
    # age (give_up_after), not by counting attempts (a refusal is not a failed attempt).
    max_attempts: Annotated[_Int, Field(ge=1)] = 12
    backoff_base_s: PosFloat = 2.0
    backoff_max_s: PosFloat = 600.0
    grace_period_s: NonNegFloat = 10.0
    # Most messages one reconciliation reads back through a channel before it gives up
    # for now (the outcome then stays unknown and is searched for again later).
    reconcile_lookback: Annotated[_Int, Field(ge=1)] = 10_000
    give_up_after: Interval = timedelta(hours=24)  # a message undelivered this long fails
    # How long after the request timeout ChatKitty may still store a send it was handling:
    # a send of unknown outcome is not concluded "not sent" sooner after its claim.
    late_store_margin_s: NonNegFloat = 60.0

    @model_validator(mode="after")
    def _backoff(self) -> DeliveryConfig:
        problems = _Problems()
        if self.backoff_max_s < self.backoff_base_s:
            problems.add(
                ("backoff_max_s",),
                f"must be >= backoff_base_s ({_num(self.backoff_max_s)} < "
                f"{_num(self.backoff_base_s)})",
                "must be >= backoff_base_s",
            )
        if self.give_up_after.total_seconds() < self.backoff_max_s:
            problems.add(
                ("give_up_after",),
                f"must be at least backoff_max_s ({_num(self.give_up_after.total_seconds())}s"
                f" < {_num(self.backoff_max_s)}s): a message must get more than one try",
                "must be >= backoff_max_s",
            )
        problems.raise_if_any()
        return self


class LogConfig(_Model):
    """Log level and format (``auto``: JSON unless stdout is a terminal)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


# --------------------------------------------------------------------------- filters


def _casefold_unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v.strip().casefold() for v in values if v.strip()}))


def _postcode(value: str) -> str:
    return "".join(value.split()).upper()


class LocalFilters(_Model):
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
    problems = _Problems()
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


def _check_range(problems: _Problems, model: BaseModel, low: str, high: str) -> None:
    lo, hi = getattr(model, low), getattr(model, high)
    if lo is not None and hi is not None and lo > hi:
        problems.add((high,), f"must be >= {low} ({_num(hi)} < {_num(lo)})", f"must be >= {low}")


def _param_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _num(value)
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


class KotohomesFilters(_Model):
    """Kotohomes query parameters (sent upstream) plus the keyword filters (local)."""

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
    latitude: Annotated[_Float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[_Float, Field(ge=-180, le=180)] | None = None
    radius: PosFloat | None = None  # miles
    territory: str | None = None  # a predefined Kotohomes territory id (later docs)
    type: Literal["for_sale", "for_rent"] | None = None
    open_houses_only: bool | None = None
    keywords_any: tuple[str, ...] = ()
    keywords_none: tuple[str, ...] = ()

    _to_list = field_validator(
        "mls_numbers",
        "property_types",
        "states",
        "zip_codes",
        "keywords_any",
        "keywords_none",
        mode="before",
    )(_as_list)

    @field_validator("mls_numbers")
    @classmethod
    def _nonempty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _nonempty_item)

    @field_validator("keywords_any", "keywords_none")
    @classmethod
    def _keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _keyword)

    @field_validator("states")
    @classmethod
    def _states(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _state)

    @field_validator("territory")
    @classmethod
    def _territory(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if not text or any(ch.isspace() for ch in text):
            raise _problem(
                f"{value!r} is not a territory id (one word, as Kotohomes gives it)",
                "not a territory id (one word, as Kotohomes gives it)",
            )
        return text

    @field_validator("zip_codes")
    @classmethod
    def _zips(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _zip)

    @field_validator("property_types")
    @classmethod
    def _types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _kotohomes_type)

    @model_validator(mode="after")
    def _rules(self) -> KotohomesFilters:
        problems = _Problems()
        for stem in ("price", "living_area", "year_built", "bedrooms", "bathrooms"):
            _check_range(problems, self, f"{stem}_min", f"{stem}_max")
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
        problems.raise_if_any()
        return self

    def upstream_params(self) -> tuple[tuple[str, str], ...]:
        """Canonical ``(name, value)`` pairs sent to Kotohomes (names without ``[]``)."""
        return self._upstream

    @cached_property
    def _upstream(self) -> tuple[tuple[str, str], ...]:
        local = {"keywords_any", "keywords_none"}
        return _params(self, (n for n in type(self).model_fields if n not in local))

    @cached_property
    def local(self) -> LocalFilters:
        return LocalFilters(keywords_any=self.keywords_any, keywords_none=self.keywords_none)


class KatoFilters(_Model):
    """Kato availability filters: three sent upstream, the rest applied locally."""

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

    _to_list = field_validator(
        "status",
        "keywords_any",
        "keywords_none",
        "property_types",
        "postcode_prefixes",
        mode="before",
    )(_as_list)

    @field_validator("keywords_any", "keywords_none")
    @classmethod
    def _keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _keyword)

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _kato_known("status", KATO_STATUSES))

    @field_validator("property_types")
    @classmethod
    def _types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _kato_known("property type", KATO_PROPERTY_TYPES))

    @field_validator("postcode_prefixes")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_items(value, _postcode_prefix)

    @model_validator(mode="after")
    def _rules(self) -> KatoFilters:
        problems = _Problems()
        _check_range(problems, self, "size_min", "size_max")
        problems.raise_if_any()
        return self

    def upstream_params(self) -> tuple[tuple[str, str], ...]:
        """Canonical ``(name, value)`` pairs sent to Kato."""
        return self._upstream

    @cached_property
    def _upstream(self) -> tuple[tuple[str, str], ...]:
        return _params(self, ("status", "published_to_website", "api_controlled"))

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


_FILTERS_BY_SOURCE: dict[str, type[KotohomesFilters] | type[KatoFilters]] = {
    "kotohomes": KotohomesFilters,
    "kato": KatoFilters,
}

# Keys people put into filters that belong to listingbot (or to sources.*).
_RESERVED_FILTER_KEYS: dict[str, dict[str, str]] = {
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


# --------------------------------------------------------------------------- subscription

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_EVENTS = ", ".join(e.value for e in EventType)


class Subscription(_Model):
    """One saved search: which source, which filters, which channel, which events."""

    name: str
    source: Source
    channel: int | str  # a channel id, or a channel name resolved at start-up
    filters: KotohomesFilters | KatoFilters
    notify: frozenset[EventType] = frozenset(EventType)
    first_run: Literal["baseline", "post"] = "baseline"
    # Per subscription (README "Messages"): a template for its messages, one for every
    # event or one per event; quiet hours on the wall clock of ``timezone``.
    template: str | tuple[tuple[EventType, str], ...] | None = None
    quiet_hours: str | None = None
    timezone: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_filters(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("filters") is None:
            return {**data, "filters": {}}
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise _problem(
                f"expected a string (got {_show(value)}; put it in quotes)", "expected a string"
            )
        if not _NAME_RE.fullmatch(value):
            raise _problem(
                f"{value!r} is not a valid name: 1-64 characters of letters, digits, '_', '.', '-'",
                "not a valid name: 1-64 characters of letters, digits, '_', '.', '-'",
            )
        return value

    @field_validator("channel", mode="plain")
    @classmethod
    def _channel(cls, value: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.strip():
            text = value.strip()
            # ${CHANNEL_ID} always interpolates to a string; digits are an id, not a name.
            return int(text) if text.isdigit() and int(text) > 0 else text
        raise _problem(
            f"expected a channel id (a positive integer) or a channel name (got {_show(value)})",
            "expected a channel id (a positive integer) or a channel name",
        )

    @field_validator("filters", mode="wrap")
    @classmethod
    def _filters(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> KotohomesFilters | KatoFilters:
        model = _FILTERS_BY_SOURCE.get(info.data.get("source", ""))
        if model is None:
            # The source itself is wrong and reported; these filters cannot be judged.
            return KatoFilters()
        return model.model_validate(value)

    @field_validator("notify", mode="before")
    @classmethod
    def _notify(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple | set | frozenset):
            raise _problem(
                f"expected a list of events ({_EVENTS})", f"expected a list of events ({_EVENTS})"
            )
        if not value:
            raise _problem(f"must name at least one event ({_EVENTS})")
        problems = _Problems()
        for i, item in enumerate(value):
            if not isinstance(item, str) or item.strip().lower() not in set(EventType):
                problems.add(
                    (i,),
                    f"unknown event {_show(item)} (use {_EVENTS})",
                    f"unknown event (use {_EVENTS})",
                )
        problems.raise_if_any()
        return frozenset(EventType(str(item).strip().lower()) for item in value)

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        who = (
            f"subscription {info.data['name']!r}: "
            if isinstance(info.data.get("name"), str)
            else ""
        )
        if isinstance(value, str):
            try:
                parse_template(value)
            except TemplateError as err:
                raise _problem(f"{who}{err}") from None
            return value
        if not isinstance(value, Mapping) or not value:
            raise _problem(
                f"expected a template (text), or a mapping of events to templates ({_EVENTS})"
            )
        problems = _Problems()
        names = [e.value for e in EventType]
        out: dict[EventType, str] = {}
        for event, text in value.items():
            where = (str(event),)
            name = str(event).strip().lower()
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.add(where, f"unknown event {_show(event)} ({hint}events: {_EVENTS})")
                continue
            if not isinstance(text, str):
                problems.add(where, f"expected a template (text), got {_show(text)}")
                continue
            try:
                parse_template(text)
            except TemplateError as err:
                problems.add(where, f"{who}{err}")
                continue
            out[EventType(name)] = text
        problems.raise_if_any()
        return tuple(out.items())

    @field_validator("quiet_hours", mode="before")
    @classmethod
    def _quiet_hours(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _problem(
                f'expected HH:MM-HH:MM in quotes, e.g. "22:00-07:00" (got {_show(value)})'
            )
        try:
            return str(QuietHours.parse(value))
        except QuietHoursError as err:
            raise _problem(str(err)) from None

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise _problem(
                f"expected an IANA time zone name, e.g. America/New_York (got {_show(value)})"
            )
        name = value.strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise _problem(
                f"unknown time zone {name!r} ({hint}use an IANA name, e.g. America/New_York)"
            ) from None
        return name

    @cached_property
    def quiet(self) -> QuietHours | None:
        """The parsed ``quiet_hours``."""
        return QuietHours.parse(self.quiet_hours) if self.quiet_hours else None

    @cached_property
    def zone(self) -> tzinfo:
        """``timezone`` (UTC when not set)."""
        return ZoneInfo(self.timezone) if self.timezone else UTC

    def template_for(self, event: EventType) -> Template | None:
        """This subscription's template for ``event``, or None (the default)."""
        if isinstance(self.template, str):
            return cached_template(self.template)
        for kind, text in self.template or ():
            if kind is event:
                return cached_template(text)
        return None

    def upstream_params(self) -> tuple[tuple[str, str], ...]:
        """Canonical, sorted ``(name, value)`` pairs of the filters sent upstream."""
        return self.filters.upstream_params()

    @property
    def local(self) -> LocalFilters:
        """The filters listingbot applies itself."""
        return self.filters.local

    @cached_property
    def filter_hash(self) -> str:
        """A short, stable hash of what this subscription selects (changes on any edit)."""
        payload = {
            "source": self.source,
            "upstream": [list(p) for p in self.upstream_params()],
            "local": self.local.model_dump(mode="json"),
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- config


def _cross_problems(subs: Iterable[tuple[int, Any, Any]], configured: set[str]) -> _Problems:
    """Duplicate names and subscriptions to unconfigured sources.

    Works on raw values too, so these are reported even when other keys are invalid.
    """
    problems = _Problems()
    first: dict[str, int] = {}
    for i, name, source in subs:
        if isinstance(name, str):
            if name in first:
                problems.add(
                    ("subscriptions", i, "name"),
                    f"duplicate name {name!r} (also subscriptions[{first[name]}].name)",
                )
            else:
                first[name] = i
        if source in SOURCES and source not in configured:
            problems.add(
                ("subscriptions", i, "source"),
                f"{source!r} is not configured under sources (add sources.{source})",
            )
    return problems


class Config(_Model):
    """The whole configuration file."""

    state: StateConfig
    chatkitty: ChatKittyConfig
    sources: SourcesConfig
    subscriptions: tuple[Subscription, ...]
    ops: OpsConfig = OpsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    log: LogConfig = LogConfig()

    @field_validator("subscriptions", mode="before")
    @classmethod
    def _some_subscriptions(cls, value: Any) -> Any:
        # Checked on the raw list: a length constraint would count only the valid items.
        if isinstance(value, list | tuple) and not value:
            raise _problem("at least one subscription is required")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        subs = ((i, s.name, s.source) for i, s in enumerate(self.subscriptions))
        _cross_problems(subs, set(self.sources.configured())).raise_if_any()
        return self

    def subscriptions_for(self, source: Source) -> tuple[Subscription, ...]:
        """The subscriptions that read from ``source``, in file order."""
        return tuple(s for s in self.subscriptions if s.source == source)


# --------------------------------------------------------------------------- warnings


def config_warnings(config: Config) -> list[str]:
    """What is valid but probably not what was meant, by key path (``check-config``)."""
    out: list[str] = []
    for i, sub in enumerate(config.subscriptions):
        where = f"subscriptions[{i}].filters"
        filters = sub.filters
        if isinstance(filters, KotohomesFilters):
            geo = filters.latitude is not None
            if filters.states and not (
                filters.zip_codes or filters.mls_numbers or filters.territory or geo
            ):
                out.append(
                    f"{where}: today's Kotohomes API refuses a search by states alone (400); "
                    "add zip_codes, territory, mls_numbers or latitude + longitude + radius"
                )
            continue
        for name, values, known in (
            ("status", filters.status, KATO_STATUSES),
            ("property_types", filters.property_types, KATO_PROPERTY_TYPES),
        ):
            for j, value in enumerate(values):
                if value not in known:
                    out.append(
                        f"{where}.{name}[{j}]: {value!r} is not a value listingbot knows "
                        f"(known: {', '.join(known)}); Kato does not document the list, so "
                        "check that your listings carry it"
                    )
    return out


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's traps, and strict about duplicate keys.

    Only true/false are booleans (``NO``, ``on``, ``off`` stay strings) and numbers with a
    leading zero stay strings (YAML 1.1 reads the ZIP code 07030 as octal 3608).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in {_BOOL_TAG, _INT_TAG}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # Only the parser's own words: its snippet of the line could show a secret.
        what = "; ".join(p for p in (err.context, err.problem) if p) or "cannot parse"
        raise ConfigError(f"YAML syntax error{where}: {what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"YAML error: {type(err).__name__}") from None


# --------------------------------------------------------------------------- ${VAR}

_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class _Interpolated:
    data: Any
    tainted: dict[Loc, str] = field(default_factory=dict)  # path -> the text as written
    secrets: set[str] = field(default_factory=set)  # values that must never be printed
    problems: list[str] = field(default_factory=list)


def _fmt_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.from_files: set[str] = set()

    def lookup(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is not None:
            return value
        file_name = self.env.get(f"{name}_FILE")
        if file_name is None:
            return None
        try:
            content = Path(file_name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "unreadable"
            raise ConfigError(f"{name}_FILE names a file that cannot be read ({reason})") from None
        content = content.removesuffix("\n").removesuffix("\r")
        self.from_files.add(content)
        return content


def _substitute(text: str, env: _Env) -> tuple[str, list[str]]:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$``; returns the names missing."""
    out: list[str] = []
    missing: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text) or text[i + 1] not in "${":
            out.append(ch)
            i += 1
            continue
        if text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        end = text.find("}", i + 2)
        if end < 0:
            raise ConfigError("unterminated ${ (write $$ for a literal $)")
        ref = text[i + 2 : end]
        name, sep, default = ref.partition(":-")
        if not _VAR_NAME_RE.fullmatch(name):
            raise ConfigError(f"invalid variable reference ${{{ref}}}")
        value = env.lookup(name)
        if sep and not value:
            value = default
        if value is None:
            missing.append(name)
            value = ""
        out.append(value)
        i = end + 1
    return "".join(out), missing


def _bare_variable(text: str) -> bool:
    """True when ``text`` holds ``$NAME`` (not ``${NAME}``, not the escape ``$$``)."""
    i = 0
    while i < len(text) - 1:
        if text[i] == "$":
            if text[i + 1] == "$":
                i += 2
                continue
            if text[i + 1] == "_" or text[i + 1].isalpha():
                return True
        i += 1
    return False


def _interpolate(
    data: Any, env: Mapping[str, str], *, max_nodes: int = _MAX_NODES
) -> _Interpolated:
    result = _Interpolated(data=None)
    lookup = _Env(env)
    budget = [max_nodes]

    def walk(node: Any, loc: Loc) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError("the file is too large or expands too much through aliases")
        if isinstance(node, dict):
            return {str(k): walk(v, (*loc, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and loc and loc[-1] in _SECRET_KEYS and _bare_variable(node):
            # "$KEY" would be taken literally and sent as the secret: refuse it.
            whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", node.strip())
            name = whole.group(1) if whole else "NAME"
            result.problems.append(
                f"{_fmt_loc(loc)}: looks like an environment variable without braces; "
                f"write ${{{name}}} (or $$ for a literal $)"
            )
            return node
        if isinstance(node, str) and "$" in node:
            try:
                value, missing = _substitute(node, lookup)
            except ConfigError as err:
                result.problems.append(f"{_fmt_loc(loc)}: {err}")
                return node
            for name in missing:
                result.problems.append(
                    f"{_fmt_loc(loc)}: environment variable {name} is not set (nor {name}_FILE)"
                )
            if value != node:
                result.tainted[loc] = node
                if loc and loc[-1] in _SECRET_KEYS:
                    result.secrets.add(value)
            return value
        if isinstance(node, str) and loc and loc[-1] in _SECRET_KEYS:
            result.secrets.add(node)
        return node

    try:
        result.data = walk(data, ())
    except RecursionError:
        raise ConfigError("the file nests too deeply") from None
    result.secrets |= lookup.from_files
    return result


# --------------------------------------------------------------------------- messages

_TYPE_WORDS = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
    "dict_type": "expected a mapping (key: value lines)",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "set_type": "expected a list",
    "frozen_set_type": "expected a list",
    "finite_number": "expected a finite number",
}


def _model_fields_at(loc: Loc, raw: Any) -> tuple[type[BaseModel] | None, str | None]:
    """The model that owns the last key of ``loc``, and the subscription's source if any."""
    model: type[BaseModel] | None = Config
    node = raw
    source: str | None = None
    for part in loc[:-1]:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("source"), str):
                source = node["source"]
            continue
        node = node.get(part) if isinstance(node, dict) else None
        if model is None or part not in model.model_fields:
            return None, source
        if model is Subscription and part == "filters":
            model = _FILTERS_BY_SOURCE.get(source or "")
        else:
            model = _inner_model(model.model_fields[part].annotation)
    return model, source


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in {Union, types.UnionType, tuple, Annotated}:
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _unknown_key(loc: Loc, raw: Any) -> str:
    key = str(loc[-1])
    model, source = _model_fields_at(loc, raw)
    if model is None:
        return f"unknown key {key!r}"
    names = sorted(model.model_fields)
    allowed = f"(allowed: {', '.join(names)})"
    if model in {KotohomesFilters, KatoFilters} and source in _RESERVED_FILTER_KEYS:
        reason = _RESERVED_FILTER_KEYS[source].get(key)
        if reason:
            return f"unknown key {key!r} - not a filter: {reason}"
        if key.endswith("[]") and key[:-2] in names:
            return f"unknown key {key!r}; write {key[:-2]!r} (listingbot adds the [] itself)"
        other = "kato" if source == "kotohomes" else "kotohomes"
        if key in _FILTERS_BY_SOURCE[other].model_fields:
            return f"unknown key {key!r} - a {other} filter, not a {source} one {allowed}"
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} {allowed}"


def _message(error: Any, raw: Any, safe: bool) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    loc: Loc = error["loc"]
    value = error.get("input")
    if kind == "listingbot":
        return str(ctx["safe"] if safe else ctx["text"])
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc, raw)
    if kind in _TYPE_WORDS:
        words = _TYPE_WORDS[kind]
        if safe:
            return words
        return f"{words} (got {_show(value)})"
    if kind in {"literal_error", "enum"}:
        expected = str(ctx.get("expected", ""))
        return f"must be {expected}" + ("" if safe else f" (got {_show(value)})")
    bounds = {
        "greater_than": ("> ", "gt"),
        "greater_than_equal": (">= ", "ge"),
        "less_than": ("< ", "lt"),
        "less_than_equal": ("<= ", "le"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        got = "" if safe else f" (got {_show(value)})"
        return f"must be {op}{_num(ctx[key])}{got}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    msg = str(error.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg.replace("Input should be", "should be")


def _is_tainted(loc: Loc, interp: _Interpolated) -> bool:
    if loc and loc[-1] in _SECRET_KEYS:
        return True
    n = len(loc)
    return any(path[:n] == loc or loc[: len(path)] == path for path in interp.tainted)


def _error_lines(err: ValidationError, interp: _Interpolated) -> list[str]:
    lines: list[str] = []
    for error in err.errors():
        loc: Loc = tuple(error["loc"])
        if error["type"] == "listingbot_problems":
            for where, text, safe_text in error["ctx"]["problems"]:
                full = (*loc, *where)
                shown = safe_text if _is_tainted(full, interp) else text
                lines.append(f"{_fmt_loc(full) or '(top level)'}: {shown}")
            continue
        message = _message(error, interp.data, _is_tainted(loc, interp))
        lines.append(f"{_fmt_loc(loc) or '(top level)'}: {message}")
    return lines


def _raw_cross_lines(data: Any) -> list[str]:
    """Cross-checks on the raw data, so they show up beside other problems."""
    subs = data.get("subscriptions")
    sources = data.get("sources")
    if not isinstance(subs, list) or not isinstance(sources, dict):
        return []
    configured = {k for k, v in sources.items() if isinstance(v, dict)}
    rows = ((i, s.get("name"), s.get("source")) for i, s in enumerate(subs) if isinstance(s, dict))
    return [f"{_fmt_loc(w)}: {t}" for w, t, _ in _cross_problems(rows, configured).items]


def _redact(text: str, secrets: Iterable[str]) -> str:
    # Belt and braces: messages are built not to echo secrets; this catches the rest.
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _config_error(source: str, lines: list[str], secrets: Iterable[str] = ()) -> ConfigError:
    unique = list(dict.fromkeys(lines))
    extra = len(unique) - _MAX_PROBLEMS
    shown = unique[:_MAX_PROBLEMS] + ([f"... and {extra} more"] if extra > 0 else [])
    plural = "s" if len(unique) != 1 else ""
    body = "\n".join(f"  {line}" for line in shown)
    text = f"{source}: invalid configuration ({len(unique)} problem{plural}):\n{body}"
    return ConfigError(_redact(text, secrets))


# --------------------------------------------------------------------------- entry points


def parse_config(
    text: str,
    *,
    env: Mapping[str, str] | None = None,
    source: str = "<config>",
    base_dir: Path | None = None,
) -> Config:
    """Parse, interpolate and validate configuration text.

    ``source`` names the file in messages; relative paths in the file (``state.path``)
    are resolved against ``base_dir`` when it is given.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    try:
        data = _load_yaml(text)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    if data is None:
        raise ConfigError(f"{source}: the configuration file is empty")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys "
            "(state, chatkitty, sources, subscriptions, ...), not a list or a single value"
        )
    try:
        interp = _interpolate(data, environ, max_nodes=max(_MAX_NODES, len(text)))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    if interp.problems:
        raise _config_error(source, interp.problems, interp.secrets)
    try:
        return Config.model_validate(interp.data, context={"base_dir": base_dir})
    except ValidationError as err:
        lines = _error_lines(err, interp) + _raw_cross_lines(interp.data)
        # ``from None``: the pydantic error quotes input values, secrets included.
        raise _config_error(source, lines, interp.secrets) from None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file at ``path``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{path}: cannot read the configuration file ({reason})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration file is not UTF-8 text") from None
    return parse_config(text, env=env, source=str(path), base_dir=path.parent)
