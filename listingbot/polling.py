"""One poll of one source, top to bottom: plan -> fetch -> read -> match -> detect ->
compose -> commit.

- **plan**: upstream requests are the scarce resource, so subscriptions are grouped by
  their upstream filters (N subscriptions with the same query cost one query). A poll
  works on one immutable :class:`Snapshot`: the plan when it started (a reload plans the
  next poll) and the state its subscriptions were in (first runs, cursors).
- **fetch** and **read**: each query's answer comes from the source's fetcher, which
  passes every page it receives to the read stage (:class:`Reader`): the one place
  records are normalized. A long answer (a Kato sweep) comes page by page
  (``Fetched.pages``) and goes through match and detect a page at a time; what each page
  teaches is staged in the state file (``Store.stage_soon``), not held, so memory is bounded
  by a page, not by the account.
- **match**: each query's subscriptions are indexed by their local filters
  (``MatchIndex``); a listing is matched when its fingerprint differs from what the
  query recorded last time, or when a subscription in its first run looks at it.
- **detect**: change detection (``listingbot.detection``) for just the subscriptions
  whose local filters accept each listing.
- **compose**: events grouped per channel and composed into messages
  (``listingbot.outbox``).
- **commit**: everything the poll learned (the staged pages merged), in one transaction
  with the messages to send.

A query that fails changes nothing for its subscriptions (no cursor moves, no baseline,
no inference from missing records; a sweep failing midway discards what its pages
staged); the queries that succeeded are still committed.

Where the time goes, and what keeps it down (``make bench`` measures it):

- upstream latency: a few queries are fetched ahead of the one being processed
  (``FETCH_AHEAD``), so waits overlap instead of adding up;
- normalizing: a record identical to the one its query read last time (its digest is
  in the state file) is not normalized again (``Reader``), even by a new process; only
  changed records are. A page of a sweep served again byte for byte, its listings still
  recorded as it held them, is not read at all: the store stages it as seen in one
  statement (``Store.load_page``);
- the store's thread: a page is staged while the next is read; a query's first sweep
  (nothing recorded) asks the store nothing per page, so its reads never wait on that
  staging (``ReadPage.first_counts``), and at most ``STAGE_AHEAD`` pages wait for it;
- matching: through the index, a listing costs a few set operations plus its matches,
  not one check per subscription; an unchanged listing is matched only for the
  subscriptions in their first run.

Why one module of this size (~1,000 lines): the stages are kept in the order they run, so
the poll reads as one story. The read stage (``Reader``) is the part to move to a module
of its own once the streaming sweep of #15 has settled its shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import marshal
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import structlog
from pydantic import ValidationError

from listingbot import sources
from listingbot.clock import Clock
from listingbot.config import MessagesConfig, Subscription
from listingbot.detection import Event, SubSpec, detect, group_events
from listingbot.digests import DIGEST_EVENT, DigestItem, Reason, build_digest, quiet_until
from listingbot.errors import ListingBotError, UpstreamAuthError, UpstreamError, UpstreamRejected
from listingbot.logs import Throttle
from listingbot.matching import MatchIndex
from listingbot.messages import SharedFields
from listingbot.metrics import Metrics
from listingbot.models import EventType, Listing, Source
from listingbot.normalize import FieldProblem, MalformedRecord, read_record_id
from listingbot.outbox import ENVELOPE, compose
from listingbot.records import (
    ChannelState,
    Cursor,
    Facts,
    MatchState,
    Observation,
    OutgoingMessage,
    PageMark,
    Removal,
    WireRecord,
)
from listingbot.sources.base import Fetched, Fetcher, Normalizer, Query, Read, ReadPage
from listingbot.store import (
    HeldMessage,
    PollRecord,
    Pruned,
    Release,
    ServedBefore,
    Store,
    Sweep,
)

log = structlog.get_logger("listingbot.poll")

RECORD_SKIPPED_EVERY_S = 3600.0

# Upstream latency overlaps instead of adding up: a source polled for 1,500 distinct
# queries at 100 ms a request would spend five minutes a cycle waiting, one by one. The
# poller keeps this many queries in flight ahead of the one it is processing, so memory
# holds at most this many answers; a source's own limiter still paces the requests.
FETCH_AHEAD = 4

# Housekeeping deletes rows across the whole state file; once an hour keeps it cheap and
# the file bounded (retention is measured in days).
PRUNE_EVERY = timedelta(hours=1)

# A long-unseen listing confirmed to exist is asked about again after this long.
RECHECK_EVERY = timedelta(days=1)

# An empty answer is more often a glitch than an empty market: a first run completes on
# an empty answer only after this many of them in a row.
EMPTY_ANSWERS_TO_BASELINE = 3

# A source answering 400/422 to one query refused that query's filters, not the source:
# the query's subscriptions fail (named), the source and its other queries carry on.
QUERY_REJECTED = frozenset({400, 422})


# ---------------------------------------------------------------- plan


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


@dataclass(frozen=True)
class Plan:
    """What one poll works on, fixed when the poll starts.

    A reload builds a new plan; a poll in flight keeps the one it started with, so a
    reload never changes a poll in flight: its subscriptions, their channels, the
    queries and the match indexes (whose positions refer to the query's subscriptions)
    always belong together.
    """

    subscriptions: tuple[Subscription, ...] = ()
    channels: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    queries: tuple[Query, ...] = ()
    indexes: Mapping[str, MatchIndex[int]] = field(default_factory=lambda: MappingProxyType({}))
    messages: MessagesConfig = field(default_factory=MessagesConfig)  # top-level ``messages``

    @classmethod
    def build(
        cls,
        source: Source,
        subs: Sequence[Subscription],
        channels: Mapping[str, int],
        messages: MessagesConfig | None = None,
    ) -> Plan:
        mine = tuple(s for s in subs if s.source == source)
        queries = tuple(plan(source, mine))
        return cls(
            mine,
            MappingProxyType({s.name: channels[s.name] for s in mine if s.name in channels}),
            queries,
            # One index per query over its subscriptions' local filters, built once per
            # configuration rather than once per poll.
            MappingProxyType(
                {
                    q.key: MatchIndex((i, s.local) for i, s in enumerate(q.subscriptions))
                    for q in queries
                }
            ),
            messages or MessagesConfig(),
        )

    @cached_property
    def by_name(self) -> Mapping[str, Subscription]:
        """The subscriptions by name, built once per plan (not once per message: with
        10,000 subscriptions building it costs more than the message it is asked for)."""
        return MappingProxyType({s.name: s for s in self.subscriptions})

    def digest_over(self, names: Iterable[str]) -> int:
        """The burst limit of a channel's messages for the subscriptions ``names``: the
        lowest ``digest_over`` among them, and 0 (no digest) if any of them says 0."""
        subs = self.by_name
        limits = {
            self.messages.digest_over if sub.digest_over is None else sub.digest_over
            for sub in (subs[n] for n in names if n in subs)
        }
        return 0 if not limits or 0 in limits else min(limits)

    def threads(self, names: Iterable[str]) -> bool:
        """Whether a message for the subscriptions ``names`` replies in its listing's
        thread: ``threads``, unless one of them turns it off."""
        return all(self._messages_key(names, "threads"))

    def photos(self, names: Iterable[str]) -> bool:
        """Whether a message for the subscriptions ``names`` carries its listing's photo:
        when one of them turns ``photos`` on."""
        return any(self._messages_key(names, "photos"))

    def _messages_key(self, names: Iterable[str], key: str) -> list[bool]:
        subs = self.by_name
        default = bool(getattr(self.messages, key))
        values = [getattr(subs[n], key) for n in names if n in subs]
        return [default if value is None else bool(value) for value in values] or [default]

    def labels(self, names: Iterable[str]) -> tuple[str, ...]:
        """What the subscriptions ``names`` are called in headlines (``label``, else the
        name)."""
        subs = self.by_name
        return tuple(sorted({(subs[n].label if n in subs else None) or n for n in names}))


@dataclass(frozen=True)
class Snapshot:
    """Everything one poll works on, fixed when it starts: the plan, and the state each
    subscription was in (in its first run; since when its first run's query answered
    nothing) with each query's cursor, and which subscriptions have any detection state
    (match rows or removals): only this poll's commit writes it, so for the others the
    store has nothing to answer and is not asked."""

    plan: Plan
    first_run: frozenset[str]
    empty_since: Mapping[str, datetime]
    cursors: Mapping[str, Cursor]
    stateful: frozenset[str]


# One query's listings worth detecting changes on, each with the subscriptions to ask and
# what gives the whole listing: detection reads only facts (price, rent, deal type,
# status, dates), so it runs on the listing as matched, lean or not
# (``Observation.matchable``), and an event it finds carries the whole one.
Work = list[tuple[Listing, list[SubSpec], Callable[[], Listing]]]


# ---------------------------------------------------------------- read


class Reader:
    """Normalizes upstream records, knowing what the state file recorded of each.

    A record whose raw content is byte for byte what its query saw last time (its digest
    is the one the state file holds, ``Store.load_known``) normalizes to the same listing
    (normalization is a pure function), so its facts are taken from the state file and
    the listing itself is only built when change detection needs it: on a typical poll
    most records are unchanged, and normalizing (text cleaning, validation) is the most
    expensive step between the response bytes and the database. Nothing is held from one
    page to the next but a small cache (``FRESH_MAX``): memory holds the page being read,
    however large the account, and a restarted service skips the same work a running one
    does.
    """

    def __init__(
        self,
        source: Source,
        normalize: Normalizer,
        *,
        lean: Normalizer | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        # The source's lean normalizer, if it has one: a record is read lean and
        # normalized whole only when a subscription accepts it (``Observation.listing``).
        self._lean = lean
        # Records read lately in this poll (Kotohomes serves a record in both of a query's
        # answers): normalized, and their dropped fields counted, once.
        self._fresh: dict[bytes, Facts] = {}
        # The source's normalizer (the fetcher's, which knows its options).
        self._normalize = normalize
        # Fields dropped from the records normalized since the last take_dropped().
        self._dropped: Counter[str] = Counter()
        # The same bad record comes back every poll: warn about it once an hour (the
        # records_skipped metric still counts every time).
        self._warned = Throttle(RECORD_SKIPPED_EVERY_S, now)

    def read(
        self, records: Sequence[Any], known: Mapping[str, Facts] | None = None
    ) -> tuple[list[Observation], set[str]]:
        """The records as observations, and an identity for each one that was skipped.

        ``known`` is what the query recorded of these listings last time, by id (with the
        digest of the record it read). A field the normalizer drops is logged once per
        change of the record and counted.
        """
        out: list[Observation] = []
        bad: set[str] = set()
        for index, raw in enumerate(records):
            if type(raw) is not dict and not isinstance(raw, Mapping):
                bad.add(f"@{index}")
                if self._warned.allow(None):
                    log.warning(
                        "record_skipped",
                        source=self.source,
                        record_id=None,
                        reason="not an object",
                    )
                continue
            digest = _digest(raw)
            # Already read in this poll, or what the query recorded of it last time: byte
            # for byte the same record, normalized (its dropped fields counted) once.
            facts = None
            if digest is not None:
                facts = self._fresh.get(digest)
                if facts is None and known:
                    facts = _known_facts(raw, digest, known)
            listing = None
            # Lean only with a digest: the fingerprint is then the record's, whichever way
            # it was read (without one it is the listing's, and must be of the whole one).
            lean = self._lean if digest is not None else None
            if facts is None:
                problems: list[FieldProblem] = []
                try:
                    listing = (lean or self._normalize)(raw, problems)
                except MalformedRecord as err:
                    # Without a usable id, the record's content identifies it: Kotohomes
                    # serves one record in both of a query's answers, at different places.
                    anonymous = f"#{digest.hex()}" if digest is not None else f"@{index}"
                    bad.add(err.record_id or anonymous)
                    if self._warned.allow(err.record_id or anonymous):
                        log.warning(
                            "record_skipped",
                            source=self.source,
                            record_id=err.record_id,
                            reason=err.reason[:200],
                            repeats="logged at most once an hour per record",
                        )
                    continue
                self._report(problems)
                facts = Facts.of(listing, digest)
            if digest is not None:
                if len(self._fresh) >= FRESH_MAX:
                    self._fresh.clear()
                self._fresh[digest] = facts
            was = known.get(facts.id) if known else None
            previous = was.fingerprint if was is not None else None
            if lean is not None and listing is not None:
                out.append(Observation(raw, facts, None, self._whole, previous, listing))
            else:
                out.append(Observation(raw, facts, listing, self._normalize, previous))
        return out, bad

    def _whole(self, raw: Mapping[str, Any], problems: list[FieldProblem] | None) -> Listing:
        """A record read lean, normalized whole: the fields the lean read did not read
        are reported now (those it read were reported then)."""
        del problems
        found: list[FieldProblem] = []
        listing = self._normalize(raw, found)
        if found and self._lean is not None:
            reported: list[FieldProblem] = []
            with contextlib.suppress(MalformedRecord):
                self._lean(raw, reported)
            self._report([p for p in found if p not in reported])
        return listing

    def take_dropped(self) -> Counter[str]:
        """Fields dropped since the last call, by top-level field name."""
        dropped, self._dropped = self._dropped, Counter()
        return dropped

    def _report(self, problems: list[FieldProblem]) -> None:
        for problem in problems:
            self._dropped[problem.top_field] += 1
            log.warning(
                "record_field_dropped",
                source=self.source,
                record_id=problem.record_id,
                field=problem.field,
                reason=problem.reason,
            )

    def forget_older(self) -> None:
        """Forget what this poll read (call once per poll): the state file knows it."""
        self._fresh = {}


# Pages of a sweep queued for staging at most: a page is staged while the next is read,
# and a sweep that asks the state file nothing per page (its query's first) would
# otherwise run ahead of the store and queue pages that grow with the account: unbounded,
# the queue reached 9 and 15 pages in two 200-page sweeps on this machine (README,
# "Performance"); with this bound the sweep keeps its gain and its memory stays flat.
STAGE_AHEAD = 4

# Records a Reader keeps at most between two reads of one poll: more than the answers of
# the Kotohomes queries in flight at once (FETCH_AHEAD x 2 answers x at most 50), which
# serve a record twice, and a few pages' worth against a Kato account of any size.
FRESH_MAX = 500


def _known_facts(raw: Mapping[str, Any], digest: bytes, known: Mapping[str, Facts]) -> Facts | None:
    """The facts the state file holds for this record, if it is the record it read."""
    try:
        record_id = read_record_id(raw)
    except MalformedRecord:
        return None
    was = known.get(record_id)
    return was if was is not None and was.digest == digest else None


def _record_ids(records: Sequence[Any]) -> list[str]:
    ids: list[str] = []
    for raw in records:
        if type(raw) is dict or isinstance(raw, Mapping):
            with contextlib.suppress(MalformedRecord):
                ids.append(read_record_id(raw))
    return ids


def _digest(raw: Mapping[str, Any]) -> bytes | None:
    """A digest of a decoded JSON record: equal digests mean equal records.

    A record that kept the digest of its bytes (``WireRecord``, Kato's) has that one.
    Otherwise ``marshal`` is the fastest complete serialization of JSON values in the
    standard library, and it keeps bool, int and float apart. Equal bytes always mean
    equal records (``marshal.loads`` would rebuild the one value). The converse almost
    always holds too; where it does not (key order, shared objects, a record once read
    from its bytes and once from a page decoded whole), a record is just normalized
    again. A record that cannot be serialized is not remembered.
    """
    if type(raw) is not dict:
        if isinstance(raw, WireRecord):
            return raw.digest
        if not isinstance(raw, dict):
            return None
    try:
        blob = marshal.dumps(raw)
    except ValueError:
        return None
    return hashlib.blake2b(blob, digest_size=16).digest()


# ---------------------------------------------------------------- the poller


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
    # Pages of sweeps served again unchanged and known whole (not read; see Poller._read).
    pages_known: int = 0
    duration_s: float = 0.0
    error: str | None = None
    auth_failed: bool = False
    pruned: int = 0
    # Subscriptions whose own query the source refused (400/422), with the reason: they
    # failed, the source did not (see ``QUERY_REJECTED``).
    rejected: dict[str, str] = field(default_factory=dict)
    # Subscriptions in their first run: how many current matches they record (no posts).
    baseline_matches: dict[str, int] = field(default_factory=dict)
    messages: list[OutgoingMessage] = field(default_factory=list)
    # Seconds per stage: fetch (requests, decoding, normalizing), detect (state loads,
    # matching, change detection), render (messages), commit (the poll's transaction).
    stages: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class ExistenceCheck(Protocol):
    """A source that can say whether one listing still exists (Kotohomes can)."""

    async def exists(self, listing_id: str) -> bool: ...


class Poller:
    """Polls one source for all its subscriptions.

    Not seen is not gone: a listing is forgotten only on evidence. A complete answer
    (``Fetched.complete``, a Kato sweep) that misses a listing ``gone_after_sweeps``
    times in a row is evidence; for a source with an ``ExistenceCheck`` (Kotohomes, whose
    answers hold only the 50 newest), up to ``gone_checks`` listings no query has seen
    for ``retention`` are asked about after each good poll, and a "no such listing" is.
    ``housekeeping`` (shared by the pollers of one state file) runs after good polls.
    """

    def __init__(
        self,
        source: Source,
        fetcher: Fetcher,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        *,
        channels: dict[str, int],
        retention: timedelta | None = None,
        housekeeping: Housekeeping | None = None,
        checker: ExistenceCheck | None = None,
        gone_checks: int = 5,
        gone_after_sweeps: int = 3,
    ) -> None:
        self.source = source
        self.fetcher = fetcher
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.retention = retention
        self.housekeeping = housekeeping
        self.checker = checker
        self.gone_checks = gone_checks
        self.gone_after_sweeps = gone_after_sweeps
        self.plan = Plan.build(source, (), channels)
        lean: Normalizer | None = getattr(fetcher, "normalize_lean", None)
        self.reader = Reader(source, fetcher.normalize, lean=lean, now=clock.monotonic)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self.plan.subscriptions

    @property
    def queries(self) -> tuple[Query, ...]:
        return self.plan.queries

    def set_subscriptions(
        self,
        subs: Sequence[Subscription],
        channels: dict[str, int],
        messages: MessagesConfig | None = None,
    ) -> None:
        """Plan the next polls for these subscriptions and the ``messages`` section (a
        poll in flight keeps its plan)."""
        self.plan = Plan.build(self.source, subs, channels, messages)

    async def poll(self, *, dry_run: bool = False) -> PollOutcome:
        """One poll, top to bottom (see the module docstring); ``dry_run`` commits nothing."""
        staging = self.store.open_staging()
        try:
            return await self._poll(staging, dry_run=dry_run)
        finally:
            # Nothing a poll staged outlives it (what it committed was merged already).
            with contextlib.suppress(ListingBotError):
                await self.store.discard_staged(staging)

    async def _poll(self, staging: int, *, dry_run: bool) -> PollOutcome:
        started = time.perf_counter()
        plan = self.plan  # this poll's: a reload from now on is the next poll's
        outcome = PollOutcome(self.source, queries=len(plan.queries))
        stages = outcome.stages = dict.fromkeys(("fetch", "detect", "render", "commit"), 0.0)
        snap = await self._snapshot(plan, dry_run)
        record = PollRecord(
            self.source,
            empty_answers_to_baseline=EMPTY_ANSWERS_TO_BASELINE,
            gone_after_sweeps=self.gone_after_sweeps,
            staging=staging,
        )
        events: list[Event] = []
        errors: list[str] = []
        matched: Counter[str] = Counter()  # match rows recorded, by subscription
        async with aclosing(self._fetch(snap, staging, outcome, errors)) as answers:
            async for query, fetched in answers:
                mark = time.perf_counter()
                fetching = stages["fetch"]
                try:
                    read, found, counts = await self._take(snap, query, fetched, record, stages)
                except UpstreamError as err:
                    # A sweep that failed midway: what its pages staged goes, all of it.
                    await self.store.discard_staged(staging, query.key)
                    outcome.requests += fetched.requests
                    if self._failed(query, err, outcome, errors):
                        break
                    continue
                finally:
                    # Waiting for the pages of a paged answer is fetching, not detecting.
                    stages["detect"] += time.perf_counter() - mark - (stages["fetch"] - fetching)
                    self._count_dropped()
                self._count_answer(query, fetched, read, outcome)
                self._count_events(found, record)
                events.extend(found)
                matched.update(counts)
                self._record_answer(snap, query, fetched, read, record)
        self.reader.forget_older()
        if errors:
            outcome.ok = False
        self._count_baselines(snap, record, matched, outcome)
        outcome.error = "; ".join(errors) or None
        mark = time.perf_counter()
        if not errors:
            events.extend(await self._removals(snap.plan, record))
        record.messages, record.channel_states, told_before = await self._compose(plan, events)
        if not dry_run:
            # Messages that waited out quiet hours go before this poll's own.
            record.released, digests = await self._release(plan, self.clock.now())
            record.messages[:0] = digests
        stages["render"] = time.perf_counter() - mark
        record.listings = outcome.listings
        outcome.events = record.events
        outcome.messages = record.messages
        mark = time.perf_counter()
        if not dry_run:
            await self._commit(record, told_before, outcome)
            self._count_digests(record)
        stages["commit"] = time.perf_counter() - mark
        if not dry_run and outcome.ok:
            outcome.pruned += await self._check_long_unseen(outcome)
            if self.housekeeping is not None:
                pruned = await self.housekeeping.run_if_due()
                outcome.pruned += pruned.listings if pruned is not None else 0
        outcome.duration_s = time.perf_counter() - started
        self._observe(outcome)
        return outcome

    # ------------------------------------------------------------ plan

    async def _snapshot(self, plan: Plan, dry_run: bool) -> Snapshot:
        """The poll's snapshot: ``plan`` and its subscriptions' state going in."""
        first_run = await self._first_run(plan, dry_run)
        empty_since = await self.store.empty_since(sorted(first_run)) if first_run else {}
        cursors = await self.store.load_cursors(q.key for q in plan.queries)
        stateful = await self.store.with_detection_state(
            self.source, [s.name for s in plan.subscriptions]
        )
        return Snapshot(
            plan,
            frozenset(first_run),
            MappingProxyType(empty_since),
            MappingProxyType(cursors),
            frozenset(stateful),
        )

    async def _first_run(self, plan: Plan, dry_run: bool) -> set[str]:
        """Names of the subscriptions in their first run, from each one's own state."""
        regs = [(s.name, s.source, s.filter_hash) for s in plan.subscriptions]
        if dry_run:
            return await self.store.needs_baseline(regs)
        return await self.store.sync_subscriptions(regs)

    # ------------------------------------------------------------ fetch + read

    async def _fetch(
        self, snap: Snapshot, staging: int, outcome: PollOutcome, errors: list[str]
    ) -> AsyncGenerator[tuple[Query, Fetched], None]:
        """Each query's answer, read, in plan order (the fetcher hands every page to the
        read stage). A few queries are fetched ahead of the one being processed (see
        FETCH_AHEAD). A query that fails yields nothing: its failure goes to ``outcome``
        (refused: ``rejected``) or ``errors``."""
        ahead: deque[tuple[Query, asyncio.Task[Fetched]]] = deque()
        upcoming = iter(snap.plan.queries)

        def fetch_ahead(limit: int) -> None:
            while len(ahead) < limit and (query := next(upcoming, None)) is not None:
                cursor = snap.cursors.get(query.key)
                read = self._read(query, staging, _may_keep(snap, query))
                task = asyncio.ensure_future(self.fetcher.fetch(query, cursor, read))
                ahead.append((query, task))

        fetch_ahead(1)  # the first alone: refused credentials cost one request, not several
        try:
            while ahead:
                query, task = ahead.popleft()
                mark = time.perf_counter()
                try:
                    fetched = await task
                except ListingBotError as err:
                    if self._failed(query, err, outcome, errors):
                        break  # the same credentials would fail every other query too
                    fetch_ahead(FETCH_AHEAD)
                    continue
                finally:
                    outcome.stages["fetch"] += time.perf_counter() - mark
                    self._count_dropped()
                fetch_ahead(FETCH_AHEAD)
                yield query, fetched
        finally:
            for _query, task in ahead:
                task.cancel()
            await asyncio.gather(*(task for _query, task in ahead), return_exceptions=True)

    def _read(self, query: Query, staging: int, may_keep: bool) -> Read:
        """The read stage for one query's answers: the state file says which records the
        query read before (by digest) and what it recorded of them, the Reader normalizes
        the rest. A listing an earlier page of the same sweep served (the account moved
        under it, or two statuses) is left out: the first counts.

        A page of a sweep served again byte for byte, whose listings are all still
        recorded as it held them, is known whole (``Store.load_page``): it is not read at
        all, only staged as seen. Reading it would change nothing: every record is the
        one the state file holds, so nothing is normalized or matched - unless
        ``may_keep`` is False (a subscription of the query is in its first run and looks
        at every listing).

        A sweep of a query that has nothing recorded (its first) asks the state file
        nothing page by page: no record is known, and which listings an earlier page
        served is the staging's to find (``ReadPage.first_counts``)."""
        recorded: list[bool] = []  # asked once, on the sweep's first page

        async def read(records: Sequence[Any], page: PageMark | None = None) -> ReadPage:
            asked = False
            if page is not None and not recorded:
                recorded.append(await self.store.has_listings(query.key))
            if page is not None and not recorded[0]:
                observed, bad = self.reader.read(records)
                ids = _record_ids(records)
                whole = not bad and len(ids) == len(records) == len(set(ids))
                return ReadPage(observed, bad, page if whole else None, first_counts=True)
            if page is not None and page.repeated and may_keep:
                # A body read before: asked whether it is known whole before its records
                # are decoded (they are not, when it is).
                kept = await self.store.keep_page(query.key, staging, page)
                if kept is not None:
                    return ReadPage([], kept=kept, known=True)
                asked = True
            ids = _record_ids(records)
            if not ids:
                return ReadPage(*self.reader.read(records))
            if page is not None and may_keep and not asked:
                kept, known, again = await self.store.load_page(query.key, ids, staging, page)
                if kept is not None:
                    return ReadPage([], kept=kept, known=True)
            else:
                known, again = await self.store.load_known(query.key, ids, staging)
            observed, bad = self.reader.read(records, known)
            if again:
                observed = [o for o in observed if o.facts.id not in again]
            # Recorded only when what the page held is exactly what the sweep staged of
            # it: every record read, each listing once and first served here.
            whole = not bad and not again and len(ids) == len(records) == len(set(ids))
            return ReadPage(observed, bad, page if whole else None)

        return read

    def _count_answer(
        self, query: Query, fetched: Fetched, read: int, outcome: PollOutcome
    ) -> None:
        """Count one answer, once it is read whole (a paged one's counters fill as it goes)."""
        outcome.requests += fetched.requests
        outcome.listings += read
        outcome.skipped += fetched.skipped
        outcome.pages_known += fetched.pages_known
        if fetched.gap:
            outcome.gaps += 1
            log.warning(
                "possible_missed_window",
                source=self.source,
                subscriptions=_names(query),
                detail="a full page was newer than the last poll; some changes may be missed",
            )

    def _failed(
        self, query: Query, err: ListingBotError, outcome: PollOutcome, errors: list[str]
    ) -> bool:
        """Note a query that failed; True when the poll must stop fetching (credentials)."""
        outcome.failed_queries += 1
        outcome.auth_failed = outcome.auth_failed or isinstance(err, UpstreamAuthError)
        detail = str(err)
        if isinstance(err, UpstreamRejected) and err.hint:
            detail = f"{detail} (hint: {err.hint})"
        if isinstance(err, UpstreamRejected) and err.status in QUERY_REJECTED:
            outcome.rejected.update(dict.fromkeys(_names(query), detail))
            return False
        errors.append(f"{detail} [subscriptions: {', '.join(_names(query))}]")
        return isinstance(err, UpstreamAuthError)

    def _count_dropped(self) -> None:
        """Count the fields the read stage dropped since last asked, by field."""
        for field_name, count in self.reader.take_dropped().items():
            self.metrics.fields_dropped.labels(self.source, field_name).inc(count)

    # ------------------------------------------------------------ match

    async def _take(
        self,
        snap: Snapshot,
        query: Query,
        fetched: Fetched,
        record: PollRecord,
        stages: dict[str, float],
    ) -> tuple[int, list[Event], Counter[str]]:
        """One query's answer through match and detect: the listings it read, its events
        and the match rows recorded per subscription. A whole answer's listings and match
        state go into ``record``; a paged answer's are staged page by page
        (``Store.stage_soon``), so memory holds one page: ``record_poll`` merges them, a
        failure midway (raised from here) discards them."""
        specs = _specs(snap, query)
        # Asked of every page of a sweep: once for the query, not once a page (with
        # 10,000 subscriptions that was 2,000,000 checks a sweep of 200 pages).
        looking = any(s.looks_at_everything for s in specs)
        stateful = [s.name for s in specs if s.name in snap.stateful]
        matched: Counter[str] = Counter()
        assert record.staging is not None
        if fetched.pages is None:
            observed = fetched.listings
            found, matches = await self._detect(
                snap, stateful, self._match(snap, query, specs, observed, looking=looking)
            )
            matched.update(m.subscription for m in matches)
            if observed:
                # Staged now rather than held to the commit: a Kotohomes poll of many
                # queries would otherwise hold every query's facts and match state at once.
                seen, kept = _to_stage(observed)
                await self.store.stage_soon(record.staging, query.key, seen, matches, kept)
                record.staged += len(observed)
            return len(observed), found, matched
        read = 0
        found = []
        # Each page is staged while the next one is read (see Store.stage_soon); what a
        # page staged is known to the next page's read, which the store runs after it.
        staged: list[asyncio.Future[ServedBefore]] = []
        # Where each page's events start in ``found``, and end.
        spans: list[tuple[int, int]] = []
        try:
            async with aclosing(_pages_of(fetched, stages)) as pages:
                async for page in pages:
                    read += page.kept  # known whole: staged by the read stage
                    if not page.observed:
                        continue
                    work = self._match(snap, query, specs, page.observed, looking=looking)
                    events, matches = await self._detect(snap, stateful, work)
                    spans.append((len(found), len(found) + len(events)))
                    found.extend(events)
                    matched.update(m.subscription for m in matches)
                    facts, kept = _to_stage(page.observed)
                    if len(staged) >= STAGE_AHEAD and not staged[-STAGE_AHEAD].done():
                        # The store is behind: wait for it rather than queue pages that
                        # grow with the account (its failure is raised below, with all).
                        await asyncio.wait({staged[-STAGE_AHEAD]})
                    staged.append(
                        self.store.stage_soon(
                            record.staging,
                            query.key,
                            facts,
                            matches,
                            kept,
                            page=page.mark,
                            first_counts=page.first_counts,
                        )
                    )
                    read += len(page.observed)
        finally:
            # Whatever ended the sweep, its pages are staged (or failed to be) before the
            # poll goes on: a failed sweep's discard, or the commit, comes after them.
            done = await asyncio.gather(*staged, return_exceptions=True)
        left: set[int] = set()  # events of listings an earlier page served: the first counts
        for outcome, (start, end) in zip(done, spans, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome  # the store failed: so does the poll
            if outcome.listings:
                read -= len(outcome.listings)
                matched.subtract(outcome.subscriptions)
                left.update(i for i in range(start, end) if found[i].listing.id in outcome.listings)
        if left:
            found = [event for i, event in enumerate(found) if i not in left]
            matched = +matched  # no subscription left at a count of 0
        record.staged += read
        return read, found, matched

    def _match(
        self,
        snap: Snapshot,
        query: Query,
        specs: list[SubSpec],
        observed: list[Observation],
        *,
        looking: bool,
    ) -> Work:
        """The listings of one answer (or page) worth detecting changes on, each with the
        subscriptions whose local filters accept it (through the query's index).

        A listing whose fingerprint differs from what this query recorded last time may
        have changed for every subscription; one that did not change is looked at only by
        the subscriptions in their first run (they look at every listing): ``looking``
        says whether any of ``specs`` is.
        """
        index = snap.plan.indexes[query.key]
        work: Work = []
        for item in observed:
            changed = item.previous != item.facts.fingerprint
            if not (changed or looking):
                continue
            accepted = [specs[i] for i in index.matches(item.matchable, item.whole)]
            if not changed:
                # Nothing about the listing changed: only a first run has anything to record.
                accepted = [s for s in accepted if s.looks_at_everything]
            if accepted:
                work.append((item.matchable, accepted, item.whole))
        return work

    # ------------------------------------------------------------ detect

    async def _detect(
        self, snap: Snapshot, names: list[str], work: Work
    ) -> tuple[list[Event], list[MatchState]]:
        """The events of one answer's (or page's) work (unwanted ones too: no message, but
        the channel's change sequence moves), and its subscriptions' new match state.
        ``names``: the query's subscriptions that have match state in the store."""
        previous: Mapping[tuple[str, str], MatchState] = {}
        removed: Mapping[tuple[str, str], Removal] = {}
        stateful = snap.stateful
        pairs = [(s.name, lst.id) for lst, subs, _ in work for s in subs if s.name in stateful]
        if pairs:
            # A listing no subscription knows may be one the source confirmed gone: the
            # store answers its removals with the match state, in one call. A first
            # sweep's subscriptions have none, and cost no call.
            previous, removed = await self.store.load_detection_state(self.source, names, pairs)
        found: list[Event] = []
        matches: list[MatchState] = []
        for listing, accepted, whole in work:
            result = detect(accepted, (listing,), previous, removed=removed)
            events = result.events + result.unwanted  # unwanted: the sequence moves
            if events:
                full = whole()
                if full is not listing:
                    # Found on the lean listing (the same facts): each event shows the whole.
                    events = [replace(event, listing=full) for event in events]
            found.extend(events)
            matches.extend(result.matches)
        return found, matches

    def _count_events(self, found: list[Event], record: PollRecord) -> None:
        wanted = Counter(event.type.value for event in found if event.wanted)
        for kind, count in wanted.items():
            self.metrics.events.labels(kind).inc(count)
        record.events += wanted.total()

    def _record_answer(
        self, snap: Snapshot, query: Query, fetched: Fetched, read: int, record: PollRecord
    ) -> None:
        """What a query that answered commits besides its events and listings: its cursor,
        its complete sweep, and its subscriptions' first runs."""
        record.cursors.append(fetched.cursor)
        starting = [s.name for s in query.subscriptions if s.name in snap.first_run]
        if read or fetched.skipped:
            record.baselined.extend(starting)
        else:
            # An empty first answer is not a baseline: were it one, everything a later
            # answer holds would be announced as new. Until one that is not empty, the
            # listings created after it are announced (see SubSpec.new_after).
            record.empty_answers.extend(starting)
        if fetched.complete:
            unreadable = fetched.unreadable
            anonymous = any(i.startswith(("#", "@")) for i in unreadable)
            record.sweeps.append(Sweep(query.key, None if anonymous else unreadable))

    def _count_baselines(
        self, snap: Snapshot, record: PollRecord, matched: Counter[str], outcome: PollOutcome
    ) -> None:
        """Subscriptions in their first run under ``first_run: baseline`` record, not
        post: how many current matches each records."""
        first = set(record.baselined) & {
            s.name for s in snap.plan.subscriptions if s.first_run == "baseline"
        }
        outcome.baseline_matches = {name: matched[name] for name in sorted(first)}

    async def _removals(self, plan: Plan, record: PollRecord) -> list[Event]:
        """``removed`` events for the listings the source confirmed gone since the last
        poll (a 404, or absent from complete sweeps), to each subscription that matched
        one and wants to hear it. Each removal is marked told in this poll's commit, so
        it is announced once; one whose listing this poll saw again is not announced."""
        names = [s.name for s in plan.subscriptions if s.name in plan.channels]
        pending = await self.store.load_removals(self.source, names)
        if not pending:
            return []
        back = {(m.subscription, m.listing_id) for m in record.matches}
        if record.staged and record.staging is not None:
            # A paged answer's matches are staged, not held.
            back |= await self.store.staged_matched(record.staging, pending)
        wants = {s.name: EventType.REMOVED in s.notify for s in plan.subscriptions}
        events: list[Event] = []
        for (name, listing_id), removal in sorted(pending.items()):
            if (name, listing_id) in back:
                continue
            record.removals_told.append((name, listing_id))
            if wants.get(name):
                listing = _last_known(self.source, listing_id, removal.listing)
                events.append(
                    Event(
                        name,
                        plan.channels[name],
                        listing,
                        EventType.REMOVED,
                        since=removal.removed_at,
                    )
                )
        if events:
            self.metrics.events.labels(EventType.REMOVED.value).inc(len(events))
            record.events += len(events)
        return events

    # ------------------------------------------------------------ compose

    async def _compose(
        self, plan: Plan, events: list[Event]
    ) -> tuple[list[OutgoingMessage], list[ChannelState], list[str]]:
        """One message per (channel, listing) across every query of this poll, what
        each channel has seen once they are queued, and the keys of changes the channel
        was already told of (not queued again)."""
        out: list[OutgoingMessage] = []
        if not events:
            return out, [], []
        duplicates: list[str] = []
        pairs = {(e.channel_id, e.listing.id) for e in events}
        states = await self.store.load_channel_states(self.source, sorted(pairs))
        told: dict[tuple[int, str], ChannelState] = {}
        described: dict[int, dict[str, Any]] = {}
        shared: SharedFields = {}
        subs = plan.by_name
        now = self.clock.now()
        for grouped in group_events(events, states):
            if grouped.type is not EventType.REMOVED:  # a removed listing keeps no state
                told[(grouped.channel_id, grouped.listing.id)] = grouped.state
            duplicates.extend(grouped.told_before)
            if grouped.silent or grouped.duplicate:
                continue
            mine = [subs[name] for name in grouped.subscriptions if name in subs]
            names = grouped.subscriptions
            out.extend(
                compose(
                    grouped,
                    described,
                    subscriptions=mine,
                    now=now,
                    threads=plan.threads(names),
                    photos=plan.photos(names),
                    shared=shared,
                    defer=True,
                )
            )
        changed = [state for key, state in told.items() if states.get(key) != state]
        # Bodies are written once the digests have taken what they tell of: a digested
        # message is never posted, and its text would be thrown away.
        queued = await self._bursts(plan, self._shape(plan, out, now))
        return [message.written() for message in queued], changed, duplicates

    def _shape(
        self, plan: Plan, out: list[OutgoingMessage], now: datetime
    ) -> list[OutgoingMessage]:
        """Quiet hours (README "Messages"): a message whose subscriptions are all in quiet
        hours is held until the first of their windows ends."""
        subs = plan.by_name
        shaped: list[OutgoingMessage] = []
        for message in out:
            mine = [subs[n] for n in message.subscriptions if n in subs]
            until = quiet_until(mine, now)
            shaped.append(
                message if until is None else replace(message, state="held", hold_until=until)
            )
        return shaped

    async def _bursts(self, plan: Plan, messages: list[OutgoingMessage]) -> list[OutgoingMessage]:
        """Burst digests (README "Messages"): more than ``digest_over`` messages for one
        channel from this poll go out as one digest, in the place of the first of them.

        A message whose key is in the outbox already is no news (the store does not queue
        it again, and counts it as a duplicate): it is neither counted nor listed."""
        pending: dict[int, list[int]] = {}
        for i, message in enumerate(messages):
            if message.state == "pending":
                pending.setdefault(message.channel_id, []).append(i)
        limits: dict[int, int] = {}
        for channel_id, positions in pending.items():
            limit = plan.digest_over(n for i in positions for n in messages[i].subscriptions)
            if limit and len(positions) > limit:
                limits[channel_id] = limit
        if not limits:
            return messages
        known = await self.store.known_keys(
            [messages[i].key for channel_id in limits for i in pending[channel_id]]
        )
        digested: dict[int, list[OutgoingMessage]] = {}  # by the position of the first
        gone: set[int] = set()
        for channel_id, limit in limits.items():
            fresh = [i for i in pending[channel_id] if messages[i].key not in known]
            if len(fresh) <= limit:
                continue
            batch = [messages[i] for i in fresh]
            digested[fresh[0]] = self._digest(plan, channel_id, batch, "burst")
            gone.update(fresh)
            log.info(
                "burst_digested",
                source=self.source,
                channel_id=channel_id,
                messages=len(batch),
                digest_over=limit,
            )
        out: list[OutgoingMessage] = []
        for i, message in enumerate(messages):
            if i in digested:
                out.extend(digested[i])
            elif i not in gone:
                out.append(message)
        return out

    def _digest(
        self,
        plan: Plan,
        channel_id: int,
        messages: Sequence[OutgoingMessage],
        reason: Reason,
    ) -> list[OutgoingMessage]:
        """The digest standing for ``messages``, then the messages as told by it."""
        items = [
            DigestItem(m.key, m.source, m.listing_id, m.event, m.subscriptions, m.line)
            for m in messages
        ]
        names = tuple(sorted({n for m in messages for n in m.subscriptions}))
        digest = build_digest(channel_id, items, reason=reason, labels=plan.labels(names))
        head = OutgoingMessage(
            key=digest.key,
            channel_id=channel_id,
            source=self.source,
            listing_id="",
            event=DIGEST_EVENT,
            subscriptions=names,
            body=digest.body,
            properties=digest.properties,
        )
        told = [
            replace(
                m,
                state="digested",
                digest=digest.key,
                body="",
                draft=None,
                properties={},
                line="",
            )
            for m in messages
        ]
        return [head, *told]

    async def _release(
        self, plan: Plan, now: datetime
    ) -> tuple[list[Release], list[OutgoingMessage]]:
        """Held messages whose quiet hours are over: one alone is queued as itself, more
        for one channel go out as one digest. Over means the window they waited for has
        ended, or their subscriptions are no longer all in quiet hours now (a reload took
        the window away or moved it)."""
        subs = plan.by_name

        def over(row: HeldMessage) -> bool:
            if row.hold_until is None or row.hold_until <= now:
                return True
            mine = [subs[n] for n in row.subscriptions if n in subs]
            # Subscriptions removed since keep the window they were held for.
            return bool(mine) and quiet_until(mine, now) is None

        due = [row for row in await self.store.held(self.source) if over(row)]
        if not due:
            return [], []
        by_channel: dict[int, list[HeldMessage]] = {}
        for row in due:
            by_channel.setdefault(row.channel_id, []).append(row)
        released: list[Release] = []
        digests: list[OutgoingMessage] = []
        for channel_id, rows in by_channel.items():
            if len(rows) == 1:
                released.append(Release(rows[0].key))
                continue
            waiting = [
                OutgoingMessage(
                    r.key,
                    r.channel_id,
                    r.source,
                    r.listing_id,
                    r.event,
                    r.subscriptions,
                    "",
                    {},
                    line=r.line,
                )
                for r in rows
            ]
            head = self._digest(plan, channel_id, waiting, "quiet_hours")[0]
            digests.append(head)
            released.extend(Release(r.key, head.key) for r in rows)
        log.info(
            "quiet_hours_over", source=self.source, released=len(released), digests=len(digests)
        )
        return released, digests

    # ------------------------------------------------------------ commit

    async def _commit(
        self, record: PollRecord, told_before: list[str], outcome: PollOutcome
    ) -> None:
        """Write what the poll learned and the messages to send in one transaction (when
        it learned anything: a poll whose every query failed writes only its failure)."""
        if outcome.ok or record.seen or record.staged:
            outcome.queued = await self.store.record_poll(record)
            record.duplicates[:0] = told_before
            outcome.pruned = record.forgotten
            self._report_duplicates(record)
        if outcome.error:
            await self.store.record_poll_failure(self.source, outcome.error)
            outcome.ok = False

    def _count_digests(self, record: PollRecord) -> None:
        """Digests this poll queued, and how many messages they told."""
        for message in record.messages:
            if message.event != DIGEST_EVENT:
                continue
            envelope = message.properties.get(ENVELOPE, {})
            reason = str(envelope.get("reason", "burst"))
            self.metrics.digests.labels(self.source, reason).inc()
            self.metrics.messages_digested.labels(self.source, reason).inc(
                int(envelope.get("count", 0))
            )

    def _report_duplicates(self, record: PollRecord) -> None:
        """A detected event whose key is already in the outbox is not queued again: the
        same change reached the channel before (through another subscription, or a poll
        that saw it first). Never silently: counted, and logged once per poll."""
        if not record.duplicates:
            return
        self.metrics.events_deduplicated.labels(self.source).inc(len(record.duplicates))
        log.info(
            "events_already_queued",
            source=self.source,
            count=len(record.duplicates),
            keys=record.duplicates[:10],
        )

    # ------------------------------------------------------------ after a good poll

    async def _check_long_unseen(self, outcome: PollOutcome) -> int:
        """Ask the source about a few listings no query has seen for ``retention``;
        forget the ones it no longer knows. The number forgotten."""
        if self.checker is None or self.retention is None or self.gone_checks <= 0:
            return 0
        now = self.clock.now()
        try:
            ids = await self.store.long_unseen(
                self.source, now - self.retention, now - RECHECK_EVERY, self.gone_checks
            )
            alive: list[str] = []
            gone: list[str] = []
            for listing_id in ids:
                try:
                    exists = await self.checker.exists(listing_id)
                except ListingBotError as err:
                    # Unknown is not gone: try again after the next poll.
                    log.warning(
                        "gone_check_failed",
                        source=self.source,
                        listing_id=listing_id,
                        error=str(err),
                    )
                    break
                finally:
                    outcome.requests += 1
                (alive if exists else gone).append(listing_id)
            if alive:
                await self.store.mark_checked(self.source, alive)
            forgotten = await self.store.forget_listings(self.source, gone) if gone else 0
        except ListingBotError as err:
            log.warning("gone_check_failed", source=self.source, error=str(err))
            return 0
        if ids:
            log.info(
                "long_unseen_checked",
                source=self.source,
                checked=len(alive) + len(gone),
                still_listed=len(alive),
                forgotten=forgotten,
            )
        return forgotten

    def _observe(self, outcome: PollOutcome) -> None:
        m = self.metrics
        m.polls.labels(self.source, "ok" if outcome.ok else "failed").inc()
        m.poll_duration.labels(self.source).observe(outcome.duration_s)
        m.listings_seen.labels(self.source).inc(outcome.listings)
        m.records_skipped.labels(self.source).inc(outcome.skipped)
        m.possible_gaps.labels(self.source).inc(outcome.gaps)
        m.pages_known.labels(self.source).inc(outcome.pages_known)
        m.source_up.labels(self.source).set(1 if outcome.ok else 0)


# ---------------------------------------------------------------- housekeeping


def prune_due(last: datetime | None, now: datetime, every: timedelta = PRUNE_EVERY) -> bool:
    """True when state should be pruned now: never pruned yet, or last pruned ``every`` ago."""
    return last is None or now - last >= every


class Housekeeping:
    """The state file's housekeeping (``Store.prune``), due once per ``PRUNE_EVERY``.

    One instance per state file, shared by every source's poller: whichever source
    finishes a good poll when it is due runs it, for the whole file.
    """

    def __init__(
        self, store: Store, clock: Clock, retention: timedelta, every: timedelta = PRUNE_EVERY
    ) -> None:
        self.store = store
        self.clock = clock
        self.retention = retention
        self.every = every
        self.last: datetime | None = None

    async def run_if_due(self) -> Pruned | None:
        now = self.clock.now()
        if not prune_due(self.last, now, self.every):
            return None
        self.last = now  # before the await: two pollers never run it together
        try:
            pruned = await self.store.prune(now - self.retention)
        except ListingBotError as err:
            # Housekeeping: a failure must not turn a good poll into a bad one.
            log.warning("prune_failed", error=str(err))
            return None
        if pruned.any:
            log.info(
                "state_pruned",
                subscriptions=pruned.subscriptions,
                cursors=pruned.cursors,
                listings=pruned.listings,
                compacted_messages=pruned.compacted,
                sent_messages=pruned.sent_deleted,
                older_than_days=round(self.retention.total_seconds() / 86400, 2),
            )
        return pruned


def _names(query: Query) -> list[str]:
    return [s.name for s in query.subscriptions]


def _specs(snap: Snapshot, query: Query) -> list[SubSpec]:
    """What detection needs of each of the query's subscriptions, in this poll."""
    return [
        SubSpec(
            name=s.name,
            channel_id=snap.plan.channels[s.name],
            notify=s.notify,
            baselining=s.name in snap.first_run and s.first_run == "baseline",
            accepts=_accept_all,
            first_run=s.name in snap.first_run,
            new_after=snap.empty_since.get(s.name),
        )
        for s in query.subscriptions
    ]


async def observations(fetched: Fetched) -> AsyncIterator[list[Observation]]:
    """A query's answer as it comes: its listings, or each of its pages in turn."""
    if fetched.pages is None:
        yield fetched.listings
        return
    async with aclosing(fetched.pages) as pages:
        async for page in pages:
            yield page.observed


def _may_keep(snap: Snapshot, query: Query) -> bool:
    """Whether a page of this query's sweep may be known whole, without reading it: not
    while one of its subscriptions is in its first run (it looks at every listing)."""
    return not any(s.name in snap.first_run for s in query.subscriptions)


def _to_stage(observed: Sequence[Observation]) -> tuple[list[Facts], list[Facts]]:
    """The facts of an answer (or page) to stage whole, and those of the listings whose
    fingerprint is the one the query recorded: staged by id and digest, since the state
    file holds the rest of their facts already (``Store.stage_soon``'s ``kept``)."""
    whole: list[Facts] = []
    kept: list[Facts] = []
    for o in observed:
        (kept if o.previous == o.facts.fingerprint else whole).append(o.facts)
    return whole, kept


async def _pages_of(fetched: Fetched, stages: dict[str, float]) -> AsyncGenerator[ReadPage, None]:
    """A paged answer a page at a time; the time spent waiting for a page (requests,
    decoding, reading) counts as fetching."""
    assert fetched.pages is not None
    async with aclosing(fetched.pages) as pages:
        while True:
            mark = time.perf_counter()
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                return
            finally:
                stages["fetch"] += time.perf_counter() - mark
            yield page


def _accept_all(_listing: Listing) -> bool:
    """Detection's own filter, once the index has chosen the subscriptions."""
    return True


def _last_known(source: Source, listing_id: str, shown: Mapping[str, Any] | None) -> Listing:
    """A removed listing as it was last posted, else as little as is known of it."""
    if shown is not None:
        with contextlib.suppress(ValidationError):
            return Listing.model_validate(shown)
    title = f"{source.capitalize()} listing {listing_id}"
    return Listing(source=source, id=listing_id, title=title, country=sources.get(source).country)
