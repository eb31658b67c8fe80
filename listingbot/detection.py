"""Change detection and message grouping: pure functions over frozen models.

No clock, no database, no network. The poller loads the previous state, calls these, and
hands the result to the store in one transaction.

Rules (per subscription, per listing the subscription's query returned and its local
filters accept):

- not told about before and the subscription is past its first run -> ``new``;
- told before, asking figure lower / higher -> ``price_drop`` / ``price_increase``;
- told before, status different -> ``status_change``;
- a subscription in its first run (``first_run: baseline``) records what it sees and
  reports nothing.

The match state always moves to what was observed, whether or not the subscription
wants to hear about that kind of event, so a later change is measured from the last
known figure rather than from something stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from listingbot.models import EventType, Listing, Price
from listingbot.store import MatchState

# Prices are compared with a small tolerance so that a float round trip through JSON or
# SQLite never reports a "drop" of a fraction of a cent.
_PRICE_EPSILON = 0.005


@dataclass(frozen=True)
class SubSpec:
    """What detection needs to know about one subscription."""

    name: str
    channel_id: int
    notify: frozenset[EventType]
    baselining: bool
    accepts: Callable[[Listing], bool]


@dataclass(frozen=True)
class Event:
    subscription: str
    channel_id: int
    listing: Listing
    type: EventType
    old_price: Price | None = None
    old_status: str | None = None


@dataclass(frozen=True)
class Detection:
    events: list[Event]
    matches: list[MatchState]


def detect(
    subs: Sequence[SubSpec],
    listings: Iterable[Listing],
    previous: Mapping[tuple[str, str], MatchState],
    *,
    changed: Callable[[Listing], bool] = lambda _listing: True,
) -> Detection:
    """Events and new match state for ``subs`` over ``listings``.

    ``changed(listing)`` may say a listing is exactly as this query saw it last time; then
    only subscriptions in their first run look at it (nothing else can have changed).
    """
    events: list[Event] = []
    matches: list[MatchState] = []
    baselining = [s for s in subs if s.baselining]
    for listing in listings:
        candidates = subs if changed(listing) else baselining
        for sub in candidates:
            if not sub.accepts(listing):
                continue
            state = MatchState(
                sub.name, listing.source, listing.id, listing.asking_amount, listing.status
            )
            before = previous.get((sub.name, listing.id))
            if before is None:
                matches.append(state)
                if not sub.baselining and EventType.NEW in sub.notify:
                    events.append(Event(sub.name, sub.channel_id, listing, EventType.NEW))
                continue
            if (before.last_price, before.last_status) == (state.last_price, state.last_status):
                continue
            matches.append(state)
            if sub.baselining:
                continue
            events.extend(_changes(sub, listing, before))
    return Detection(events, matches)


def _changes(sub: SubSpec, listing: Listing, before: MatchState) -> list[Event]:
    out: list[Event] = []
    new_amount = listing.asking_amount
    old_amount = before.last_price
    if new_amount is not None and old_amount is not None:
        asking = listing.asking
        assert asking is not None
        old_price = asking.model_copy(update={"amount": old_amount, "amount_max": None})
        kind: EventType | None = None
        if new_amount < old_amount - _PRICE_EPSILON:
            kind = EventType.PRICE_DROP
        elif new_amount > old_amount + _PRICE_EPSILON:
            kind = EventType.PRICE_INCREASE
        if kind is not None and kind in sub.notify:
            out.append(Event(sub.name, sub.channel_id, listing, kind, old_price=old_price))
    if (
        listing.status is not None
        and before.last_status is not None
        and listing.status != before.last_status
        and EventType.STATUS_CHANGE in sub.notify
    ):
        out.append(
            Event(
                sub.name,
                sub.channel_id,
                listing,
                EventType.STATUS_CHANGE,
                old_status=before.last_status,
            )
        )
    return out


@dataclass(frozen=True)
class Grouped:
    """One message to send: an event on a listing, for every subscription in one channel."""

    key: str
    channel_id: int
    listing: Listing
    type: EventType
    subscriptions: tuple[str, ...]
    old_price: Price | None
    old_status: str | None


def delivery_key(channel_id: int, listing: Listing, event: EventType) -> str:
    """Stable and unique per delivery: the same observation never makes two messages.

    ``new`` is once per channel and listing, ever. A price or status change is identified
    by the value it changed to and the listing's update time, so two subscriptions in one
    channel that see the same change, in the same poll or in different polls, share a key.
    """
    if event is EventType.NEW:
        detail = ""
    elif event is EventType.STATUS_CHANGE:
        detail = f"{listing.status}|{_stamp(listing)}"
    else:
        detail = f"{listing.asking_amount}|{_stamp(listing)}"
    raw = f"{channel_id}|{listing.source}|{listing.id}|{event.value}|{detail}"
    return "lb1-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def _stamp(listing: Listing) -> str:
    return listing.updated_at.isoformat() if listing.updated_at else ""


def group_events(events: Iterable[Event]) -> list[Grouped]:
    """One entry per (channel, listing, event), naming every subscription that matched.

    Order is kept: the first event of a group fixes the group's position, so messages go
    out in the order their events were detected.
    """
    groups: dict[tuple[int, str, str, EventType], list[Event]] = {}
    for event in events:
        gkey = (event.channel_id, event.listing.source, event.listing.id, event.type)
        groups.setdefault(gkey, []).append(event)
    out: list[Grouped] = []
    for (channel_id, _src, _id, etype), members in groups.items():
        first = members[0]
        out.append(
            Grouped(
                key=delivery_key(channel_id, first.listing, etype),
                channel_id=channel_id,
                listing=first.listing,
                type=etype,
                subscriptions=tuple(sorted({m.subscription for m in members})),
                old_price=first.old_price,
                old_status=first.old_status,
            )
        )
    return out


def fingerprint(listing: Listing) -> str:
    """A digest of everything about a listing that any filter or message could use."""
    return hashlib.blake2b(listing.model_dump_json().encode(), digest_size=12).hexdigest()
