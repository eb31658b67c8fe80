"""Change detection and message grouping: pure functions over frozen models.

No clock, no database, no network. The poller loads the previous state, calls these, and
hands the result to the store in one transaction.

Rules (per subscription, per listing the subscription's query returned and its local
filters accept):

- not told about before and the subscription is past its first run -> ``new``;
- told before: the sale price and the rent are separate figures, each compared with its
  own last known figure, as a range (``£25.00-£27.50 → £23.75-£27.50``): lower / higher
  -> ``price_drop`` / ``price_increase`` of that figure. A figure that is missing or "on
  application" in this answer is not a change (the last known figure stays), and a
  figure quoted in another currency or unit cannot be compared (no event, the state
  moves on);
- the deal type changed (newly to let / newly for sale) -> ``now_for_rent`` /
  ``now_for_sale``: a listing that goes from for sale at $500,000 to for rent at
  $2,500/mo has not dropped its price;
- told before, status different -> ``status_change``;
- a subscription in its first run looks at every listing its query returns, changed or
  not; with ``first_run: baseline`` (and after a filter edit) it records the listings
  that are new to it without reporting them, while the listings it already follows keep
  their change events. A first run that began with an empty answer announces the
  listings created after that answer (they did not exist when it looked).

The match state always moves to what was observed, whether or not the subscription
wants to hear about that kind of event, so a later change is measured from the last
known figure rather than from something stale.

Grouping: every change of one listing that one poll finds for one channel is one
message (``Price drop · Under offer``), led by the most important change
(:data:`LEADING_ORDER`); ``new`` stays a message of its own (its key is once per
channel and listing, ever).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from listingbot.models import Change, EventType, FigureName, Listing, Price
from listingbot.outbox import delivery_key, message_key
from listingbot.records import ChannelState, MatchState, Removal

# Prices are compared with a small tolerance so that a float round trip through JSON or
# SQLite never reports a "drop" of a fraction of a cent.
_PRICE_EPSILON = 0.005

# The change that leads a combined message: what a reader most needs to hear first.
LEADING_ORDER: tuple[EventType, ...] = (
    EventType.NEW,
    EventType.REMOVED,
    EventType.BACK_ON_MARKET,
    EventType.NOW_FOR_RENT,
    EventType.NOW_FOR_SALE,
    EventType.PRICE_DROP,
    EventType.PRICE_INCREASE,
    EventType.STATUS_CHANGE,
)
_RANK = {event: i for i, event in enumerate(LEADING_ORDER)}
_PRICE_EVENTS = frozenset({EventType.PRICE_DROP, EventType.PRICE_INCREASE})
_DEAL_EVENTS = frozenset({EventType.NOW_FOR_RENT, EventType.NOW_FOR_SALE})
_ONCE_PER_REMOVAL = frozenset({EventType.REMOVED, EventType.BACK_ON_MARKET})
# Events that are messages of their own, never combined with changes.
_ALONE = frozenset({EventType.NEW, *_ONCE_PER_REMOVAL})


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figure:
    """A known amount (or range) of a sale price or a rent: never "on application"."""

    low: float
    high: float  # == low unless the source gives a range
    currency: str
    unit: str

    @classmethod
    def of(cls, price: Price | None) -> Figure | None:
        if price is None or price.on_application or not _finite(price.amount):
            return None
        assert price.amount is not None
        high = price.amount_max if _finite(price.amount_max) else None
        top = max(price.amount, high) if high is not None else price.amount
        return cls(
            float(price.amount), float(top), price.currency.strip().upper(), price.unit.value
        )

    def comparable(self, other: Figure) -> bool:
        return (self.currency, self.unit) == (other.currency, other.unit)

    def same(self, other: Figure) -> bool:
        return (
            self.comparable(other)
            and abs(self.low - other.low) <= _PRICE_EPSILON
            and abs(self.high - other.high) <= _PRICE_EPSILON
        )

    def direction(self, new: Figure) -> EventType | None:
        """The price event from this figure to ``new``: a range moves as a range."""
        if not self.comparable(new) or self.same(new):
            return None
        low, high = new.low - self.low, new.high - self.high
        if low <= _PRICE_EPSILON and high <= _PRICE_EPSILON:
            return EventType.PRICE_DROP
        if low >= -_PRICE_EPSILON and high >= -_PRICE_EPSILON:
            return EventType.PRICE_INCREASE
        # A range that widened both ways (or narrowed both ways): judged by its middle.
        middle = (new.low + new.high) - (self.low + self.high)
        return EventType.PRICE_DROP if middle < 0 else EventType.PRICE_INCREASE

    def as_price(self, like: Price | None) -> Price:
        """This figure as a ``Price`` shaped like ``like`` (its qualifier kept)."""
        base = like or Price()
        return base.model_copy(
            update={
                "amount": self.low,
                "amount_max": self.high if self.high > self.low else None,
                "on_application": False,
            }
        )

    def token(self) -> str:
        return f"{self.low:.2f}-{self.high:.2f} {self.currency} {self.unit}"

    def dump(self) -> list[float | str]:
        return [self.low, self.high, self.currency, self.unit]

    @classmethod
    def load(cls, value: object) -> Figure | None:
        if not isinstance(value, list) or len(value) != 4:
            return None
        low, high, currency, unit = value
        if not (_finite(low) and _finite(high)) or not isinstance(currency, str):
            return None
        return cls(float(low), float(high), currency, str(unit))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Figures:
    """What change detection compares of a listing: its two figures and its deal type."""

    sale: Figure | None
    rent: Figure | None
    for_sale: bool
    to_let: bool

    @classmethod
    def of(cls, listing: Listing) -> Figures:
        return cls(
            Figure.of(listing.price), Figure.of(listing.rent), listing.for_sale, listing.to_let
        )

    def after(self, observed: Figures) -> Figures:
        """What is known once ``observed`` is seen: a figure it lacks keeps its last value."""
        return Figures(
            observed.sale or self.sale,
            observed.rent or self.rent,
            observed.for_sale,
            observed.to_let,
        )

    def get(self, name: FigureName) -> Figure | None:
        return self.sale if name == "sale" else self.rent

    @property
    def deal(self) -> str:
        return {(True, True): "both", (True, False): "sale", (False, True): "rent"}.get(
            (self.for_sale, self.to_let), "none"
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "sale": self.sale.dump() if self.sale else None,
                "rent": self.rent.dump() if self.rent else None,
                "deal": self.deal,
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str | None) -> Figures | None:
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        deal = data.get("deal")
        return cls(
            Figure.load(data.get("sale")),
            Figure.load(data.get("rent")),
            deal in ("sale", "both"),
            deal in ("rent", "both"),
        )

    @classmethod
    def legacy(cls, amount: float | None, listing: Listing) -> Figures:
        """A state written before sale price and rent were separate: its one figure was
        the listing's asking figure (the sale price if it had one, else the rent)."""
        now = cls.of(listing)
        if amount is None:
            return cls(None, None, now.for_sale, now.to_let)
        sale = now.sale is not None
        like = now.sale or now.rent
        old = None
        if like is not None:
            # Only the lower end was kept: the range is taken to have kept its width.
            old = Figure(amount, amount + like.high - like.low, like.currency, like.unit)
        return cls(old if sale else None, None if sale else old, now.for_sale, now.to_let)


def _price_of(listing: Listing, name: FigureName) -> Price | None:
    return listing.price if name == "sale" else listing.rent


# --------------------------------------------------------------------------- detection


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
    figure: FigureName | None = None  # price events: the sale price or the rent
    since: str | None = None  # removed / back_on_market: when the removal was confirmed


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
    removed: Mapping[tuple[str, str], Removal] | None = None,
) -> Detection:
    """Events and new match state for ``subs`` over ``listings``.

    ``changed(listing)`` may say a listing is exactly as this query saw it last time; then
    only subscriptions in their first run look at it (nothing else can have changed).
    ``removed`` holds the removals (by subscription and listing id) of listings the source
    confirmed gone: one seen again is ``back_on_market`` for a subscription that was told
    of its removal (``new`` if it wants that but not ``back_on_market``), and nothing for
    one that was not told yet (it was never gone as far as it knows).
    """
    removed = removed or {}
    events: list[Event] = []
    unwanted: list[Event] = []
    matches: list[MatchState] = []
    baselining = [s for s in subs if s.looks_at_everything]
    for listing in listings:
        candidates = subs if changed(listing) else baselining
        seen = _Seen(listing)
        for sub in candidates:
            if not sub.accepts(listing):
                continue
            before = previous.get((sub.name, listing.id))
            state = _state_after(sub.name, listing, before, seen)
            if before is None:
                matches.append(state)
                gone = removed.get((sub.name, listing.id))
                if gone is not None and not gone.told:
                    continue
                if gone is not None and EventType.BACK_ON_MARKET in sub.notify:
                    back = Event(
                        sub.name,
                        sub.channel_id,
                        listing,
                        EventType.BACK_ON_MARKET,
                        since=gone.removed_at,
                    )
                    events.append(back)
                elif EventType.NEW in sub.notify and sub.announces_new(listing):
                    events.append(Event(sub.name, sub.channel_id, listing, EventType.NEW))
                continue
            if state == before:
                continue
            matches.append(state)
            for event in _changes(sub, listing, before, seen):
                (events if event.wanted else unwanted).append(event)
    return Detection(events, matches, unwanted)


class _Seen:
    """One listing as detection sees it for every subscription that looks at it.

    Its figures are read once, and the figures a subscription knew (stored as JSON) are
    read and written back once per distinct stored text: the subscriptions matching one
    listing mostly hold the same, and with 10,000 subscriptions reading and writing them
    for each was most of detection's cost.
    """

    __slots__ = ("_after", "_known", "_prices", "figures", "listing")

    def __init__(self, listing: Listing) -> None:
        self.listing = listing
        self.figures = Figures.of(listing)
        self._known: dict[str, Figures] = {}
        self._after: dict[Figures, str] = {}
        self._prices: dict[tuple[FigureName, Figure], Price] = {}

    def old_price(self, name: FigureName, was: Figure) -> Price:
        """The price (or rent) the listing had at ``was``, shaped like its price now: one
        frozen ``Price`` for every subscription told of the same change."""
        key = (name, was)
        price = self._prices.get(key)
        if price is None:
            price = self._prices[key] = was.as_price(_price_of(self.listing, name))
        return price

    def known(self, before: MatchState) -> Figures:
        """The figures the subscription knew before this observation (a state stored
        before they were, by its one figure: :meth:`Figures.legacy`)."""
        text = before.figures
        if text:
            hit = self._known.get(text)
            if hit is not None:
                return hit
            loaded = Figures.load(text)
            if loaded is not None:
                self._known[text] = loaded
                return loaded
        return Figures.legacy(before.last_price, self.listing)

    def after(self, known: Figures | None) -> str:
        """The stored text of what is known once this listing is seen."""
        if known is None:
            return self.figures.dump()
        text = self._after.get(known)
        if text is None:
            text = self._after[known] = known.after(self.figures).dump()
        return text


def _state_after(
    sub: str, listing: Listing, before: MatchState | None, seen: _Seen | None = None
) -> MatchState:
    """What the subscription knows of the listing after this observation.

    A price or status that this answer lacks (a field dropped by lenient normalization, or
    simply missing, or "on application") is not a change to "unknown": the last known
    figure is kept, so a real change made while the field was unreadable is still seen
    against it.
    """
    seen = seen or _Seen(listing)
    price, status = listing.asking_amount, listing.status
    known = None
    if before is not None:
        price = before.last_price if price is None else price
        status = before.last_status if status is None else status
        known = seen.known(before)
    return MatchState(sub, listing.source, listing.id, price, status, seen.after(known))


def _changes(
    sub: SubSpec, listing: Listing, before: MatchState, seen: _Seen | None = None
) -> list[Event]:
    seen = seen or _Seen(listing)
    old, new = seen.known(before), seen.figures

    def event(kind: EventType, **details: object) -> Event:
        return Event(
            sub.name,
            sub.channel_id,
            listing,
            kind,
            wanted=kind in sub.notify,
            **details,  # type: ignore[arg-type]
        )

    out: list[Event] = []
    # A deal type that changed is its own event, never a price change: the figure that
    # is new to the listing has nothing to be compared with.
    introduced: set[FigureName] = set()
    if new.to_let and not old.to_let:
        out.append(event(EventType.NOW_FOR_RENT))
        introduced.add("rent")
    if new.for_sale and not old.for_sale:
        out.append(event(EventType.NOW_FOR_SALE))
        introduced.add("sale")
    names: tuple[FigureName, ...] = ("sale", "rent")
    for name in names:
        was, now = old.get(name), new.get(name)
        if name in introduced or was is None or now is None:
            continue
        kind = was.direction(now)
        if kind is not None:
            out.append(event(kind, figure=name, old_price=seen.old_price(name, was)))
    if (
        listing.status is not None
        and before.last_status is not None
        and listing.status != before.last_status
    ):
        out.append(event(EventType.STATUS_CHANGE, old_status=before.last_status))
    return out


# --------------------------------------------------------------------------- grouping


@dataclass(frozen=True)
class Grouped:
    """One message to send: every change of a listing one poll found for one channel,
    for every subscription in that channel that wants one of them.

    ``changes`` are in leading order (:data:`LEADING_ORDER`); ``type`` is the leading
    one. ``state`` is what the channel has been told about the listing once this message
    is queued (it goes to the store with the message, in one transaction).
    """

    key: str
    channel_id: int
    listing: Listing
    changes: tuple[Change, ...]
    subscriptions: tuple[str, ...]
    state: ChannelState
    # No message: only unwanted events (the channel's state still moves on), or changes
    # the channel was already told of (their keys were used once and never again).
    silent: bool = False
    duplicate: bool = False
    # The keys of the changes in this group that the channel was already told of.
    told_before: tuple[str, ...] = ()

    @property
    def type(self) -> EventType:
        return self.changes[0].type

    @property
    def events(self) -> tuple[EventType, ...]:
        """Every event of the message, leading first, each once."""
        return tuple(dict.fromkeys(c.type for c in self.changes))

    @property
    def old_price(self) -> Price | None:
        return next((c.old_price for c in self.changes if c.type in _PRICE_EVENTS), None)

    @property
    def old_status(self) -> str | None:
        return next((c.old_status for c in self.changes if c.old_status is not None), None)


def _mark(state: ChannelState, aspect: str) -> tuple[int, str | None, bool] | None:
    for name, seq, value, told in state.marks:
        if name == aspect:
            return seq, value, told
    return None


def _with_mark(
    state: ChannelState, aspect: str, seq: int, value: str | None, told: bool
) -> ChannelState:
    marks = tuple(sorted([*(m for m in state.marks if m[0] != aspect), (aspect, seq, value, told)]))
    return replace(state, marks=marks)


def sequence(
    state: ChannelState | None,
    channel_id: int,
    listing: Listing,
    event: EventType,
    *,
    tell: bool = True,
    figure: FigureName | None = None,
) -> tuple[int, ChannelState, bool]:
    """The change sequence number of ``event`` in the channel, the channel's new state,
    and whether the channel was already told of this change.

    Each kind of change counts on its own: the sale price, the rent, the deal type, the
    status. The sequence moves on with every change a subscription in the channel
    observes, told or not (an unwanted price increase in between makes the next drop to
    an earlier figure a new change). A change to the value the channel observed last is
    that change, seen again through another subscription: same number, and if it was
    told already, a duplicate. So a key is used for at most one message, ever: no value
    can bring an old key back, even after its sent row was pruned.
    """
    if state is None:
        state = ChannelState(channel_id, listing.source, listing.id)
    if event is EventType.REMOVED:
        return 0, state, False  # the listing's state is gone with it
    if event in (EventType.NEW, EventType.BACK_ON_MARKET):
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
    value: str | None
    if event in _DEAL_EVENTS:
        aspect, value = "deal", Figures.of(listing).deal
    else:
        aspect = figure or "sale"
        now = Figure.of(_price_of(listing, aspect))
        value = now.token() if now is not None else None
    mark = _mark(state, aspect)
    if mark is None and aspect == "sale":
        # Written before the figures were told apart: the sale (asking) figure's number
        # is in price_seq, its value in last_price (the lower end).
        amount = listing.price.amount if listing.price else None
        same = (
            state.last_price is not None
            and amount is not None
            and abs(state.last_price - amount) <= _PRICE_EPSILON
        )
        mark = (state.price_seq, value if same else None, state.price_told)
    seq, last, told = mark or (0, None, True)
    if seq and value is not None and last == value:
        return seq, _with_mark(state, aspect, seq, last, told or tell), told and tell
    seq += 1
    state = _with_mark(state, aspect, seq, value, tell)
    if aspect == "sale":
        amount = listing.price.amount if listing.price else None
        state = replace(state, price_seq=seq, last_price=amount, price_told=tell)
    return seq, state, False


def group_events(
    events: Iterable[Event], states: Mapping[tuple[int, str], ChannelState] | None = None
) -> list[Grouped]:
    """One message per (channel, listing): every change found in this poll, naming every
    subscription that wants one of them, keyed from the channel's change sequence
    (``states``: the channel state loaded from the store, by (channel, listing id);
    missing means the channel saw nothing yet). ``new``, ``removed`` and
    ``back_on_market`` are messages of their own.

    Unwanted events (``wanted=False``) are left out of the message; a group of nothing
    else is ``silent``: no message, but the channel's sequence moves on. Order is kept:
    the first event of a group fixes the group's position, so messages go out in the
    order their events were detected.
    """
    groups: dict[tuple[int, str, str, str], list[Event]] = {}
    for event in events:
        alone = event.type.value if event.type in _ALONE else ""
        gkey = (event.channel_id, event.listing.source, event.listing.id, alone)
        groups.setdefault(gkey, []).append(event)
    current: dict[tuple[int, str], ChannelState] = dict(states or {})
    out: list[Grouped] = []
    for (channel_id, source, listing_id, _alone), members in groups.items():
        listing = members[0].listing
        kinds: dict[tuple[EventType, FigureName | None], list[Event]] = {}
        for member in members:
            kinds.setdefault((member.type, member.figure), []).append(member)
        state = current.get((channel_id, listing_id))
        shown: list[tuple[Change, list[Event]]] = []
        quiet: list[tuple[Change, list[Event]]] = []
        told_before: list[str] = []
        for (etype, figure), same in kinds.items():
            wanted = [m for m in same if m.wanted]
            seq, state, duplicate = sequence(
                state, channel_id, listing, etype, tell=bool(wanted), figure=figure
            )
            first = (wanted or same)[0]
            change = Change(etype, figure, first.old_price, first.old_status, seq, first.since)
            if duplicate:
                told_before.append(delivery_key(channel_id, source, listing_id, etype, seq, figure))
            (shown if wanted and not duplicate else quiet).append((change, wanted or same))
        assert state is not None
        current[(channel_id, listing_id)] = state
        parts = shown or quiet
        changes = tuple(sorted((c for c, _ in parts), key=lambda c: _RANK[c.type]))
        if shown:
            key = message_key(channel_id, source, listing_id, changes)
        elif told_before:
            key = told_before[0]
        else:
            key = message_key(channel_id, source, listing_id, changes)
        out.append(
            Grouped(
                key=key,
                channel_id=channel_id,
                listing=listing,
                changes=changes,
                subscriptions=tuple(sorted({m.subscription for _, ms in parts for m in ms})),
                state=state,
                silent=not shown and not told_before,
                duplicate=not shown and bool(told_before),
                told_before=tuple(told_before),
            )
        )
    return out
