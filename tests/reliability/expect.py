"""What the channels must end up holding, computed from the market alone.

The model never looks at listingbot's state or code: it replays the market's history
against the subscriptions with the semantics of issue 2 (``listingbot/detection.py``):

- per (subscription, listing): ``new`` once, when the subscription first sees it;
- afterwards ``price_drop`` / ``price_increase`` / ``status_change`` whenever the observed
  asking figure / status differs from the last one the subscription was told about;
- one message per (channel, listing) per observation, telling of each of its events and
  naming every subscription in that channel that wants one of them (``new`` is a message
  of its own); removal makes no event.

It assumes every market step is observed by the service before the next one (the tests
make sure of that), and ``first_run: post`` for every subscription.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from listingbot.models import SOURCES
from listingbot.sim import SimStack
from listingbot.sim.market import Market, MarketEvent

ALL_EVENTS = frozenset({"new", "price_drop", "price_increase", "status_change"})

# (channel, source, listing id, event, value): value is the new asking figure of a price
# event, the new status of a status change, None for ``new``.
Message = tuple[int, str, str, str, object]
Named = tuple[int, str, str, str, object, tuple[str, ...]]


@dataclass(frozen=True)
class Sub:
    """A subscription as the test writes it and as the model evaluates it."""

    name: str
    source: str
    channel: int
    filters: str  # YAML flow mapping, sent upstream as is
    selects: Callable[[dict[str, Any]], bool]  # the same filter, on a market record
    notify: frozenset[str] = ALL_EVENTS
    first_run: str = "post"  # Expectation models "post" only; Deployment models both

    def yaml(self) -> str:
        notify = ", ".join(sorted(self.notify))
        return (
            f"  - name: {self.name}\n"
            f"    source: {self.source}\n"
            f"    channel: {self.channel}\n"
            f"    filters: {self.filters}\n"
            f"    notify: [{notify}]\n"
            f"    first_run: {self.first_run}\n"
        )


def money(value: Any) -> float | None:
    """A figure as the market serves it: a number, or Kato's text form ("£1,250.50")."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return float(value.replace("£", "").replace(",", "").strip())
    raise TypeError(f"not a money value: {value!r}")


def asking_of(source: str, record: dict[str, Any]) -> float | None:
    """The figure a price change moves (Kotohomes ``price``; Kato sale price, else rent)."""
    if source == "kotohomes":
        return money(record.get("price"))
    price = record.get("price")
    if record.get("for_sale") and isinstance(price, dict):
        value = money(price.get("value"))
        if value is not None:
            return value
    rent = record.get("rent")
    return money(rent.get("from")) if isinstance(rent, dict) else None


class Expectation:
    """The messages that must exist, as a multiset, built one observation at a time."""

    def __init__(self, market: Market, subs: Sequence[Sub]) -> None:
        self.market = market
        self.subs = tuple(subs)
        self.messages: Counter[Message] = Counter()
        self.named: Counter[Named] = Counter()
        self.market_events = 0
        self._state: dict[tuple[str, str], tuple[float | None, str | None]] = {}
        self._seen_by: dict[tuple[str, str], tuple[Sub, ...]] = {}
        self._told: dict[tuple[str, str, str], tuple[float | None, str | None]] = {}

    def observe_start(self) -> None:
        """The first poll: everything live now."""
        keys: list[tuple[str, str]] = []
        for source in SOURCES:
            for record in self.market.live(source):
                key = (source, str(record["id"]))
                self._track(key, record, asking_of(source, record))
                keys.append(key)
        self._observe(keys)

    def step(self) -> list[MarketEvent]:
        """One market tick, and the service's next observation of it."""
        events = self.market.step()
        self.market_events += len(events)
        touched: list[tuple[str, str]] = []
        for event in events:
            key = (event.source, event.listing_id)
            if event.kind == "created":
                record = self.market.find(event.source, event.listing_id)
                self._track(key, record or {}, money(event.new))
            elif event.kind == "price_changed":
                self._state[key] = (money(event.new), self._state[key][1])
            elif event.kind == "status_changed":
                self._state[key] = (self._state[key][0], event.new)
            else:  # removed: nothing to say, and nothing to observe any more
                self._state.pop(key, None)
            touched.append(key)
        self._observe(dict.fromkeys(touched))
        return events

    def visible_counts(self) -> dict[str, int]:
        """How many live listings each subscription's query returns now."""
        return {
            sub.name: sum(1 for key in self._state if sub in self._seen_by[key])
            for sub in self.subs
        }

    def _track(self, key: tuple[str, str], record: dict[str, Any], asking: float | None) -> None:
        status = record.get("status")
        self._state[key] = (asking, status if isinstance(status, str) else None)
        self._seen_by[key] = tuple(
            s for s in self.subs if s.source == key[0] and record and s.selects(record)
        )

    def _observe(self, keys: Iterable[tuple[str, str]]) -> None:
        batch: dict[Message, set[str]] = {}
        for key in keys:
            if key not in self._state:
                continue
            asking, status = self._state[key]
            for sub in self._seen_by[key]:
                told = self._told.get((sub.name, *key))
                self._told[(sub.name, *key)] = (asking, status)
                found: list[tuple[str, object]] = []
                if told is None:
                    found.append(("new", None))
                else:
                    old_asking, old_status = told
                    if asking is not None and old_asking is not None and asking != old_asking:
                        kind = "price_drop" if asking < old_asking else "price_increase"
                        found.append((kind, asking))
                    if status is not None and old_status is not None and status != old_status:
                        found.append(("status_change", status))
                for event, value in found:
                    if event in sub.notify:
                        message = (sub.channel, key[0], key[1], event, value)
                        batch.setdefault(message, set()).add(sub.name)
        for message, names in _combined(batch).items():
            self.messages[message] += 1
            self.named[(*message, tuple(sorted(names)))] += 1


KOTOHOMES_LIMIT = 50  # a Kotohomes answer holds at most this many listings


class Deployment:
    """The expectation for what a real deployment can see, one observation per step.

    Unlike :class:`Expectation` it does not assume every live listing is in view:

    - a Kato query sees every listing it matches (a sweep is complete);
    - a Kotohomes query sees the 50 newest it matches by ``updated_at`` and the listings
      created since its last poll; its first poll walks the whole query from the oldest
      creation (the queries here stay within the walk's reach). So after the first run
      a listing can leave the view and come back, unchanged, weeks later;
    - a listing in a query's view is looked at by the query's subscriptions in their
      first run, and by the others only when the query saw it change (or never saw it);
    - ``first_run: baseline`` records without posting; ``post`` announces;
    - ``new`` is once per (channel, listing); changes are measured per subscription
      against what it was last told, one message per (channel, listing, event, value)
      per observation naming every subscription in the channel that saw it;
    - subscriptions are added (``add``: their first run is the next observation) and
      removed (``remove``: from the next observation on).

    Filters must be upstream-only (one query per distinct ``filters``), and the market
    must change fewer than 50 listings a step per query (so every change is in view).
    """

    def __init__(self, market: Market, subs: Sequence[Sub]) -> None:
        self.market = market
        self.subs: list[Sub] = list(subs)
        self.messages: Counter[Message] = Counter()
        self.named: Counter[Named] = Counter()
        self.market_events = 0
        self._first: set[str] = {s.name for s in subs}
        self._told: dict[tuple[str, str, str], tuple[float | None, str | None]] = {}
        self._query_saw: dict[tuple[str, str, str], tuple[float | None, str | None]] = {}
        self._polled: set[str] = set()
        self._announced: set[tuple[int, str, str]] = set()

    def observe_start(self) -> None:
        self._observe(set())

    def step(self) -> list[MarketEvent]:
        events = self.market.step()
        self.market_events += len(events)
        created = {(e.source, e.listing_id) for e in events if e.kind == "created"}
        self._observe(created)
        return events

    def add(self, sub: Sub) -> None:
        self.subs.append(sub)
        self._first.add(sub.name)

    def remove(self, name: str) -> None:
        self.subs = [s for s in self.subs if s.name != name]

    def visible_counts(self) -> dict[str, int]:
        """How many live listings each subscription's query matches now (in view or not)."""
        return {
            sub.name: sum(1 for r in self.market.live(sub.source) if sub.selects(r))
            for sub in self.subs
        }

    def _view(
        self, query: str, source: str, matching: list[dict[str, Any]], created: set[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        if source == "kato":
            return matching

        def newest(field: str) -> list[dict[str, Any]]:
            # Newest first; equal times in id order (as the API breaks ties).
            by_id = sorted(matching, key=lambda r: str(r.get("id")))
            ordered = sorted(by_id, key=lambda r: _when(r.get(field)), reverse=True)
            return ordered[:KOTOHOMES_LIMIT]

        if query not in self._polled:
            return matching
        view = {str(r["id"]): r for r in newest("updated_at")}
        if True:
            view.update((str(r["id"]), r) for r in matching if (source, str(r["id"])) in created)
        return list(view.values())

    def _observe(self, created: set[tuple[str, str]]) -> None:
        batch: dict[Message, set[str]] = {}
        queries: dict[tuple[str, str], list[Sub]] = {}
        for sub in self.subs:
            queries.setdefault((sub.source, sub.filters), []).append(sub)
        for (source, query), subs in queries.items():
            matching = [r for r in self.market.live(source) if subs[0].selects(r)]
            for record in self._view(query, source, matching, created):
                key = (source, str(record["id"]))
                status = record.get("status")
                state = (asking_of(source, record), status if isinstance(status, str) else None)
                changed = self._query_saw.get((query, *key)) != state
                self._query_saw[(query, *key)] = state
                for sub in subs:
                    first = sub.name in self._first
                    if not (changed or first):
                        continue
                    told = self._told.get((sub.name, *key))
                    self._told[(sub.name, *key)] = state
                    for event, value in _found(
                        told, state, quiet=first and sub.first_run == "baseline"
                    ):
                        if event in sub.notify:
                            message = (sub.channel, key[0], key[1], event, value)
                            batch.setdefault(message, set()).add(sub.name)
            self._polled.add(query)
        self._first.clear()
        for message, names in _combined(batch).items():
            if message[3] == "new":
                if message[:3] in self._announced:
                    continue  # `new` is once per channel and listing
                self._announced.add(message[:3])
            self.messages[message] += 1
            self.named[(*message, tuple(sorted(names)))] += 1


def _combined(batch: dict[Message, set[str]]) -> dict[Message, set[str]]:
    """The changes of one listing for one channel in one observation are one message,
    naming every subscription that wants any of them (``new`` stays its own)."""
    names: dict[tuple[object, ...], set[str]] = {}
    for message, subs in batch.items():
        if message[3] != "new":
            names.setdefault(message[:3], set()).update(subs)
    return {
        message: subs if message[3] == "new" else names[message[:3]]
        for message, subs in batch.items()
    }


def _found(
    told: tuple[float | None, str | None] | None,
    state: tuple[float | None, str | None],
    *,
    quiet: bool,
) -> list[tuple[str, object]]:
    if told is None:
        return [] if quiet else [("new", None)]
    out: list[tuple[str, object]] = []
    (old_asking, old_status), (asking, status) = told, state
    if asking is not None and old_asking is not None and asking != old_asking:
        out.append(("price_drop" if asking < old_asking else "price_increase", asking))
    if status is not None and old_status is not None and status != old_status:
        out.append(("status_change", status))
    return out


def _when(value: Any) -> datetime:
    return datetime.fromisoformat(str(value)) if value else datetime.min.replace(tzinfo=UTC)


@dataclass
class Posted:
    """What the ChatKitty simulator holds, in the model's terms."""

    messages: Counter[Message]
    named: Counter[Named]
    keys: Counter[str]

    @property
    def duplicated_keys(self) -> dict[str, int]:
        return {key: n for key, n in self.keys.items() if n > 1}


def posted(sims: SimStack) -> Posted:
    messages: Counter[Message] = Counter()
    named: Counter[Named] = Counter()
    keys: Counter[str] = Counter()
    for channel, stored in sims.chatkitty.messages.items():
        # A listing's later events are replies in the thread of its first message.
        replies = [r for m in stored for r in sims.chatkitty.thread(int(m["id"]))]
        for message in [*stored, *replies]:
            props = message.get("properties") or {}
            if "listingbot" not in props:
                continue  # people talking in the channel
            meta, listing = props["listingbot"], props["listing"]
            # A message tells of every change of its listing in one poll: one row each.
            for event in meta.get("events") or [meta["event"]]:
                value: object = None
                if event in ("price_drop", "price_increase"):
                    value = _listing_asking(listing)
                elif event == "status_change":
                    value = listing.get("status")
                row = (channel, meta["source"], meta["listing_id"], event, value)
                messages[row] += 1
                named[(*row, tuple(sorted(meta["subscriptions"])))] += 1
            keys[meta["key"]] += 1
    return Posted(messages, named, keys)


def _listing_asking(listing: dict[str, Any]) -> float | None:
    for name in ("price", "rent"):
        block = listing.get(name)
        if isinstance(block, dict) and block.get("amount") is not None:
            return float(block["amount"])
    return None
