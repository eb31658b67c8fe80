"""Chat text for one event about one listing: short, plain and safe to post.

ChatKitty documents no Markdown, so messages are plain lines::

    🏠 New listing · brooklyn-condos, nyc-family-homes
    $500,000 · 3 bd · 2.5 ba · 2,350 sq ft · Condominium
    20 W 34th St #2012B, New York, NY 10001
    Quaint condo in the heart of the city …
    https://example.com/li_2hAk61Qi6hFGw6nfrRmG

Lines without data are left out. Everything that comes from a listing (or from the
configuration) goes through :func:`sanitize` first, because ChatKitty turns ``<@user>`` and
``<#channel>`` into mentions that notify people, and a listing must never be able to.
Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Final, NamedTuple
from urllib.parse import urlsplit

from listingbot.models import Change, EventType, FigureName, Listing, Price, PriceUnit
from listingbot.templates import (
    DEFAULT_TEMPLATE,
    EVENT_HEADLINES,
    RENT_HEADLINES,
    Template,
    cached_template,
)
from listingbot.text import cap_message, sanitize

if TYPE_CHECKING:
    from listingbot.config import Subscription

__all__ = [
    "MESSAGE_MAX_CHARS",
    "SUMMARY_MAX_CHARS",
    "Draft",
    "Text",
    "draft_for",
    "event_headline",
    "fill",
    "format_price",
    "item_line",
    "listing_fields",
    "map_link",
    "message_fields",
    "render",
    "render_for",
    "sanitize",
]

MESSAGE_MAX_CHARS: Final = 1000
SUMMARY_MAX_CHARS: Final = 280
MAX_NAMED_SUBSCRIPTIONS: Final = 5
MAX_NAMED_TYPES: Final = 3
# A summary squeezed below this by the overall cap says nothing useful: leave it out.
_MIN_SUMMARY_CHARS: Final = 40
_NAME_MAX_CHARS: Final = 60
_ADDRESS_MAX_CHARS: Final = 200
_URL_MAX_CHARS: Final = 300

_ON_APPLICATION: Final = "on application"
ARROW: Final = "→"
EN_DASH: Final = "\u2013"  # ranges: 2,000-4,500 typeset with an en dash
MINUS: Final = "\u2212"  # a real minus sign, as typeset
SEP: Final = " · "

_AGENT_MAX_CHARS: Final = 100
_PLACE_MAX_CHARS: Final = 70  # in a digest line
_LINE_MAX_CHARS: Final = 240
_MAP_URL: Final = "https://www.openstreetmap.org/"
_MAP_ZOOM: Final = 17

_PRICE_EVENTS: Final = frozenset({EventType.PRICE_DROP, EventType.PRICE_INCREASE})

_SYMBOLS: Final[dict[str, str]] = {"USD": "$", "GBP": "£", "EUR": "€"}
_UNIT_SUFFIX: Final[dict[PriceUnit, str]] = {
    PriceUnit.TOTAL: "",
    PriceUnit.PER_MONTH: "/mo",
    PriceUnit.PER_YEAR: "/yr",
    PriceUnit.PER_SQFT: " per sq ft",
    PriceUnit.PER_SQM: " per sq m",
    PriceUnit.PER_DESK: " per desk",
}
# Rents per area are small numbers quoted to the penny ("£45.00 per sq ft").
_AREA_UNITS: Final = frozenset({PriceUnit.PER_SQFT, PriceUnit.PER_SQM})

_CURRENCY_CODE: Final = re.compile(r"[A-Z]{3}")
_URL_FORBIDDEN: Final = frozenset('<>"\\ `{}|^')


def format_price(price: Price | None) -> str:
    """Display a price: ``$500,000``, ``$2,400/mo``, ``£45.00 per sq ft``, ranges joined by an
    en dash, ``Guide price £1,250,000``, ``Price on application`` / ``Rent on application``.

    Returns ``""`` when there is no price at all.
    """
    return _format(price)


def _format(price: Price | None, *, suffix: bool = True) -> str:
    if price is None:
        return ""
    amount = _finite(price.amount)
    if price.on_application or amount is None:
        noun = "Price" if price.unit is PriceUnit.TOTAL else "Rent"
        return f"{noun} {_ON_APPLICATION}"
    figure = _money(amount, price)
    high = _finite(price.amount_max)
    if high is not None and high > amount:
        figure = f"{figure}{EN_DASH}{_money(high, price)}"
    text = figure + (_UNIT_SUFFIX[price.unit] if suffix else "")
    qualifier = sanitize(price.qualifier or "", max_len=_NAME_MAX_CHARS)
    if qualifier:
        text = f"{qualifier[0].upper()}{qualifier[1:]} {text}"
    return text


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _money(amount: float, price: Price) -> str:
    if price.unit in _AREA_UNITS or not float(amount).is_integer():
        number = f"{amount:,.2f}"
    else:
        number = f"{amount:,.0f}"
    code = price.currency.strip().upper()
    symbol = _SYMBOLS.get(code)
    if symbol is not None:
        return f"{symbol}{number}"
    # An unknown code is shown after the number; anything that is not a currency code
    # (it came from a listing) is not shown at all.
    return f"{number} {code}" if _CURRENCY_CODE.fullmatch(code) else number


def render(
    listing: Listing,
    event: EventType,
    subscriptions: Sequence[str],
    *,
    old_price: Price | None = None,
    old_status: str | None = None,
    changes: Sequence[Change] = (),
    labels: Sequence[str] = (),
    template: Template | None = None,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> str:
    """The chat message for ``event`` on ``listing``, naming the matching subscriptions.

    ``changes`` are every change the message tells of, the leading one first (one
    message per listing per poll: ``📉 Price drop · Under offer``); without them the
    message is of ``event`` alone, with ``old_price`` (price events) and ``old_status``
    (status changes).
    ``labels`` are shown in the headline instead of the subscription names; ``template``
    replaces the default layout (:data:`listingbot.templates.DEFAULT_TEMPLATE`); ``now``
    picks the next open house and ``tz`` shows it in the subscription's time zone.
    The result never exceeds ``MESSAGE_MAX_CHARS``; the link is kept whole.
    """
    values = message_fields(
        listing,
        event,
        subscriptions,
        old_price=old_price,
        old_status=old_status,
        changes=changes,
        labels=labels,
        now=now,
        tz=tz,
    )
    return fill(template or cached_template(DEFAULT_TEMPLATE), values)


def render_for(
    listing: Listing,
    event: EventType,
    names: Sequence[str],
    subscriptions: Sequence[Subscription],
    *,
    old_price: Price | None = None,
    old_status: str | None = None,
    changes: Sequence[Change] = (),
    now: datetime | None = None,
    shared: SharedFields | None = None,
) -> Text:
    """:func:`render` for the subscriptions ``names`` (sharing one message in one channel),
    as their configuration (``subscriptions``) asks: labels in the headline; the template
    of the first of them (by name) that sets one for ``event``; open houses in the zone of
    the first that sets ``timezone``. With the message's one-line form, for a digest.
    (:func:`draft_for` is the same message with its body not written yet.)

    ``shared`` memoizes the fields that depend on the listing alone
    (:func:`listing_fields`) across the messages of one poll: a listing that changed goes
    to every channel that watches it, and its text is sanitized once, not once a channel."""
    draft = draft_for(
        listing,
        event,
        names,
        subscriptions,
        old_price=old_price,
        old_status=old_status,
        changes=changes,
        now=now,
        shared=shared,
    )
    return Text(draft.body(), draft.line)


def draft_for(
    listing: Listing,
    event: EventType,
    names: Sequence[str],
    subscriptions: Sequence[Subscription],
    *,
    old_price: Price | None = None,
    old_status: str | None = None,
    changes: Sequence[Change] = (),
    now: datetime | None = None,
    shared: SharedFields | None = None,
) -> Draft:
    """:func:`render_for`'s message with its one-line form written and its body not yet:
    a message that a burst digest tells of is never posted, and its fields and text
    (most of the cost of a message) would be thrown away. ``Draft.body()`` writes it.

    With ``shared``, the one-line form is the listing's and its changes' alone (the
    place, what changed, the link: no channel's names), and is written once for every
    channel told of the same changes."""
    own, said, lines = _shared_fields(listing, changes, shared)
    draft = Draft(
        "", listing, event, names, subscriptions, changes, now, old_price, old_status, own, said
    )
    if own is not None and said is not None and lines is not None:
        key = (event, _changes_key(changes))
        line = lines.get(key)
        if line is None:
            line = lines[key] = item_line(event.value, {**own, "change": said["change"]})
        return draft._replace(line=line)
    template, values = draft.fields()
    return draft._replace(line=item_line(event.value, values), made=(template, values))


@dataclass(frozen=True)
class _Shared:
    """What the messages of one poll share of one listing (see :func:`render_for`)."""

    listing: Listing  # kept, so that an id is never taken for another object's
    values: Mapping[str, str]  # listing_fields
    said: dict[tuple[object, ...], Mapping[str, str]] = field(default_factory=dict)
    lines: dict[tuple[object, ...], str] = field(default_factory=dict)


# Listing-only fields by the listing's identity, its change fields by what they depend
# on, and its one-line forms by event and changes: see render_for and draft_for.
SharedFields = dict[int, _Shared]


def _changes_key(changes: Sequence[Change]) -> tuple[object, ...]:
    # Not the changes' seq or since: those are the channel's, and no text shows them.
    return tuple((c.type, c.figure, c.old_price, c.old_status) for c in changes)


def _shared_fields(
    listing: Listing, changes: Sequence[Change], shared: SharedFields | None
) -> tuple[
    Mapping[str, str] | None, Mapping[str, str] | None, dict[tuple[object, ...], str] | None
]:
    """The listing's fields, its fields for ``changes`` and its memo of one-line forms,
    from ``shared`` or into it."""
    if shared is None:
        return None, None, None
    held = shared.get(id(listing))
    if held is None or held.listing is not listing:
        held = shared[id(listing)] = _Shared(listing, listing_fields(listing))
    if not changes:
        return held.values, None, None
    key = _changes_key(changes)
    said = held.said.get(key)
    if said is None:
        said = held.said[key] = _change_fields(listing, changes)
    return held.values, said, held.lines


class Text(NamedTuple):
    """A message's text, and its one-line form for a digest."""

    body: str
    line: str


class Draft(NamedTuple):
    """A message's one-line form, and what its text is written from (one object, not a
    closure: a poll holds one a message until the digests have taken theirs)."""

    line: str
    listing: Listing
    event: EventType
    names: Sequence[str]
    subscriptions: Sequence[Subscription]
    changes: Sequence[Change]
    now: datetime | None
    old_price: Price | None
    old_status: str | None
    own: Mapping[str, str] | None  # the shared listing fields, if any
    said: Mapping[str, str] | None  # the shared change fields, if any
    made: tuple[Template, Mapping[str, str]] | None = None  # fields(), if already made

    def body(self) -> str:
        """The message's text, as :func:`render_for` writes it."""
        return fill(*(self.made or self.fields()))

    def fields(self) -> tuple[Template, dict[str, str]]:
        """The template the message's subscriptions choose, and the values it is filled
        with (their labels in the headline, open houses in their time zone)."""
        ordered = sorted(self.subscriptions, key=lambda s: s.name)
        event = self.event
        template = next((t for s in ordered if (t := s.template_for(event)) is not None), None)
        tz = next((s.zone for s in ordered if s.timezone), None)
        by_name = {s.name: s for s in self.subscriptions}
        labels = [(by_name[n].label if n in by_name else None) or n for n in self.names]
        values = message_fields(
            self.listing,
            event,
            self.names,
            old_price=self.old_price,
            old_status=self.old_status,
            changes=self.changes,
            labels=labels,
            now=self.now,
            tz=tz,
            listing_values=self.own,
            change_values=self.said,
        )
        return template or cached_template(DEFAULT_TEMPLATE), values


def item_line(event: str, fields: Mapping[str, str]) -> str:
    """``📉 1 Main St, Albany, NY · $525,000 → $500,000 (-4.8%) · https://…``: the event's
    symbol, where, what changed (else the price), the link, from :func:`message_fields`.
    One line, for a digest."""
    symbol = next((h.split(" ", 1)[0] for k, h in EVENT_HEADLINES.items() if k.value == event), "•")
    url = fields.get("url", "")
    head = sanitize(fields.get("place", ""), max_len=_PLACE_MAX_CHARS)
    what = fields.get("change") or fields.get("prices", "").split(SEP, 1)[0]
    text = SEP.join(part for part in (head, what) if part)
    room = _LINE_MAX_CHARS - len(url) - len(SEP) if url else _LINE_MAX_CHARS
    text = sanitize(f"{symbol} {text}".strip(), max_len=max(room, 20))
    return f"{text}{SEP}{url}" if url else text


def message_fields(
    listing: Listing,
    event: EventType,
    subscriptions: Sequence[str],
    *,
    old_price: Price | None = None,
    old_status: str | None = None,
    changes: Sequence[Change] = (),
    labels: Sequence[str] = (),
    now: datetime | None = None,
    tz: tzinfo | None = None,
    listing_values: Mapping[str, str] | None = None,
    change_values: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every template field (:data:`listingbot.templates.FIELDS`) for this event, as
    sanitized display text (``""`` when the listing lacks it). ``listing_values`` are the
    listing's :func:`listing_fields`, ``change_values`` its ``_change_fields`` for
    ``changes``, when the caller has them already."""
    one = listing_fields(listing) if listing_values is None else listing_values
    names = _names(subscriptions)
    shown = _names(labels) or names
    if not changes:
        changes = (_lone_change(listing, event, old_price, old_status),)
    moved = _moved(changes)
    what = _change_fields(listing, changes) if change_values is None else change_values
    headline = what["headline"]
    price_change, status_change = what["price_change"], what["status_change"]
    details = what["details"]
    return {
        "headline": f"{headline}{SEP}{_capped_list(shown, MAX_NAMED_SUBSCRIPTIONS)}"
        if shown
        else headline,
        "event": what["event"],
        "label": ", ".join(shown),
        "subscriptions": ", ".join(names),
        "change": what["change"],
        "price_change": price_change,
        "status_change": status_change,
        "title": one["title"],
        "place": one["place"],
        "address": one["address"],
        "city": one["city"],
        "region": one["region"],
        "postcode": one["postcode"],
        "country": one["country"],
        "details": details if moved else one["details"],
        "prices": one["prices"],
        "price": one["price"],
        "rent": one["rent"],
        "facts": one["facts"],
        "bedrooms": one["bedrooms"],
        "bathrooms": one["bathrooms"],
        "size": one["size"],
        "lot_size": one["lot_size"],
        "property_type": one["property_type"],
        "status": one["status"],
        "year_built": one["year_built"],
        "mls_number": one["mls_number"],
        "agent": one["agent"],
        "open_house": _next_open_house(listing, now, tz),
        "summary": one["summary"],
        "url": one["url"],
        "map": one["map"],
        "photo_url": one["photo_url"],
        "latitude": one["latitude"],
        "longitude": one["longitude"],
        "source": one["source"],
        "id": one["id"],
    }


def _moved(changes: Sequence[Change]) -> dict[FigureName, Change]:
    return {c.figure or "sale": c for c in changes if c.type in _PRICE_EVENTS}


def _change_fields(listing: Listing, changes: Sequence[Change]) -> dict[str, str]:
    """What the message says of its changes (the headline before the names, the change
    texts, the details with a moved price): the same for every channel told of the same
    changes of the listing."""
    moved = _moved(changes)
    price_change = SEP.join(
        _price_change(moved[name].old_price, price)
        for name, price in (("sale", listing.price), ("rent", listing.rent))
        if name in moved
    )
    status_change = next(
        (
            _status_change(c.old_status, listing.status)
            for c in changes
            if c.type is EventType.STATUS_CHANGE
        ),
        "",
    )
    return {
        "headline": _events_headline(changes, listing.status),
        "event": event_headline(changes[0]),
        "change": SEP.join(part for part in (price_change, status_change) if part),
        "price_change": price_change,
        "status_change": status_change,
        "details": _details(listing, moved) if moved else "",
    }


def _details(listing: Listing, moved: Mapping[FigureName, Change]) -> str:
    """The ``details`` field: the prices (a moved one as its change), then the facts."""
    return SEP.join(part for part in (_price_part(listing, moved), *_facts(listing)) if part)


def listing_fields(listing: Listing) -> dict[str, str]:
    """The template fields that depend on the listing alone (not on the event, the
    subscriptions, the time or the zone), as :func:`message_fields` shows them; ``details``
    as shown when no price moved."""
    facts = _facts(listing)
    address = sanitize(listing.address or "", max_len=_ADDRESS_MAX_CHARS)
    title = sanitize(listing.title, max_len=_ADDRESS_MAX_CHARS)
    beds, baths = _positive(listing.bedrooms), _positive(listing.bathrooms)
    lot = _positive(listing.lot_size_acres)
    return {
        "title": title,
        "place": address or title,
        "address": address,
        "city": _text(listing.city),
        "region": _text(listing.region),
        "postcode": _text(listing.postcode),
        "country": listing.country,
        "details": _details(listing, {}),
        "prices": _price_part(listing),
        "price": format_price(listing.price),
        "rent": format_price(listing.rent),
        "facts": SEP.join(facts),
        "bedrooms": _count(beds) if beds is not None else "",
        "bathrooms": _count(baths) if baths is not None else "",
        "size": _area(_positive(listing.size_sqft), _positive(listing.size_max_sqft)),
        "lot_size": f"{lot:g} acres" if lot is not None else "",
        "property_type": _types(listing.property_types or (listing.property_type or "",)),
        "status": _words(listing.status),
        "year_built": str(listing.year_built) if listing.year_built else "",
        "mls_number": _text(listing.mls_number),
        "agent": _text(listing.agent, _AGENT_MAX_CHARS),
        "summary": sanitize(listing.summary or "", max_len=SUMMARY_MAX_CHARS, multiline=True),
        "url": _safe_url(listing.url),
        "map": map_link(listing.latitude, listing.longitude),
        "photo_url": _safe_url(listing.photo_url),
        "latitude": _coordinate(listing.latitude),
        "longitude": _coordinate(listing.longitude),
        "source": listing.source,
        "id": _text(listing.id),
    }


def _lone_change(
    listing: Listing, event: EventType, old_price: Price | None, old_status: str | None
) -> Change:
    """The change of a message of one event (the figure a price event is about: the sale
    price when the listing has one, else the rent)."""
    figure: FigureName | None = None
    if event in _PRICE_EVENTS:
        has_sale = listing.price is not None and listing.price.amount is not None
        figure = "sale" if has_sale else "rent"
    return Change(event, figure, old_price=old_price, old_status=old_status)


def event_headline(change: Change) -> str:
    """What a change is called in a headline: ``📉 Price drop``, ``📉 Rent drop``."""
    if change.figure == "rent" and change.type in RENT_HEADLINES:
        return RENT_HEADLINES[change.type]
    return EVENT_HEADLINES[change.type]


def _events_headline(changes: Sequence[Change], status: str | None) -> str:
    """The leading change's headline, then each further one in a few words (a status
    change by its new status): ``📉 Price drop · Under offer``."""
    words = [event_headline(changes[0])]
    for change in changes[1:]:
        if change.type is EventType.STATUS_CHANGE:
            word = _words(status) or "Status change"
        else:
            word = event_headline(change).split(" ", 1)[-1]
        if word not in words:
            words.append(word)
    return SEP.join(words)


def fill(template: Template, values: Mapping[str, str]) -> str:
    """``template`` filled with ``values``, sanitized like listing text and capped at
    ``MESSAGE_MAX_CHARS``: the summary gives way first, then everything but the link."""
    body = _clean(template.render(values))
    if len(body) <= MESSAGE_MAX_CHARS:
        return body
    summary = values.get("summary", "")
    if summary and "summary" in template.fields:
        without = {**values, "summary": ""}
        budget = min(
            SUMMARY_MAX_CHARS, MESSAGE_MAX_CHARS - len(_clean(template.render(without))) - 1
        )
        short = ""
        if budget >= _MIN_SUMMARY_CHARS:
            short = sanitize(summary, max_len=budget, multiline=True)
        body = _clean(template.render({**without, "summary": short}))
        if len(body) <= MESSAGE_MAX_CHARS:
            return body
    # Only pathological field lengths get here; the link is what a reader needs most.
    url = values.get("url", "")
    lines = body.split("\n")
    if url and url in lines:
        rest = "\n".join(line for line in lines if line != url)
        room = MESSAGE_MAX_CHARS - len(url) - 1
        return _clean("\n".join(part for part in (cap_message(rest, room), url) if part))
    return _clean(cap_message(body, MESSAGE_MAX_CHARS))


def _clean(text: str) -> str:
    # Each value was sanitized; this covers the template's own text and the joins.
    return sanitize(text, multiline=True)


def _names(names: Iterable[str]) -> list[str]:
    return sorted({n for n in map(_name, names) if n})


@lru_cache(maxsize=1 << 16)
def _name(name: str) -> str:
    # A subscription's name or label, in every message of it: sanitized once (a pure
    # function of the configured text), not once a message.
    return sanitize(name, max_len=_NAME_MAX_CHARS)


def _text(value: str | None, max_len: int = _NAME_MAX_CHARS) -> str:
    return sanitize(value or "", max_len=max_len)


def map_link(latitude: float | None, longitude: float | None) -> str:
    """An OpenStreetMap link with a marker at the point; ``""`` without a usable point."""
    lat, lon = _finite(latitude), _finite(longitude)
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return ""
    if lat == 0 and lon == 0:  # "null island": a missing position written as zeros
        return ""
    pin = f"mlat={_coordinate(lat)}&mlon={_coordinate(lon)}"
    return f"{_MAP_URL}?{pin}#map={_MAP_ZOOM}/{_coordinate(lat)}/{_coordinate(lon)}"


def _coordinate(value: float | None) -> str:
    value = _finite(value)
    if value is None:
        return ""
    # Five decimals is about a metre: enough for a map pin, short enough to read.
    return f"{value:.5f}".rstrip("0").rstrip(".")


def _next_open_house(listing: Listing, now: datetime | None, tz: tzinfo | None) -> str:
    """The first open house that has not ended, ``Sat 5 Dec 10:00-12:00 EST`` (an en dash),
    in ``tz``, else in the time zone the source gave."""
    for house in sorted(listing.open_houses, key=lambda h: h.start):
        end = house.end or house.start
        if now is not None and end <= now:
            continue
        start = house.start.astimezone(tz) if tz is not None else house.start
        text = f"{start:%a} {start.day} {start:%b} {start:%H:%M}"
        if house.end is not None and house.end > house.start:
            finish = house.end.astimezone(start.tzinfo)
            if finish.date() == start.date():
                text += f"{EN_DASH}{finish:%H:%M}"
            else:
                text += f" {ARROW} {finish:%a} {finish.day} {finish:%b} {finish:%H:%M}"
        zone = start.tzname()
        return f"{text} {zone}" if zone else text
    return ""


def _capped_list(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    hidden = len(items) - limit
    return f"{shown} +{hidden} more" if hidden > 0 else shown


def _status_change(old: str | None, new: str | None) -> str:
    new_words = _words(new) or "Unknown"
    old_words = _words(old)
    return f"{old_words} {ARROW} {new_words}" if old_words else new_words


def _words(slug: str | None) -> str:
    """``under_offer`` -> ``Under offer``."""
    text = sanitize((slug or "").replace("_", " ").replace("-", " "), max_len=_NAME_MAX_CHARS)
    return text[:1].upper() + text[1:]


def _price_part(listing: Listing, moved: Mapping[FigureName, Change] | None = None) -> str:
    """The sale price and the rent as shown; a figure in ``moved`` shows old → new."""
    moved = moved or {}
    sale = _figure_text(listing.price, moved.get("sale"))
    rent = _figure_text(listing.rent, moved.get("rent"))
    if sale and rent:
        # A sale price reads as one on its own; a rent figure needs saying when both are
        # shown, unless it already says so ("Rent on application").
        if not rent.endswith(_ON_APPLICATION):
            rent = f"{_let_word(listing)} {rent}"
        return f"{sale}{SEP}{rent}"
    if sale or rent:
        return sale or rent
    if listing.for_sale and listing.to_let:
        return f"For sale or {_let_word(listing).lower()}"
    if listing.for_sale:
        return "For sale"
    return _let_word(listing) if listing.to_let else ""


def _figure_text(price: Price | None, change: Change | None) -> str:
    return format_price(price) if change is None else _price_change(change.old_price, price)


def _let_word(listing: Listing) -> str:
    return "To let" if listing.country == "GB" else "For rent"


def _price_change(old: Price | None, new: Price | None) -> str:
    """``$525,000 → $480,000 (-8.6%)``; ``£25.00-£27.50 → £23.75-£27.50 per sq ft``
    (the unit is said once; a range moves as a range, and has no single percentage)."""
    new_text = format_price(new)
    if not new_text:
        return ""
    same_unit = (
        old is not None and new is not None and (old.currency, old.unit) == (new.currency, new.unit)
    )
    old_text = _format(old, suffix=not same_unit)
    if not old_text:
        return new_text
    return f"{old_text} {ARROW} {new_text}{_percent(old, new)}"


def _percent(old: Price | None, new: Price | None) -> str:
    if old is None or new is None or (old.currency, old.unit) != (new.currency, new.unit):
        return ""
    before, after = _finite(old.amount), _finite(new.amount)
    if before is None or after is None or before <= 0 or _is_range(old) or _is_range(new):
        return ""
    change = (after - before) / before * 100
    if abs(change) < 0.05:  # would print as 0.0%
        return ""
    sign = MINUS if change < 0 else "+"
    return f" ({sign}{abs(change):.1f}%)"


def _is_range(price: Price) -> bool:
    high, low = _finite(price.amount_max), _finite(price.amount)
    return high is not None and low is not None and high > low


def _facts(listing: Listing) -> list[str]:
    facts: list[str] = []
    beds, baths = _positive(listing.bedrooms), _positive(listing.bathrooms)
    if beds is not None:
        facts.append(f"{_count(beds)} bd")
    if baths is not None:
        facts.append(f"{_count(baths)} ba")
    area = _area(_positive(listing.size_sqft), _positive(listing.size_max_sqft))
    if area:
        facts.append(area)
    types = _types(listing.property_types or (listing.property_type or "",))
    if types:
        facts.append(types)
    return facts


def _positive(value: float | None) -> float | None:
    value = _finite(value)
    return value if value is not None and value > 0 else None


def _count(value: float) -> str:
    return f"{value:g}"


def _area(low: float | None, high: float | None) -> str:
    if low is not None and high is not None and high > low:
        return f"{low:,.0f}{EN_DASH}{high:,.0f} sq ft"
    if low is not None:
        return f"{low:,.0f} sq ft"
    return f"up to {high:,.0f} sq ft" if high is not None else ""


def _types(slugs: Iterable[str]) -> str:
    words: list[str] = []
    for slug in slugs:
        word = _words(slug)
        if word and word not in words:
            words.append(word)
    return _capped_list(words, MAX_NAMED_TYPES)


def _safe_url(url: str | None) -> str:
    """The URL when it is a plain http(s) link a reader can follow; otherwise ``""``."""
    if not url:
        return ""
    candidate = url.strip()
    if (
        len(candidate) > _URL_MAX_CHARS
        or candidate != sanitize(candidate)
        or any(ch in _URL_FORBIDDEN for ch in candidate)
    ):
        return ""
    try:
        parts = urlsplit(candidate)
        # Userinfo enables "https://bank.example@evil.example" look-alikes.
        has_userinfo = parts.username is not None or parts.password is not None
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return "" if has_userinfo or not port_ok else candidate
