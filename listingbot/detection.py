"""Change detection and message grouping: pure functions over frozen models.

No clock, no database, no network. The poller loads the previous state, calls these, and
hands the result to the store in one transaction.

Rules (per subscription, per listing the subscription's query returned and its local
filters accept):

- not told about before and the subscription is past its first run -> ``new``;
- told before, asking figure lower / higher -> ``price_drop`` / ``price_increase``;
- told before, status different -> ``status_change``;
- a subscription in its first run looks at every listing its query returns, changed or
  not; with ``first_run: baseline`` (and after a filter edit) it records the listings
  that are new to it without reporting them, while the listings it already follows keep
  their change events. A first run that began with an empty answer announces the
  listings created after that answer (they did not exist when it looked).

The match state always moves to what was observed, whether or not the subscription
wants to hear about that kind of event, so a later change is measured from the last
known figure rather than from something stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from listingbot.models import EventType, Listing, Price
from listingbot.outbox import delivery_key
from listingbot.records import ChannelState, MatchState

# Prices are compared with a small tolerance so that a float round trip through JSON or
# SQLite never reports a "drop" of a fraction of a cent.
_PRICE_EPSILON = 0.005


@dataclass(frozen=True)
class SubSpec:
    """What detection needs to know about one subscription."""

    name: str
    channel_id: int
    notify: frozenset[EventType]
    baselining: bool  # in its first run, not announcing listings new to it
    accepts: Callable[[Listing], bool]
    first_run: bool = False  # in its first run (either mode): it looks at every listing
    # A first run that began with an empty answer at this moment: a listing created
    # after it is new to the subscription even while baselining (it did not exist then).
    new_after: datetime | None = None

    def announces_new(self, listing: Listing) -> bool:
        if not self.baselining:
            return True
        created = listing.created_at
        return self.new_after is not None and created is not None and created > self.new_after

    @property
    def looks_at_everything(self) -> bool:
        return self.first_run or self.baselining


@dataclass(frozen=True)
class Event:
    subscription: str
    channel_id: int
    listing: Listing
    type: EventType
    old_price: Price | None = None
    old_status: str | None = None
    # False for a change the subscription does not want to hear about: no message, but
    # the channel has seen the listing change (see ``sequence``).
    wanted: bool = True


@dataclass(frozen=True)
class Detection:
    events: list[Event]
    matches: list[MatchState]
    unwanted: list[Event] = field(default_factory=list)  # changes of kinds not in `notify`


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
    unwanted: list[Event] = []
    matches: list[MatchState] = []
    baselining = [s for s in subs if s.looks_at_everything]
    for listing in listings:
        candidates = subs if changed(listing) else baselining
        for sub in candidates:
            if not sub.accepts(listing):
                continue
            before = previous.get((sub.name, listing.id))
            state = _state_after(sub.name, listing, before)
            if before is None:
                matches.append(state)
                if EventType.NEW in sub.notify and sub.announces_new(listing):
                    events.append(Event(sub.name, sub.channel_id, listing, EventType.NEW))
                continue
            if (before.last_price, before.last_status) == (state.last_price, state.last_status):
                continue
            matches.append(state)
            for event in _changes(sub, listing, before):
                (events if event.wanted else unwanted).append(event)
    return Detection(events, matches, unwanted)


def _state_after(sub: str, listing: Listing, before: MatchState | None) -> MatchState:
    """What the subscription knows of the listing after this observation.

    A price or status that this answer lacks (a field dropped by lenient normalization, or
    simply missing) is not a change to "unknown": the last known figure is kept, so a real
    change made while the field was unreadable is still seen against it.
    """
    price, status = listing.asking_amount, listing.status
    if before is not None:
        price = before.last_price if price is None else price
        status = before.last_status if status is None else status
    return MatchState(sub, listing.source, listing.id, price, status)


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
        if kind is not None:
            wanted = kind in sub.notify
            out.append(
                Event(sub.name, sub.channel_id, listing, kind, old_price=old_price, wanted=wanted)
            )
    if (
        listing.status is not None
        and before.last_status is not None
        and listing.status != before.last_status
    ):
        out.append(
            Event(
                sub.name,
                sub.channel_id,
                listing,
                EventType.STATUS_CHANGE,
                old_status=before.last_status,
                wanted=EventType.STATUS_CHANGE in sub.notify,
            )
        )
    return out


@dataclass(frozen=True)
class Grouped:
    """One message to send: an event on a listing, for every subscription in one channel.

    ``state`` is what the channel has been told about the listing once this message is
    queued (it goes to the store with the message, in one transaction).
    """

    key: str
    channel_id: int
    listing: Listing
    type: EventType
    subscriptions: tuple[str, ...]
    old_price: Price | None
    old_status: str | None
    state: ChannelState
    # No message: only unwanted events (the channel's state still moves on), or a change
    # the channel was already told of (its key was used once and is never used again).
    silent: bool = False
    duplicate: bool = False


def sequence(
    state: ChannelState | None,
    channel_id: int,
    listing: Listing,
    event: EventType,
    *,
    tell: bool = True,
) -> tuple[int, ChannelState, bool]:
    """The change sequence number of ``event`` in the channel, the channel's new state,
    and whether the channel was already told of this change.

    The sequence moves on with every change a subscription in the channel observes,
    told or not (an unwanted price increase in between makes the next drop to an earlier
    figure a new change). A change to the figure (status) the channel observed last is
    that change, seen again through another subscription: same number, and if it was
    told already, a duplicate. So a key is used for at most one message, ever: no value
    can bring an old key back, even after its sent row was pruned.
    """
    if state is None:
        state = ChannelState(channel_id, listing.source, listing.id)
    if event is EventType.NEW:
        if state.last_price is None and state.last_status is None:
            state = replace(state, last_price=listing.asking_amount, last_status=listing.status)
        return 0, state, False
    if event is EventType.STATUS_CHANGE:
        if state.status_seq and state.last_status == listing.status:
            told = state.status_told
            return state.status_seq, replace(state, status_told=told or tell), told and tell
        state = replace(
            state,
            status_seq=state.status_seq + 1,
            last_status=listing.status,
            status_told=tell,
        )
        return state.status_seq, state, False
    amount = listing.asking_amount
    last = state.last_price
    if (
        state.price_seq
        and last is not None
        and amount is not None
        and abs(last - amount) <= _PRICE_EPSILON
    ):
        told = state.price_told
        return state.price_seq, replace(state, price_told=told or tell), told and tell
    state = replace(state, price_seq=state.price_seq + 1, last_price=amount, price_told=tell)
    return state.price_seq, state, False


def group_events(
    events: Iterable[Event], states: Mapping[tuple[int, str], ChannelState] | None = None
) -> list[Grouped]:
    """One entry per (channel, listing, event), naming every subscription that wants it,
    keyed from the channel's change sequence (``states``: the channel state loaded from
    the store, by (channel, listing id); missing means the channel saw nothing yet).

    Unwanted events (``wanted=False``) make ``silent`` entries: no message, but the
    channel's sequence moves on. Order is kept: the first event of a group fixes the
    group's position, so messages go out in the order their events were detected.
    """
    groups: dict[tuple[int, str, str, EventType], list[Event]] = {}
    for event in events:
        gkey = (event.channel_id, event.listing.source, event.listing.id, event.type)
        groups.setdefault(gkey, []).append(event)
    current: dict[tuple[int, str], ChannelState] = dict(states or {})
    out: list[Grouped] = []
    for (channel_id, source, listing_id, etype), members in groups.items():
        first = members[0]
        wanted = [m for m in members if m.wanted]
        seq, state, duplicate = sequence(
            current.get((channel_id, listing_id)),
            channel_id,
            first.listing,
            etype,
            tell=bool(wanted),
        )
        current[(channel_id, listing_id)] = state
        out.append(
            Grouped(
                key=delivery_key(channel_id, source, listing_id, etype, seq),
                channel_id=channel_id,
                listing=first.listing,
                type=etype,
                subscriptions=tuple(sorted({m.subscription for m in wanted or members})),
                old_price=(wanted or members)[0].old_price,
                old_status=(wanted or members)[0].old_status,
                state=state,
                silent=not wanted,
                duplicate=duplicate,
            )
        )
    return out
