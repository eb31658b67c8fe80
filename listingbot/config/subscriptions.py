"""One subscription, and the checks across subscriptions."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, tzinfo
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    StrictBool,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from listingbot.config._errors import Problems, fmt_loc, problem, show
from listingbot.config._types import Model, NonNegInt, shared
from listingbot.config.filters import FILTERS_BY_SOURCE, KatoFilters, KotohomesFilters, LocalFilters
from listingbot.models import DEFAULT_NOTIFY, SOURCES, EventType, Source
from listingbot.quiet import QuietHours, QuietHoursError
from listingbot.templates import Template, TemplateError, cached_template, parse_template

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_EVENTS = ", ".join(e.value for e in EventType)
_LABEL_MAX_CHARS = 60


class Subscription(Model):
    """One saved search: which source, which filters, which channel, which events."""

    name: str
    source: Source
    channel: int | str  # a channel id, or a channel name resolved at start-up
    filters: KotohomesFilters | KatoFilters
    notify: frozenset[EventType] = DEFAULT_NOTIFY
    first_run: Literal["baseline", "post"] = "baseline"
    # Shown in headlines instead of the name (the name stays the key of its state).
    label: str | None = None
    # Overrides of the top-level ``messages`` keys; None: as ``messages`` says.
    threads: StrictBool | None = None
    photos: StrictBool | None = None
    digest_over: NonNegInt | None = None
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
            raise problem(
                f"expected a string (got {show(value)}; put it in quotes)", "expected a string"
            )
        if not _NAME_RE.fullmatch(value):
            raise problem(
                f"{value!r} is not a valid name: 1-64 characters of letters, digits, '_', '.', '-'",
                "not a valid name: 1-64 characters of letters, digits, '_', '.', '-'",
            )
        return value

    @field_validator("channel", mode="plain")
    @classmethod
    def _channel(cls, value: Any) -> int | str:
        return channel_ref(value)

    @field_validator("filters", mode="wrap")
    @classmethod
    def _filters(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> KotohomesFilters | KatoFilters:
        model = FILTERS_BY_SOURCE.get(info.data.get("source", ""))
        if model is None:
            # The source itself is wrong and reported; these filters cannot be judged.
            return KatoFilters()
        filters = model.model_validate(value)
        # Equal filters (given by the same keys) are one frozen object for all of them.
        return shared(filters, (filters, frozenset(filters.model_fields_set)))

    @field_validator("notify", mode="before")
    @classmethod
    def _notify(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple | set | frozenset):
            raise problem(
                f"expected a list of events ({_EVENTS})", f"expected a list of events ({_EVENTS})"
            )
        if not value:
            raise problem(f"must name at least one event ({_EVENTS})")
        problems = Problems()
        names = [e.value for e in EventType]
        for i, item in enumerate(value):
            if isinstance(item, str) and item.strip().lower() in names:
                continue
            hint = f"use {_EVENTS}"
            if isinstance(item, str):
                text = item.strip().lower().replace("-", "_").replace(" ", "_")
                close = difflib.get_close_matches(text, names, n=1, cutoff=0.6)
                if close:
                    hint = f"did you mean {close[0]!r}? Events: {_EVENTS}"
            problems.add((i,), f"unknown event {show(item)} ({hint})", f"unknown event ({hint})")
        problems.raise_if_any()
        return shared(frozenset(EventType(str(item).strip().lower()) for item in value))

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise problem(
                f"expected a string (got {show(value)}; put it in quotes)", "expected a string"
            )
        text = " ".join(value.split())
        if not text or len(text) > _LABEL_MAX_CHARS or not text.isprintable():
            raise problem(
                f"must be 1-{_LABEL_MAX_CHARS} printable characters on one line (got {value!r})",
                f"must be 1-{_LABEL_MAX_CHARS} printable characters on one line",
            )
        return text

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
                raise problem(f"{who}{err}") from None
            return value
        if not isinstance(value, Mapping) or not value:
            raise problem(
                f"expected a template (text), or a mapping of events to templates ({_EVENTS})"
            )
        problems = Problems()
        names = [e.value for e in EventType]
        out: dict[EventType, str] = {}
        for event, text in value.items():
            where = (str(event),)
            name = str(event).strip().lower()
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.add(where, f"unknown event {show(event)} ({hint}events: {_EVENTS})")
                continue
            if not isinstance(text, str):
                problems.add(where, f"expected a template (text), got {show(text)}")
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
            raise problem(f'expected HH:MM-HH:MM in quotes, e.g. "22:00-07:00" (got {show(value)})')
        try:
            return str(QuietHours.parse(value))
        except QuietHoursError as err:
            raise problem(str(err)) from None

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise problem(
                f"expected an IANA time zone name, e.g. America/New_York (got {show(value)})"
            )
        name = value.strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise problem(
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


def channel_ref(value: Any) -> int | str:
    """A channel id (a positive integer) or a channel name (subscriptions and commands)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        # ${CHANNEL_ID} always interpolates to a string; digits are an id, not a name.
        return int(text) if text.isdigit() and int(text) > 0 else text
    raise problem(
        f"expected a channel id (a positive integer) or a channel name (got {show(value)})",
        "expected a channel id (a positive integer) or a channel name",
    )


def cross_problems(subs: Iterable[tuple[int, Any, Any]], configured: set[str]) -> Problems:
    """Duplicate names and subscriptions to unconfigured sources.

    Works on raw values too, so these are reported even when other keys are invalid.
    """
    problems = Problems()
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


def raw_cross_lines(data: Any) -> list[str]:
    """Cross-checks on the raw data, so they show up beside other problems."""
    subs = data.get("subscriptions")
    sources = data.get("sources")
    if not isinstance(subs, list) or not isinstance(sources, dict):
        return []
    configured = {k for k, v in sources.items() if isinstance(v, dict)}
    rows = ((i, s.get("name"), s.get("source")) for i, s in enumerate(subs) if isinstance(s, dict))
    return [f"{fmt_loc(w)}: {t}" for w, t, _ in cross_problems(rows, configured).items]
