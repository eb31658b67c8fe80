"""One poll of one source: plan the upstream queries, fetch, normalize, detect, commit.

Upstream requests are the scarce resource, so the plan groups subscriptions by their
upstream filters: N subscriptions with the same query cost one query. Each query's result
goes through change detection for just the subscriptions that share it; everything the
poll learned is then committed in one transaction together with the messages to send.

A query that fails changes nothing for its subscriptions (no cursor moves, no baseline,
no inference from missing records); the queries that succeeded are still committed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from listingbot.clients.kato import KatoClient
from listingbot.clients.kotohomes import KotohomesClient
from listingbot.clock import Clock
from listingbot.config import Subscription
from listingbot.detection import Event, SubSpec, detect, fingerprint, group_events
from listingbot.errors import ListingBotError, UpstreamAuthError, UpstreamRejected
from listingbot.matching import local_match
from listingbot.messages import render
from listingbot.metrics import Metrics
from listingbot.models import Listing, Source
from listingbot.normalize import MalformedRecord, normalize_kato, normalize_kotohomes
from listingbot.store import Cursor, NewMessage, PollRecord, SeenListing, Store

log = structlog.get_logger("listingbot.poll")


@dataclass(frozen=True)
class Query:
    """One distinct upstream query and the subscriptions that share it."""

    key: str
    source: Source
    params: tuple[tuple[str, str], ...]
    subscriptions: tuple[Subscription, ...]


def plan(source: Source, subscriptions: Sequence[Subscription]) -> list[Query]:
    """Group subscriptions by identical upstream filters: one query per group."""
    groups: dict[tuple[tuple[str, str], ...], list[Subscription]] = {}
    for sub in subscriptions:
        if sub.source == source:
            groups.setdefault(sub.upstream_params(), []).append(sub)
    return [
        Query(query_key(source, params), source, params, tuple(subs))
        for params, subs in groups.items()
    ]


def query_key(source: str, params: tuple[tuple[str, str], ...]) -> str:
    raw = source + "?" + "&".join(f"{k}={v}" for k, v in params)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


@dataclass
class Fetched:
    listings: list[Listing]
    cursor: Cursor
    skipped: int = 0
    gap: bool = False
    requests: int = 0


@dataclass
class PollOutcome:
    source: str
    ok: bool = True
    queries: int = 0
    failed_queries: int = 0
    requests: int = 0
    listings: int = 0
    skipped: int = 0
    events: int = 0
    queued: int = 0
    gaps: int = 0
    duration_s: float = 0.0
    error: str | None = None
    auth_failed: bool = False
    messages: list[NewMessage] = field(default_factory=list)


class Fetcher(Protocol):
    async def fetch(self, query: Query, cursor: Cursor | None) -> Fetched: ...


class KotohomesFetcher:
    """Two requests per query: the newest by creation (new listings since the high-water
    mark) and the newest by update (price and status changes). Kotohomes has no paging,
    so a full page that is entirely newer than the last mark may hide changes: that is
    reported as a possible gap instead of being passed over in silence."""

    def __init__(self, client: KotohomesClient, *, limit: int) -> None:
        self.client = client
        self.limit = limit

    async def fetch(self, query: Query, cursor: Cursor | None) -> Fetched:
        created_hw = _parse(cursor.created_hw) if cursor else None
        updated_hw = _parse(cursor.updated_hw) if cursor else None
        created = await self.client.search(
            query.params, sort_by="created_at", created_min=created_hw, limit=self.limit
        )
        updated = await self.client.search(query.params, sort_by="updated_at", limit=self.limit)
        new_created, bad_created = _normalize_all(query.source, created)
        new_updated, bad_updated = _normalize_all(query.source, updated)
        listings = {lst.id: lst for lst in [*new_created, *new_updated]}
        skipped = len(bad_created | bad_updated)
        gap = False
        if created_hw is not None and len(created) >= self.limit:
            marks = [lst.created_at for lst in new_created if lst.created_at]
            gap = bool(marks) and min(marks) > created_hw
        if updated_hw is not None and len(updated) >= self.limit:
            marks = [lst.updated_at for lst in new_updated if lst.updated_at]
            gap = gap or (bool(marks) and min(marks) > updated_hw)
        created_marks = [lst.created_at for lst in listings.values() if lst.created_at]
        updated_marks = [lst.updated_at for lst in listings.values() if lst.updated_at]
        new_cursor = Cursor(
            query.key,
            query.source,
            _max_iso(created_hw, created_marks),
            _max_iso(updated_hw, updated_marks),
        )
        return Fetched(list(listings.values()), new_cursor, skipped, gap, requests=2)


class KatoFetcher:
    """Kato has no "updated since": every poll sweeps all pages and diffs locally."""

    def __init__(self, client: KatoClient) -> None:
        self.client = client

    async def fetch(self, query: Query, cursor: Cursor | None) -> Fetched:
        del cursor
        sweep = await self.client.sweep(query.params)
        normalized, bad = _normalize_all(query.source, sweep.records)
        listings = {lst.id: lst for lst in normalized}
        skipped = len(bad)
        marks = [lst.updated_at for lst in listings.values() if lst.updated_at]
        return Fetched(
            list(listings.values()),
            Cursor(query.key, query.source, None, _max_iso(None, marks)),
            skipped,
            requests=sweep.pages,
        )


def _normalize_all(source: str, records: Sequence[Any]) -> tuple[list[Listing], set[str]]:
    """Normalized listings, and an identity for each record that had to be skipped."""
    out: list[Listing] = []
    bad: set[str] = set()
    for index, raw in enumerate(records):
        try:
            out.append(_normalize_one(source, raw))
        except MalformedRecord as err:
            bad.add(err.record_id or f"#{index}")
            log.warning(
                "record_skipped", source=source, record_id=err.record_id, reason=err.reason[:200]
            )
    return out, bad


def _normalize_one(source: str, raw: Any) -> Listing:
    if not isinstance(raw, dict):
        raise MalformedRecord(None, "record is not an object")
    return normalize_kotohomes(raw) if source == "kotohomes" else normalize_kato(raw)


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _max_iso(current: datetime | None, marks: Sequence[datetime]) -> str | None:
    best = max([*marks, *([current] if current else [])], default=None)
    return None if best is None else best.isoformat()


class Poller:
    """Polls one source for all its subscriptions."""

    def __init__(
        self,
        source: Source,
        fetcher: Fetcher,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        *,
        channels: dict[str, int],
    ) -> None:
        self.source = source
        self.fetcher = fetcher
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.channels = channels
        self.subscriptions: tuple[Subscription, ...] = ()
        self.queries: list[Query] = []

    def set_subscriptions(self, subs: Sequence[Subscription], channels: dict[str, int]) -> None:
        self.subscriptions = tuple(s for s in subs if s.source == self.source)
        self.channels = channels
        self.queries = plan(self.source, self.subscriptions)

    async def poll(self, *, dry_run: bool = False) -> PollOutcome:
        started = time.perf_counter()
        outcome = PollOutcome(self.source, queries=len(self.queries))
        baselining = await self._baselining(dry_run)
        cursors = await self.store.load_cursors(q.key for q in self.queries)
        record = PollRecord(self.source)
        events: list[Event] = []
        errors: list[str] = []
        for query in self.queries:
            try:
                fetched = await self.fetcher.fetch(query, cursors.get(query.key))
            except ListingBotError as err:
                outcome.failed_queries += 1
                outcome.auth_failed = outcome.auth_failed or isinstance(err, UpstreamAuthError)
                detail = str(err)
                if isinstance(err, UpstreamRejected) and err.hint:
                    detail = f"{detail} (hint: {err.hint})"
                names = ", ".join(s.name for s in query.subscriptions)
                errors.append(f"{detail} [subscriptions: {names}]")
                if isinstance(err, UpstreamAuthError):
                    break  # the same credentials would fail every other query too
                continue
            outcome.requests += fetched.requests
            outcome.listings += len(fetched.listings)
            outcome.skipped += fetched.skipped
            if fetched.gap:
                outcome.gaps += 1
                log.warning(
                    "possible_missed_window",
                    source=self.source,
                    subscriptions=[s.name for s in query.subscriptions],
                    detail="a full page was newer than the last poll; some changes may be missed",
                )
            await self._detect(query, fetched, baselining, record, events)
        if outcome.failed_queries and outcome.failed_queries == len(self.queries):
            outcome.ok = False
        outcome.error = "; ".join(errors) or None
        record.messages = self._messages(events)
        record.listings = outcome.listings
        outcome.events = record.events
        outcome.messages = record.messages
        if not dry_run and (outcome.ok or record.seen):
            outcome.queued = await self.store.record_poll(record)
        if not dry_run and outcome.error:
            await self.store.record_poll_failure(self.source, outcome.error)
            outcome.ok = False
        outcome.duration_s = time.perf_counter() - started
        self._observe(outcome)
        return outcome

    async def _baselining(self, dry_run: bool) -> set[str]:
        regs = [(s.name, s.source, s.filter_hash) for s in self.subscriptions]
        if dry_run:
            return await self.store.needs_baseline(regs)
        return await self.store.sync_subscriptions(regs)

    async def _detect(
        self,
        query: Query,
        fetched: Fetched,
        baselining: set[str],
        record: PollRecord,
        events: list[Event],
    ) -> None:
        ids = [lst.id for lst in fetched.listings]
        old_prints = await self.store.load_fingerprints(query.key, ids)
        prints = {lst.id: fingerprint(lst) for lst in fetched.listings}
        specs = [
            SubSpec(
                name=s.name,
                channel_id=self.channels[s.name],
                notify=s.notify,
                baselining=s.name in baselining and s.first_run == "baseline",
                accepts=_acceptor(s),
            )
            for s in query.subscriptions
        ]
        needs_state = [
            lst.id for lst in fetched.listings if old_prints.get(lst.id) != prints[lst.id]
        ]
        if any(s.baselining for s in specs):
            needs_state = ids
        previous = await self.store.load_matches(
            self.source, [s.name for s in query.subscriptions], needs_state
        )
        result = detect(
            specs,
            fetched.listings,
            previous,
            changed=lambda lst: old_prints.get(lst.id) != prints[lst.id],
        )
        for event in result.events:
            self.metrics.events.labels(event.type.value).inc()
        record.events += len(result.events)
        record.matches.extend(result.matches)
        record.cursors.append(fetched.cursor)
        record.baselined.extend(s.name for s in query.subscriptions if s.name in baselining)
        record.seen.extend(
            SeenListing(
                query.key,
                lst.id,
                lst.source,
                prints[lst.id],
                lst.asking_amount,
                lst.status,
            )
            for lst in fetched.listings
        )
        events.extend(result.events)

    def _messages(self, events: list[Event]) -> list[NewMessage]:
        """One message per (channel, listing, event) across every query of this poll."""
        out: list[NewMessage] = []
        for grouped in group_events(events):
            body = render(
                grouped.listing,
                grouped.type,
                grouped.subscriptions,
                old_price=grouped.old_price,
                old_status=grouped.old_status,
            )
            out.append(
                NewMessage(
                    key=grouped.key,
                    channel_id=grouped.channel_id,
                    source=grouped.listing.source,
                    listing_id=grouped.listing.id,
                    event=grouped.type.value,
                    subscriptions=grouped.subscriptions,
                    body=body,
                    properties={
                        "listingbot": {
                            "key": grouped.key,
                            "event": grouped.type.value,
                            "source": grouped.listing.source,
                            "listing_id": grouped.listing.id,
                            "subscriptions": list(grouped.subscriptions),
                        },
                        "listing": grouped.listing.model_dump(mode="json", exclude_none=True),
                    },
                )
            )

        return out

    def _observe(self, outcome: PollOutcome) -> None:
        m = self.metrics
        m.polls.labels(self.source, "ok" if outcome.ok else "failed").inc()
        m.poll_duration.labels(self.source).observe(outcome.duration_s)
        m.listings_seen.labels(self.source).inc(outcome.listings)
        m.records_skipped.labels(self.source).inc(outcome.skipped)
        m.possible_gaps.labels(self.source).inc(outcome.gaps)
        m.source_up.labels(self.source).set(1 if outcome.ok else 0)


def _acceptor(sub: Subscription) -> Any:
    local = sub.local
    if local.is_empty():
        return lambda _listing: True
    return lambda listing: local_match(local, listing)
