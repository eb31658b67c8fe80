"""The base model and the scalar types every section of the file is made of."""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping
from datetime import timedelta
from typing import Annotated, Any, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from listingbot.config._errors import problem, show


def _not_bool(value: Any) -> Any:
    # pydantic would read true as 1; in a config file that is always a mistake.
    if isinstance(value, bool):
        raise problem(f"expected a number (got {show(value)})", "expected a number")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
NonNegInt = Annotated[Int, Field(ge=0)]
NonNegFloat = Annotated[Float, Field(ge=0)]
PosFloat = Annotated[Float, Field(gt=0)]

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
        raise problem(
            f"invalid interval {show(value)} {_INTERVAL_HINT}",
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
                raise problem(
                    f"invalid interval {value!r} {_INTERVAL_HINT}",
                    f"invalid interval {_INTERVAL_HINT}",
                ) from None
            parts = _INTERVAL_PART_RE.findall(text)
            units = [unit for _, unit in parts]
            if len(set(units)) != len(units):
                raise problem(
                    f"invalid interval {value!r}: a unit appears twice {_INTERVAL_HINT}",
                    f"invalid interval: a unit appears twice {_INTERVAL_HINT}",
                ) from None
            seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    if not math.isfinite(seconds):
        raise problem(
            f"invalid interval {show(value)} {_INTERVAL_HINT}",
            f"invalid interval {_INTERVAL_HINT}",
        )
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise problem(f"must be {bound} (got {show(value)})", f"must be {bound}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise problem("interval is too large") from None


def _interval(value: object) -> timedelta:
    return parse_interval(value)


def _interval_or_zero(value: object) -> timedelta:
    return parse_interval(value, allow_zero=True)


Interval = Annotated[timedelta, BeforeValidator(_interval)]
Jitter = Annotated[timedelta, BeforeValidator(_interval_or_zero)]


def http_url(value: str) -> str:
    # Never echo a URL: it may carry credentials (user:password@host).
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise problem("must be an http(s) URL, e.g. https://api.example.com")
    if parts.username or parts.password:
        raise problem("must not contain credentials; put them in the client_id/secret keys")
    if parts.query or parts.fragment:
        raise problem("must not contain a query string or fragment")
    return value.strip().rstrip("/")


def secret_ok(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    if not raw:
        raise problem("must not be empty")
    if raw != raw.strip():
        raise problem("has leading or trailing whitespace (check the variable or the file)")
    return value


_T = TypeVar("_T")
# Equal immutable values met while validating (a subscription's filters, its events, a
# list of ZIP codes, a model's set of given keys), by type and value: 10,000 subscriptions
# repeat a few thousand of them. Emptied once a config file is validated (and when full).
_SHARED: dict[tuple[type, Hashable], Any] = {}
_SHARED_MAX = 1 << 16


def shared(value: _T, key: Hashable = None) -> _T:
    """The one object kept for values equal to ``value`` (and of its type), or ``value``.

    Only for immutable values (or, for a model, a frozen one): sharing must not be seen.
    ``key`` replaces ``value`` as what must be equal (default: ``value`` itself).
    """
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    kept: _T = _SHARED.setdefault((type(value), value if key is None else key), value)
    return kept


def forget_shared() -> None:
    """Let go of the values kept by ``shared`` (they stay shared where they are used)."""
    _SHARED.clear()


class Model(BaseModel):
    """Frozen, strict about unknown keys, and no NaN/inf sneaking in as a number."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="after")
    def _share_fields_set(self) -> Self:
        # pydantic keeps a set of the keys given per instance (~450 B each, half the size
        # of a subscription); a frozen model never changes it, and a copy copies it, so
        # models given the same keys can share one.
        given = self.__pydantic_fields_set__
        object.__setattr__(self, "__pydantic_fields_set__", shared(given, frozenset(given)))
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        # cached_property values live in __dict__ beside the fields; a copy must recompute.
        for name in [n for n in copy.__dict__ if n not in type(self).model_fields]:
            del copy.__dict__[name]
        return copy
