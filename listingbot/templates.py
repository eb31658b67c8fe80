"""Message templates: the default text of every message, and the small safe formatter an
operator uses to override it per subscription (``template:`` in the config).

The syntax is deliberately tiny::

    {headline}
    {place} — {prices}
    {url}

- ``{name}`` is replaced by the field ``name`` (see :data:`FIELDS`): lower-case letters,
  digits and ``_``. Every field is text, already formatted for reading (``$500,000``,
  ``Under offer``, ``2,350 sq ft``) and ``""`` when the listing lacks it.
- ``{{`` and ``}}`` are a literal ``{`` and ``}``.
- A line whose placeholders are all empty is left out (``Agent: {agent}`` disappears for a
  listing without an agent); a line without placeholders always stays.
- Refused, when the config is checked: an unknown field (with a did-you-mean), attribute
  access (``{price.amount}``), indexing (``{title[0]}``), conversions (``{title!r}``),
  format specs (``{price:>20}``), positional fields (``{}``, ``{0}``) and unbalanced braces.

Nothing is evaluated: a template is split once into literal text and field names, and
rendering only looks names up in a mapping of strings. There is no way to reach an
object, an attribute, a method or a format spec, so a template cannot run code or read
anything but the fields below. The result is sanitized like listing text by the caller
(:func:`listingbot.messages.render`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from listingbot.models import EventType

__all__ = [
    "DEFAULT_TEMPLATE",
    "EVENT_HEADLINES",
    "FIELDS",
    "RENT_HEADLINES",
    "TEMPLATE_MAX_CHARS",
    "Template",
    "TemplateError",
    "cached_template",
    "parse_template",
]

TEMPLATE_MAX_CHARS: Final = 2000

# What each event is called in a headline. The one place these words live.
EVENT_HEADLINES: Final[Mapping[EventType, str]] = {
    EventType.NEW: "🏠 New listing",
    EventType.PRICE_DROP: "📉 Price drop",
    EventType.PRICE_INCREASE: "📈 Price increase",
    EventType.STATUS_CHANGE: "🔔 Status change",
    EventType.NOW_FOR_RENT: "🔑 Now for rent",
    EventType.NOW_FOR_SALE: "🏷️ Now for sale",
    EventType.REMOVED: "🚫 No longer listed",
    EventType.BACK_ON_MARKET: "🔁 Back on the market",
}
# A price event about the rent says so.
RENT_HEADLINES: Final[Mapping[EventType, str]] = {
    EventType.PRICE_DROP: "📉 Rent drop",
    EventType.PRICE_INCREASE: "📈 Rent increase",
}

# Every field a template may name, with what it holds. README "Messages" lists these.
FIELDS: Final[Mapping[str, str]] = {
    # the event
    "headline": "the event and who it is for: `📉 Price drop · Brooklyn condos`",
    "event": "the event alone: `📉 Price drop`",
    "label": "the `label` (else the name) of each matching subscription, comma-separated",
    "subscriptions": "the names of the matching subscriptions, comma-separated",
    "change": "what changed, old → new: the price change and the status change",
    "price_change": "the price change alone, with its percentage: `$525,000 → $480,000 (…%)`",
    "status_change": "the status change alone: `Active → Under offer`",
    # the listing
    "title": "the listing's short title: `3 bd condo in New York, NY`",
    "place": "the address, else the title",
    "address": "one line: street, unit, city, state or county, ZIP or postcode",
    "city": "the city or town",
    "region": "the US state or the UK county",
    "postcode": "the ZIP code or postcode",
    "country": "`US` or `GB`",
    "details": "the default's facts line: the price (or its change) · beds · baths · size · types",
    "prices": "the current sale price and rent as shown: `$500,000`, `£45.00 per sq ft`",
    "price": "the sale price: `$500,000`, `Guide price £1,250,000`, `Price on application`",
    "rent": "the rent: `$2,400/mo`, `Rent on application`",
    "facts": "beds · baths · size · types: `3 bd · 2.5 ba · 2,350 sq ft · Condominium`",
    "bedrooms": "the number of bedrooms: `3`",
    "bathrooms": "the number of bathrooms: `2.5`",
    "size": "the size (a range joined by an en dash): `2,350 sq ft`",
    "lot_size": "the lot size: `0.25 acres`",
    "property_type": "the property type(s) in words: `Condominium`, `Office, Retail`",
    "status": "the status in words: `Under offer`",
    "year_built": "the year built: `1925`",
    "mls_number": "the MLS number (Kotohomes)",
    "agent": "the agent's name and phone or office: `Jane Doe, 2125550100`",
    "open_house": "the next open house, in the subscription's `timezone`: `Sat 5 Dec 10:00 EST`",
    "summary": "the description, cut to about 280 characters at a word boundary",
    "url": "the link to the listing (http/https only)",
    "map": "a map link at the listing's latitude and longitude (OpenStreetMap)",
    "photo_url": "the link to the primary photo",
    "latitude": "the latitude: `40.748441`",
    "longitude": "the longitude: `-73.985664`",
    "source": "`kotohomes` or `kato`",
    "id": "the listing's id at its source",
}

# The message every subscription gets unless it sets ``template``. The one place the
# layout lives: headline; for a status change, old → new; price (or its change) and
# facts; address; open house; agent; description; link; map.
DEFAULT_TEMPLATE: Final = """\
{headline}
{status_change}
{details}
{place}
Open house: {open_house}
Agent: {agent}
{summary}
{url}
Map: {map}"""

_NAME: Final = re.compile(r"[a-z_][a-z0-9_]*")


class TemplateError(ValueError):
    """A template that cannot be used; ``field`` is the unknown field, when that is why."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class _Field:
    name: str


_Part = str | _Field


@dataclass(frozen=True)
class Template:
    """A parsed template: per line, literal text and the fields to put in between."""

    text: str
    lines: tuple[tuple[_Part, ...], ...]

    @property
    def fields(self) -> frozenset[str]:
        """The names this template uses."""
        return frozenset(p.name for line in self.lines for p in line if isinstance(p, _Field))

    def render(self, values: Mapping[str, str]) -> str:
        """The text with every field replaced by ``values[name]`` (missing: ``""``).

        A line whose fields are all empty is left out.
        """
        out: list[str] = []
        for line in self.lines:
            filled = [p if isinstance(p, str) else values.get(p.name, "") for p in line]
            names = [p for p in line if isinstance(p, _Field)]
            if names and not any(values.get(p.name, "") for p in names):
                continue
            out.append("".join(filled))
        return "\n".join(out)


def parse_template(text: str, known: Collection[str] = FIELDS.keys()) -> Template:
    """Split ``text`` into literal text and field names, refusing anything but plain
    ``{name}`` placeholders of ``known`` fields (see the module docstring).

    Raises :class:`TemplateError` with a message fit to show after the config key.
    """
    if len(text) > TEMPLATE_MAX_CHARS:
        raise TemplateError(f"a template is at most {TEMPLATE_MAX_CHARS} characters")
    lines = tuple(_parse_line(line, known) for line in text.replace("\r\n", "\n").split("\n"))
    if not any(isinstance(p, _Field) for line in lines for p in line):
        raise TemplateError("names no field: use at least one, e.g. {headline} or {url}")
    return Template(text, lines)


@lru_cache(maxsize=256)
def cached_template(text: str) -> Template:
    """:func:`parse_template` for a template that was already checked with the config."""
    return parse_template(text)


def _parse_line(line: str, known: Collection[str]) -> tuple[_Part, ...]:
    parts: list[_Part] = []
    literal: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch in "{}" and line.startswith(ch * 2, i):
            literal.append(ch)
            i += 2
            continue
        if ch == "}":
            raise TemplateError("a single '}' (write '}}' for a literal brace)")
        if ch != "{":
            literal.append(ch)
            i += 1
            continue
        end = line.find("}", i + 1)
        inner = line[i + 1 : end] if end != -1 else line[i + 1 :]
        if end == -1 or "{" in inner:
            raise TemplateError("'{' without its '}' (write '{{' for a literal brace)")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_Field(_field_name(inner, known)))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _field_name(inner: str, known: Collection[str]) -> str:
    name = inner.strip()
    shown = "{" + inner + "}"
    if not name or name.isdigit():
        raise TemplateError(f"{shown}: name a field, e.g. {{title}}")
    for mark, what in (
        (".", "attribute access"),
        ("[", "indexing"),
        ("!", "conversions"),
        (":", "format specs"),
    ):
        if mark in name:
            raise TemplateError(f"{shown}: {what} is not supported; name a field, e.g. {{title}}")
    if name not in known:
        raise TemplateError(f"unknown field {shown}{_did_you_mean(name, known)}", field=name)
    if not _NAME.fullmatch(name) or name != inner:
        raise TemplateError(f"{shown}: write the field name alone, e.g. {{{name}}}")
    return name


def _did_you_mean(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {{{close[0]}}}?)"
    return ""
