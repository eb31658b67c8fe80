"""All of listingbot's SQL: the schema, its migrations, and one method per unit of work.

The state file is SQLite in WAL mode. Every method that writes does so in exactly one
transaction, so a crash leaves the file either before or after a unit of work, never in
between. That is what makes the outbox work: the listing state, the subscription match
state, the upstream cursors and the messages to send are written together by
``record_poll``, and delivery only ever moves one outbox row from state to state.

Why stdlib ``sqlite3`` behind one dedicated thread rather than aiosqlite: aiosqlite is the
same design (one thread per connection, calls marshalled to it) with a per-call future
around each ``execute``. Here each unit of work is a plain synchronous function run on the
store's thread in one hop, so a poll that writes 10,000 rows costs one thread switch, not
10,000, and the same functions serve the synchronous ``listingbot status`` command.

Outbox row states::

    pending --claim--> sending --ok--> sent
       ^  ^               |  \\--permanent error, or too old--> failed --retry--> pending
       |  |               |                                       |  (or sending when it
       |  +--refusal------+                                       |   may have been posted)
       |                  |                                       +--drop--> dropped
       +--reconciled: not in the channel (rows of unknown outcome stay ``sending``
                      until the channel has been searched back to their claim time)

A claim is a compare-and-set (``... WHERE state = 'pending'``): whoever loses it does not
send. One process per state file is enforced by :class:`StateLock` on a sidecar file.

Why one module of this size: it is one class over one connection on one thread, and
its units of work cross the table groups (``record_poll`` writes listings, matches,
cursors, channel state and the outbox in one transaction), so the sections below are
kept in one place on purpose while the schema is still growing. Its types that other
stages share (match and channel state, cursors, outgoing messages, outbox rows) live in
``listingbot.records``; what is left here is SQL and the store's own result types. The
natural split, once the tables stop changing, is a package of mixins over one
connection: schema and migrations; listings, matches and sweeps; the outbox; status and
chat commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from listingbot.errors import StateLocked, StoreError
from listingbot.records import (
    ChannelState,
    Cursor,
    Facts,
    MatchState,
    OutboxRow,
    OutgoingMessage,
    Removal,
    ThreadRoot,
)

T = TypeVar("T")

# Each entry migrates from user_version == index to index + 1. Never edit a shipped entry:
# append a new one, so every existing state file upgrades the same way.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE listings (
        query_key   TEXT NOT NULL,
        listing_id  TEXT NOT NULL,
        source      TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        price       REAL,
        status      TEXT,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        PRIMARY KEY (query_key, listing_id)
    ) WITHOUT ROWID;
    CREATE INDEX listings_last_seen ON listings (last_seen);

    CREATE TABLE matches (
        subscription  TEXT NOT NULL,
        source        TEXT NOT NULL,
        listing_id    TEXT NOT NULL,
        first_matched TEXT NOT NULL,
        last_price    REAL,
        last_status   TEXT,
        last_changed  TEXT NOT NULL,
        PRIMARY KEY (subscription, source, listing_id)
    ) WITHOUT ROWID;
    CREATE INDEX matches_listing ON matches (source, listing_id);

    CREATE TABLE subscriptions (
        name         TEXT PRIMARY KEY,
        source       TEXT NOT NULL,
        filter_hash  TEXT NOT NULL,
        baselined_at TEXT,
        created_at   TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE cursors (
        query_key   TEXT PRIMARY KEY,
        source      TEXT NOT NULL,
        created_hw  TEXT,
        updated_hw  TEXT,
        last_polled TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        key             TEXT NOT NULL UNIQUE,
        channel_id      INTEGER NOT NULL,
        source          TEXT NOT NULL,
        listing_id      TEXT NOT NULL,
        event           TEXT NOT NULL,
        subscriptions   TEXT NOT NULL,
        body            TEXT NOT NULL,
        properties      TEXT NOT NULL,
        state           TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        next_attempt_at TEXT NOT NULL,
        claimed_at      TEXT,
        sent_at         TEXT,
        message_id      INTEGER,
        last_error      TEXT
    );
    CREATE INDEX outbox_open ON outbox (state, channel_id, seq);

    CREATE TABLE source_status (
        source               TEXT PRIMARY KEY,
        last_success         TEXT,
        last_failure         TEXT,
        last_error           TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        last_listings        INTEGER NOT NULL DEFAULT 0,
        last_events          INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
    # 2: not seen is not gone, and keys from a change sequence (issue 9).
    # - listings.missed_sweeps: complete sweeps in a row that did not return the listing;
    #   listings.checked_at: when the source last confirmed a long-unseen listing exists.
    # - channel_listings: per (channel, listing), the last asking figure and status
    #   announced in that channel and a change sequence for each; change events are keyed
    #   by sequence, not by value. Existing outbox rows keep their keys (the new keys have
    #   their own prefix, so no new key can equal an old one).
    # - subscriptions.empty_answers: empty first answers seen while baselining;
    #   subscriptions.last_configured: when a running service last had it configured.
    """
    ALTER TABLE listings ADD COLUMN missed_sweeps INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE listings ADD COLUMN checked_at TEXT;
    CREATE INDEX listings_listing ON listings (source, listing_id);

    CREATE TABLE channel_listings (
        channel_id  INTEGER NOT NULL,
        source      TEXT NOT NULL,
        listing_id  TEXT NOT NULL,
        price_seq   INTEGER NOT NULL DEFAULT 0,
        last_price  REAL,
        status_seq  INTEGER NOT NULL DEFAULT 0,
        last_status TEXT,
        PRIMARY KEY (channel_id, source, listing_id)
    ) WITHOUT ROWID;
    CREATE INDEX channel_listings_listing ON channel_listings (source, listing_id);

    ALTER TABLE subscriptions ADD COLUMN empty_answers INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscriptions ADD COLUMN last_configured TEXT;
    CREATE INDEX outbox_listing ON outbox (source, listing_id);
    """,
    # 3: delivery bookkeeping. requeued_at: when an operator last put the row back (its
    # give-up age counts from then); may_be_sent: the last send's outcome is unknown, so
    # a retried row is searched for in the channel before it is sent again.
    """
    ALTER TABLE outbox ADD COLUMN requeued_at TEXT;
    ALTER TABLE outbox ADD COLUMN may_be_sent INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: subscriptions.empty_since: when a first run's query first answered nothing.
    # Listings created after that moment are new to the subscription whatever the
    # first-run mode: the empty answer saw the area before they existed.
    # channel_listings.price_told/status_told: whether the change at the current sequence
    # number was told to the channel (the sequence also counts changes nobody in the
    # channel wanted to hear about).
    """
    ALTER TABLE subscriptions ADD COLUMN empty_since TEXT;
    ALTER TABLE channel_listings ADD COLUMN price_told INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE channel_listings ADD COLUMN status_told INTEGER NOT NULL DEFAULT 1;
    """,
    # 5: what `status` reports about subscriptions that cannot run (their channel is
    # missing, their query is refused), and the channel names ChatKitty last resolved, so
    # a start-up while ChatKitty is unreachable still knows where named channels are.
    """
    CREATE TABLE subscription_problems (
        name   TEXT PRIMARY KEY,
        kind   TEXT NOT NULL,
        detail TEXT NOT NULL,
        since  TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE channel_names (
        name        TEXT PRIMARY KEY,
        channel_id  INTEGER NOT NULL,
        resolved_at TEXT NOT NULL
    ) WITHOUT ROWID;
    """,  # 6: chat commands (issue 14).
    # - chat_subscriptions: subscriptions made from a channel; filters as the YAML's
    #   ``filters:`` mapping (JSON), state active/paused.
    # - command_channels: per channel where commands are enabled, since when (commands
    #   posted before are never run) and the id of the last command message handled.
    # - commands: one row per command message handled, written in the same transaction
    #   as its effect; ``answer`` is the reply to post, ``answered_at`` set once it is.
    """
    CREATE TABLE chat_subscriptions (
        name        TEXT PRIMARY KEY,
        channel_id  INTEGER NOT NULL,
        source      TEXT NOT NULL,
        filters     TEXT NOT NULL,
        first_run   TEXT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'active',
        created_by  TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        command_id  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX chat_subscriptions_channel ON chat_subscriptions (channel_id);

    CREATE TABLE command_channels (
        channel_id      INTEGER PRIMARY KEY,
        enabled_at      TEXT NOT NULL,
        last_message_id INTEGER
    ) WITHOUT ROWID;

    CREATE TABLE commands (
        message_id  INTEGER PRIMARY KEY,
        channel_id  INTEGER NOT NULL,
        username    TEXT NOT NULL,
        verb        TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        answer      TEXT,
        handled_at  TEXT NOT NULL,
        answered_at TEXT,
        answer_id   INTEGER
    );
    CREATE INDEX commands_unanswered ON commands (answered_at) WHERE answered_at IS NULL;
    CREATE INDEX commands_user ON commands (channel_id, username, handled_at);
    """,
    # 7: digests and quiet hours (issue 13). State 'held': the message waits out its
    # subscriptions' quiet hours until next_attempt_at; state 'digested': a digest told it
    # (outbox.digest is that digest's key), it is never sent on its own. outbox.line: the
    # message's one-line form, for the digest that may stand for it.
    """
    ALTER TABLE outbox ADD COLUMN digest TEXT;
    ALTER TABLE outbox ADD COLUMN line TEXT NOT NULL DEFAULT '';
    CREATE INDEX outbox_held ON outbox (state, source, next_attempt_at);
    """,
    # 8: the sale price and the rent are separate figures (issue 13).
    # matches.figures: what the subscription knows of the listing's figures and deal type
    # (JSON: {"sale": [low, high, currency, unit] | null, "rent": ..., "deal": ...});
    # NULL for rows written before, read as the one asking figure in last_price.
    # channel_listings.marks: per kind of change other than status (sale, rent, deal),
    # its sequence number, the value told last and whether it was told (JSON); the sale
    # figure's number stays mirrored in price_seq.
    # removals: a listing confirmed gone (a 404, or absent from complete sweeps), per
    # subscription that matched it, kept after its state is forgotten: until its
    # ``removed`` message is queued (told), and then so that its return is
    # ``back_on_market``. listing: the listing as last posted (for the message), if any.
    """
    ALTER TABLE matches ADD COLUMN figures TEXT;
    ALTER TABLE channel_listings ADD COLUMN marks TEXT;

    CREATE TABLE removals (
        subscription TEXT NOT NULL,
        source       TEXT NOT NULL,
        listing_id   TEXT NOT NULL,
        removed_at   TEXT NOT NULL,
        told         INTEGER NOT NULL DEFAULT 0,
        listing      TEXT,
        PRIMARY KEY (subscription, source, listing_id)
    ) WITHOUT ROWID;
    CREATE INDEX removals_open ON removals (source, told);
    """,
    # 9: threads and photos (issue 13).
    # - outbox.kind: 'message' (a listing's text, or a digest), 'photo' (the FILE message
    #   posted with a text) or 'patch' (a merge patch of a thread root's properties).
    # - outbox.thread_id: the ChatKitty message whose thread the row goes into (a patch:
    #   the message it patches); fixed at the latest when the row is claimed, so that
    #   reconciliation searches where the request went. NULL: the channel itself.
    # - outbox.after_seq: a row queued because another was sent (its photo, the patch of
    #   its thread root) goes out right after that row, ahead of the channel's later rows.
    # - outbox.threaded: 0 when messages.threads is off for the row (it never replies);
    #   outbox.photo: the URL of the photo to post with the text.
    # - thread_roots: per (channel, listing), the message its later events reply under:
    #   the first message told about it in the channel, or the digest that told it.
    """
    ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
    ALTER TABLE outbox ADD COLUMN thread_id INTEGER;
    ALTER TABLE outbox ADD COLUMN after_seq INTEGER;
    ALTER TABLE outbox ADD COLUMN threaded INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE outbox ADD COLUMN photo TEXT;

    CREATE TABLE thread_roots (
        channel_id INTEGER NOT NULL,
        source     TEXT NOT NULL,
        listing_id TEXT NOT NULL,
        root_key   TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        digest     INTEGER NOT NULL DEFAULT 0,
        told_at    TEXT NOT NULL,
        PRIMARY KEY (channel_id, source, listing_id)
    ) WITHOUT ROWID;
    CREATE INDEX thread_roots_message ON thread_roots (channel_id, message_id);
    """,
    # 10: what a poll needs to know of a listing it has seen before without normalizing it
    # again or holding it in memory (issue 15): the digest of its raw record and its two
    # dates. A record whose digest is the one stored is the same listing.
    """
    ALTER TABLE listings ADD COLUMN digest BLOB;
    ALTER TABLE listings ADD COLUMN created_at TEXT;
    ALTER TABLE listings ADD COLUMN updated_at TEXT
    """,
)

CHAT_STATES = ("active", "paused")
# commands.outcome
COMMAND_DONE = "done"  # carried out (or answered, for list/explain/help)
COMMAND_REFUSED = "refused"  # malformed, not permitted, over the cap...: answered why
COMMAND_SKIPPED = "skipped"  # not answered: a flood beyond the per-user limit

OUTBOX_STATES = ("pending", "sending", "sent", "failed", "dropped", "held", "digested")
# held: waiting out quiet hours; digested: told by a digest, never sent on its own.
QUIET_STATES = ("held", "digested")

# subscription_problems.kind
PROBLEM_CHANNEL = "channel"  # held: its channel does not exist in ChatKitty
PROBLEM_QUERY = "query"  # failing: the source refuses its query (400/422)

OPEN_STATES = ("pending", "sending")


def _dump_marks(marks: tuple[tuple[str, int, str | None, bool], ...]) -> str | None:
    if not marks:
        return None
    return json.dumps({kind: [seq, value, told] for kind, seq, value, told in marks})


def _load_marks(text: str | None) -> tuple[tuple[str, int, str | None, bool], ...]:
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    out: list[tuple[str, int, str | None, bool]] = []
    for kind, entry in data.items() if isinstance(data, dict) else ():
        if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], int):
            value = entry[1] if isinstance(entry[1], str) else None
            out.append((str(kind), entry[0], value, bool(entry[2])))
    return tuple(sorted(out))


def _ts(value: datetime) -> str:
    """Timestamps are stored as fixed-width UTC ISO strings, so text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso(value: datetime | None) -> str | None:
    """A listing's own date as stored with it (ISO 8601, offset kept: it reads back equal)."""
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Sweep:
    """A complete answer of one query (every listing it matches upstream, e.g. a Kato
    sweep): its listings not in it are one sweep closer to being forgotten.

    ``unreadable``: ids of records that were skipped as malformed (not absent); None when
    a skipped record had no usable id, so no absence can be counted from this sweep.
    """

    query_key: str
    unreadable: frozenset[str] | None = frozenset()


@dataclass(frozen=True)
class HeldMessage:
    """A message waiting out quiet hours (state ``held``)."""

    key: str
    channel_id: int
    source: str
    listing_id: str
    event: str
    subscriptions: tuple[str, ...]
    line: str
    hold_until: datetime | None = None


@dataclass(frozen=True)
class Release:
    """A held message whose wait is over: queued as itself (``digest`` None), or told by
    the digest ``digest``."""

    key: str
    digest: str | None = None


@dataclass
class PollRecord:
    """Everything one successful poll of one source changes, written in one transaction."""

    source: str
    # What each query's answer held (by query key): its listings' rows are stamped seen.
    seen: dict[str, list[Facts]] = field(default_factory=dict)
    matches: list[MatchState] = field(default_factory=list)
    cursors: list[Cursor] = field(default_factory=list)
    baselined: list[str] = field(default_factory=list)
    # Subscriptions in their first run whose query answered nothing at all: the baseline
    # completes only after ``empty_answers_to_baseline`` such answers (an empty answer
    # from a source that has data is more often a glitch than an empty market).
    empty_answers: list[str] = field(default_factory=list)
    empty_answers_to_baseline: int = 3
    messages: list[OutgoingMessage] = field(default_factory=list)
    # Held messages whose quiet hours are over (applied before ``messages`` are queued).
    released: list[Release] = field(default_factory=list)
    channel_states: list[ChannelState] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    gone_after_sweeps: int = 3
    listings: int = 0
    events: int = 0
    # Removals whose ``removed`` message this poll queues (or that nobody wants told):
    # (subscription, listing id).
    removals_told: list[tuple[str, str]] = field(default_factory=list)
    # Filled in by the store: keys of messages that already existed (not queued again),
    # and the listings forgotten because complete sweeps no longer return them.
    duplicates: list[str] = field(default_factory=list)
    forgotten: int = 0
    # A long answer's rows, staged page by page as the poll read it (``Store.stage``)
    # instead of held in ``seen`` / ``matches``: ``record_poll`` merges them first, in its
    # one transaction. None: nothing staged.
    staging: int | None = None
    staged: int = 0  # listings staged


@dataclass(frozen=True)
class Pruned:
    """What one housekeeping pass removed or compacted."""

    subscriptions: int = 0
    cursors: int = 0
    listings: int = 0
    compacted: int = 0
    sent_deleted: int = 0

    @property
    def any(self) -> bool:
        return any(
            (self.subscriptions, self.cursors, self.listings, self.compacted, self.sent_deleted)
        )


@dataclass(frozen=True)
class SourceStatus:
    source: str
    last_success: datetime | None
    last_failure: datetime | None
    last_error: str | None
    consecutive_failures: int
    last_listings: int
    last_events: int


@dataclass(frozen=True)
class SubscriptionStatus:
    name: str
    source: str
    baselined_at: datetime | None
    matches: int
    last_message_at: datetime | None


@dataclass(frozen=True)
class SubscriptionProblem:
    name: str
    kind: str  # PROBLEM_CHANNEL or PROBLEM_QUERY
    detail: str
    since: datetime


@dataclass(frozen=True)
class OutboxSummary:
    counts: dict[str, int]
    oldest_open: datetime | None
    failed: list[tuple[int, str, int, str | None]]  # (seq, key, channel, last_error)


@dataclass(frozen=True)
class OutboxHealth:
    """What readiness and the metrics say about the outbox."""

    open: int  # pending or sending
    oldest_open: datetime | None
    failed: int  # given up on, waiting for an operator (outbox retry / drop)


@dataclass(frozen=True)
class ChatSubscriptionRow:
    """A subscription made from a channel, as stored (``filters`` as the YAML writes them)."""

    name: str
    channel_id: int
    source: str
    filters: dict[str, Any]
    first_run: str
    state: str
    created_by: str
    created_at: datetime
    command_id: int


@dataclass(frozen=True)
class CommandChannel:
    """Where commands are read: since when, and the last command message handled."""

    channel_id: int
    enabled_at: datetime
    last_message_id: int | None


@dataclass(frozen=True)
class ChatChange:
    """What a command does to the chat subscriptions (applied with its outcome).

    ``add``: insert ``row``; ``pause``/``resume``: set the state of ``name`` (a resume
    makes it record what matches now before posting again, as a new subscription does);
    ``remove``: delete ``name`` with its match state.
    """

    kind: str  # "add" | "pause" | "resume" | "remove"
    name: str
    row: ChatSubscriptionRow | None = None


@dataclass(frozen=True)
class HandledCommand:
    """A command message's outcome and the answer to post (None: none is posted)."""

    message_id: int
    channel_id: int
    username: str
    verb: str
    outcome: str
    answer: str | None


@dataclass(frozen=True)
class PendingAnswer:
    message_id: int
    channel_id: int
    answer: str
    handled_at: datetime


class StateLock:
    """One process per state file: an exclusive ``flock`` on ``<state file>.lock``.

    The holder writes its pid and start time into the file, so a process that is refused
    can say who holds it and since when. The kernel drops the lock when its holder exits,
    however it exits (SIGKILL included), so a crash never leaves a stale lock behind.
    """

    POLL_S = 0.25  # how often a waiting process tries again

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, now: datetime) -> bool:
        """Take the lock if it is free; True when this object holds it."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot open lock file {self.path}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as err:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {err.strerror}") from err
        stamp = json.dumps({"pid": os.getpid(), "since": _ts(now)})
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp.encode() + b"\n", 0)
        self._fd = fd
        return True

    async def acquire(
        self,
        now: Callable[[], datetime],
        *,
        wait_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Take the lock, waiting up to ``wait_s`` for it; :class:`StateLocked` if not."""
        waited = 0.0
        while not self.try_acquire(now()):
            if waited >= wait_s or sleep is None:
                raise StateLocked(self._refusal(waited))
            step = min(self.POLL_S, wait_s - waited)
            await sleep(step)
            waited += step

    def holder(self) -> tuple[int | None, str | None]:
        """(pid, since) as the current holder wrote them, when readable."""
        try:
            raw = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return None, None
        if not isinstance(raw, dict):
            return None, None
        pid, since = raw.get("pid"), raw.get("since")
        return (
            pid if isinstance(pid, int) else None,
            since if isinstance(since, str) else None,
        )

    def _refusal(self, waited: float) -> str:
        pid, since = self.holder()
        who = f"process {pid}" if pid is not None else "another process"
        when = f" since {since}" if since else ""
        tail = f" (waited {waited:g}s)" if waited else ""
        return (
            f"state file {self.path.with_suffix('')} is in use by {who}{when}{tail}: "
            "only one listingbot may use a state file at a time. Stop the other process, "
            "or pass --wait-lock SECONDS to wait for it."
        )

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


class Store:
    """The state file. Create with :meth:`open`; every public coroutine is one unit of work."""

    def __init__(
        self, path: Path, clock_now: Callable[[], datetime], *, busy_timeout_ms: int = 5000
    ) -> None:
        self.path = path
        self._now = clock_now
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="listingbot-store")
        self._conn: sqlite3.Connection | None = None
        self._stagings = itertools.count(1)
        self._staging_ready = False  # the TEMP tables exist on this connection
        self.lock: StateLock | None = None

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    async def open(
        cls,
        path: Path,
        clock_now: Callable[[], datetime],
        *,
        exclusive: bool = False,
        wait_lock_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        busy_timeout_ms: int = 5000,
    ) -> Store:
        """Open (creating and migrating) the state file.

        ``exclusive``: for service work (``run``, ``once``, ``demo``). Take the state
        file's :class:`StateLock` first, waiting up to ``wait_lock_s`` (with ``sleep``);
        :class:`StateLocked` when another process keeps it. Read-only commands and the
        ``outbox`` maintenance commands open without it: their writes are compare-and-set
        on the row's state, so they are safe beside a running service.
        """
        store = cls(path, clock_now, busy_timeout_ms=busy_timeout_ms)
        if exclusive:
            if path.parent and not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            lock = StateLock(path)
            await lock.acquire(clock_now, wait_s=wait_lock_s, sleep=sleep)
            store.lock = lock
        try:
            await store._run(store._open_sync)
        except BaseException:
            if store.lock is not None:
                store.lock.release()
            store._executor.shutdown(wait=False)
            raise
        return store

    @classmethod
    def open_sync(cls, path: Path, clock_now: Callable[[], datetime]) -> Store:
        """For synchronous callers (``listingbot status``); methods ending in _sync only."""
        store = cls(path, clock_now)
        store._open_sync()
        return store

    def _open_sync(self) -> None:
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed transaction survives a process crash; only an
            # OS crash or power loss can roll back the last commits, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            self._conn = conn
            self._migrate(conn)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open state file {self.path}: {err}") from err

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreError(
                f"state file {self.path} has schema version {version}, newer than this "
                f"listingbot understands ({len(MIGRATIONS)}); refusing to touch it"
            )
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self._c.execute("PRAGMA user_version").fetchone()[0])

    async def close(self) -> None:
        try:
            await self._run(self._close_sync)
            self._executor.shutdown(wait=True)
        finally:
            if self.lock is not None:
                self.lock.release()

    def close_sync(self) -> None:
        self._close_sync()
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("state file is closed")
        return self._conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the store's thread. No ``sqlite3`` error leaves the store: a read
        or write that fails (locked, I/O error, disk full) is a :class:`StoreError`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.Error as err:
            raise StoreError(f"state file {self.path}: {err}") from err

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._c
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise StoreError(f"cannot start a transaction on {self.path}: {err}") from err
        try:
            yield conn
        except BaseException as err:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise StoreError(f"cannot write to {self.path}: {err}") from err
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot commit to {self.path}: {err}") from err

    # ---------------------------------------------------------------- subscriptions
    async def sync_subscriptions(self, subs: Sequence[tuple[str, str, str]]) -> set[str]:
        """Register (name, source, filter_hash); return the names that need a baseline.

        A subscription whose filters changed is treated as new: it records what matches
        now before posting, instead of announcing everything the new filters let in.
        """
        return await self._run(self._sync_subscriptions, list(subs))

    def _sync_subscriptions(self, subs: list[tuple[str, str, str]]) -> set[str]:
        now = _ts(self._now())
        with self._tx() as conn:
            known = {
                row[0]: (row[1], row[2], row[3])
                for row in conn.execute(
                    "SELECT name, source, filter_hash, baselined_at FROM subscriptions"
                )
            }
            for name, source, fhash in subs:
                prev = known.get(name)
                if prev is None:
                    conn.execute(
                        "INSERT INTO subscriptions (name, source, filter_hash, created_at,"
                        " last_configured) VALUES (?, ?, ?, ?, ?)",
                        (name, source, fhash, now, now),
                    )
                elif prev[0] != source or prev[1] != fhash:
                    conn.execute(
                        "UPDATE subscriptions SET source = ?, filter_hash = ?, baselined_at = NULL,"
                        " empty_answers = 0, empty_since = NULL WHERE name = ?",
                        (source, fhash, name),
                    )
            conn.executemany(
                "UPDATE subscriptions SET last_configured = ? WHERE name = ?",
                [(now, name) for name, _, _ in subs],
            )
            rows = conn.execute("SELECT name FROM subscriptions WHERE baselined_at IS NULL")
            pending = {row[0] for row in rows}
        return pending & {name for name, _, _ in subs}

    async def needs_baseline(self, subs: Sequence[tuple[str, str, str]]) -> set[str]:
        """Read-only twin of :meth:`sync_subscriptions` (for dry runs)."""
        return await self._run(self._needs_baseline, list(subs))

    def _needs_baseline(self, subs: list[tuple[str, str, str]]) -> set[str]:
        known = {
            row[0]: (row[1], row[2], row[3])
            for row in self._c.execute(
                "SELECT name, source, filter_hash, baselined_at FROM subscriptions"
            )
        }
        return {
            name
            for name, source, fhash in subs
            if known.get(name) is None or known[name][:2] != (source, fhash) or not known[name][2]
        }

    async def empty_since(self, names: Sequence[str]) -> dict[str, datetime]:
        """For subscriptions in their first run: when their query first answered nothing."""
        return await self._run(self._empty_since, list(names))

    def _empty_since(self, names: list[str]) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        for chunk in _chunks(names, 900):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT name, empty_since FROM subscriptions"
                f" WHERE name IN ({marks}) AND empty_since IS NOT NULL"
            )
            for name, since in self._c.execute(sql, chunk):
                stamp = _parse_ts(since)
                if stamp is not None:
                    out[str(name)] = stamp
        return out

    # ---------------------------------------------------------------- polling
    async def load_cursors(self, query_keys: Iterable[str]) -> dict[str, Cursor]:
        return await self._run(self._load_cursors, list(query_keys))

    def _load_cursors(self, keys: list[str]) -> dict[str, Cursor]:
        out: dict[str, Cursor] = {}
        for chunk in _chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT query_key, source, created_hw, updated_hw FROM cursors"
                f" WHERE query_key IN ({marks})"
            )
            for row in self._c.execute(sql, chunk):
                out[row[0]] = Cursor(row[0], row[1], row[2], row[3])
        return out

    async def load_fingerprints(self, query_key: str, ids: Sequence[str]) -> dict[str, str]:
        """Fingerprints this query recorded for these listings last time it saw them."""
        return await self._run(self._load_fingerprints, query_key, list(ids))

    def _load_fingerprints(self, query_key: str, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT listing_id, fingerprint FROM listings"
                f" WHERE query_key = ? AND listing_id IN ({marks})"
            )
            out.update(self._c.execute(sql, [query_key, *chunk]).fetchall())
        return out

    async def load_known(self, query_key: str, ids: Sequence[str]) -> dict[str, Facts]:
        """What this query recorded of these listings the last time it saw them, with the
        digest of the raw record they came from (``Facts.digest``)."""
        return await self._run(self._load_known, query_key, list(ids))

    def _load_known(self, query_key: str, ids: list[str]) -> dict[str, Facts]:
        out: dict[str, Facts] = {}
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT listing_id, source, fingerprint, price, status, created_at,"
                " updated_at, digest FROM listings"
                f" WHERE query_key = ? AND listing_id IN ({marks}) AND digest IS NOT NULL"
            )
            for lid, source, fp, price, status, created, updated, digest in self._c.execute(
                sql, [query_key, *chunk]
            ):
                out[lid] = Facts(
                    lid, source, fp, price, status, _from_iso(created), _from_iso(updated), digest
                )
        return out

    async def load_matches(
        self, source: str, subscriptions: Sequence[str], ids: Sequence[str]
    ) -> dict[tuple[str, str], MatchState]:
        """Match state for every (subscription, listing) pair among these, keyed that way."""
        return await self._run(self._load_matches, source, list(subscriptions), list(ids))

    def _load_matches(
        self, source: str, subs: list[str], ids: list[str]
    ) -> dict[tuple[str, str], MatchState]:
        out: dict[tuple[str, str], MatchState] = {}
        if not subs or not ids:
            return out
        wanted = set(subs)
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT subscription, listing_id, last_price, last_status, figures FROM matches"
                f" WHERE source = ? AND listing_id IN ({marks})"
            )
            for sub, lid, price, status, figures in self._c.execute(sql, [source, *chunk]):
                if sub in wanted:
                    out[(sub, lid)] = MatchState(sub, source, lid, price, status, figures)
        return out

    async def load_removals(
        self, source: str, subs: Sequence[str], ids: Sequence[str] | None = None
    ) -> dict[tuple[str, str], Removal]:
        """Removals of these subscriptions, keyed (subscription, listing id): of the
        listings ``ids``, or (``ids`` None) every one not told yet."""
        return await self._run(self._load_removals, source, list(subs), ids)

    def _load_removals(
        self, source: str, subs: list[str], ids: Sequence[str] | None
    ) -> dict[tuple[str, str], Removal]:
        out: dict[tuple[str, str], Removal] = {}
        wanted = set(subs)
        if not wanted:
            return out
        base = (
            "SELECT subscription, listing_id, removed_at, told, listing FROM removals"
            " WHERE source = ?"
        )
        if ids is None:
            batches: list[tuple[str, list[Any]]] = [(base + " AND told = 0", [source])]
        else:
            batches = [
                (base + f" AND listing_id IN ({','.join('?' * len(c))})", [source, *c])
                for c in _chunks(list(ids), 900)
            ]
        for sql, args in batches:
            for sub, lid, removed_at, told, listing in self._c.execute(sql, args):
                if sub not in wanted:
                    continue
                shown = None
                if listing:
                    with contextlib.suppress(ValueError):
                        props = json.loads(listing)
                        if isinstance(props, dict) and isinstance(props.get("listing"), dict):
                            shown = props["listing"]
                out[(sub, lid)] = Removal(sub, source, lid, removed_at, bool(told), shown)
        return out

    async def known_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these delivery keys are in the outbox already (a key is used once)."""
        return await self._run(self._known_keys, list(keys))

    def _known_keys(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(keys, 900):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key FROM outbox WHERE key IN ({marks})"
            found.update(str(row[0]) for row in self._c.execute(sql, chunk))
        return found

    async def held(self, source: str) -> list[HeldMessage]:
        """Messages of ``source`` held for quiet hours, with the time each waits for,
        oldest first (the caller decides which may go: their window may have ended, or
        a reload may have taken their quiet hours away)."""
        return await self._run(self._held, source)

    def _held(self, source: str) -> list[HeldMessage]:
        rows = self._c.execute(
            "SELECT key, channel_id, source, listing_id, event, subscriptions, line,"
            " next_attempt_at FROM outbox WHERE state = 'held' AND source = ? ORDER BY seq",
            (source,),
        ).fetchall()
        return [
            HeldMessage(
                str(k),
                int(ch),
                str(src),
                str(lid),
                str(ev),
                tuple(json.loads(subs)),
                line,
                _parse_ts(until),
            )
            for k, ch, src, lid, ev, subs, line, until in rows
        ]

    async def load_channel_states(
        self, source: str, pairs: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], ChannelState]:
        """Channel state for these (channel, listing id) pairs, keyed that way."""
        return await self._run(self._load_channel_states, source, list(pairs))

    def _load_channel_states(
        self, source: str, pairs: list[tuple[int, str]]
    ) -> dict[tuple[int, str], ChannelState]:
        out: dict[tuple[int, str], ChannelState] = {}
        wanted = set(pairs)
        ids = sorted({lid for _, lid in pairs})
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT channel_id, listing_id, price_seq, last_price, status_seq, last_status,"
                " price_told, status_told, marks"
                f" FROM channel_listings WHERE source = ? AND listing_id IN ({marks})"
            )
            for ch, lid, pseq, price, sseq, status, ptold, stold, kinds in self._c.execute(
                sql, [source, *chunk]
            ):
                if (ch, lid) in wanted:
                    out[(ch, lid)] = ChannelState(
                        ch,
                        source,
                        lid,
                        pseq,
                        price,
                        sseq,
                        status,
                        bool(ptold),
                        bool(stold),
                        _load_marks(kinds),
                    )
        return out

    async def long_unseen(
        self, source: str, unseen_since: datetime, checked_before: datetime, limit: int
    ) -> list[str]:
        """Up to ``limit`` listings no query has seen since ``unseen_since`` and whose
        existence was not confirmed since ``checked_before``, longest-unconfirmed first."""
        return await self._run(self._long_unseen, source, unseen_since, checked_before, limit)

    def _long_unseen(
        self, source: str, unseen_since: datetime, checked_before: datetime, limit: int
    ) -> list[str]:
        rows = self._c.execute(
            "SELECT listing_id FROM listings WHERE source = ? GROUP BY listing_id"
            " HAVING MAX(last_seen) < ? AND COALESCE(MAX(checked_at), '') < ?"
            " ORDER BY COALESCE(MAX(checked_at), MAX(last_seen)), listing_id LIMIT ?",
            (source, _ts(unseen_since), _ts(checked_before), limit),
        )
        return [str(r[0]) for r in rows]

    async def mark_checked(self, source: str, listing_ids: Sequence[str]) -> None:
        """The source confirmed these long-unseen listings still exist."""
        await self._run(self._mark_checked, source, list(listing_ids))

    def _mark_checked(self, source: str, ids: list[str]) -> None:
        now = _ts(self._now())
        with self._tx() as conn:
            conn.executemany(
                "UPDATE listings SET checked_at = ? WHERE source = ? AND listing_id = ?",
                [(now, source, lid) for lid in ids],
            )

    async def forget_listings(self, source: str, listing_ids: Sequence[str]) -> int:
        """The source says these listings are gone: forget them everywhere (their listing
        rows, match state and channel state). Returns how many were known."""
        return await self._run(self._forget_listings, source, list(listing_ids))

    def _forget_listings(self, source: str, ids: list[str]) -> int:
        with self._tx() as conn:
            known = 0
            for lid in ids:
                cur = conn.execute(
                    "DELETE FROM listings WHERE source = ? AND listing_id = ?", (source, lid)
                )
                known += cur.rowcount > 0
            _forget_orphans(conn, source, ids, _ts(self._now()))
        return known

    # ---------------------------------------------------------------- staging
    # A long answer (a Kato sweep of 100,000 records) is read page by page. What each page
    # teaches (the listings seen, the match state) waits in TEMP tables of the store's own
    # connection, which no other connection sees and which vanish with it, until
    # ``record_poll`` merges them in its one transaction; a poll or a query that fails
    # discards them. So memory holds a page, and nothing a poll read is visible before it
    # commits.

    def open_staging(self) -> int:
        """A new staging id for one poll (the polls of several sources may stage at once)."""
        return next(self._stagings)

    async def stage(
        self, staging: int, query_key: str, seen: Sequence[Facts], matches: Sequence[MatchState]
    ) -> None:
        """Hold one page's rows for the poll ``staging`` until it commits: the facts of
        each listing seen and the match state detection moved."""
        await self._run(self._stage, staging, query_key, list(seen), list(matches))

    def _stage(
        self, staging: int, query_key: str, seen: list[Facts], matches: list[MatchState]
    ) -> None:
        conn = self._staging_tables()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO temp.staged_listings (staging, query_key, listing_id,"
                " source, fingerprint, price, status, digest, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        staging,
                        query_key,
                        f.id,
                        f.source,
                        f.fingerprint,
                        f.asking_amount,
                        f.status,
                        f.digest,
                        _iso(f.created_at),
                        _iso(f.updated_at),
                    )
                    for f in seen
                ],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO temp.staged_matches (staging, query_key, subscription,"
                " source, listing_id, last_price, last_status, figures)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        staging,
                        query_key,
                        m.subscription,
                        m.source,
                        m.listing_id,
                        m.last_price,
                        m.last_status,
                        m.figures,
                    )
                    for m in matches
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    async def staged_ids(self, staging: int, query_key: str, ids: Sequence[str]) -> set[str]:
        """Which of these listings the poll already staged for this query (an earlier page
        of the same sweep served them too)."""
        return await self._run(self._staged_ids, staging, query_key, list(ids))

    def _staged_ids(self, staging: int, query_key: str, ids: list[str]) -> set[str]:
        if not self._staging_ready:
            return set()
        out: set[str] = set()
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT listing_id FROM temp.staged_listings"
                f" WHERE staging = ? AND query_key = ? AND listing_id IN ({marks})"
            )
            out.update(r[0] for r in self._c.execute(sql, [staging, query_key, *chunk]))
        return out

    async def staged_matched(
        self, staging: int, pairs: Iterable[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """Which of these (subscription, listing id) pairs the poll staged a match for."""
        return await self._run(self._staged_matched, staging, list(pairs))

    def _staged_matched(self, staging: int, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        if not self._staging_ready or not pairs:
            return set()
        sql = (
            "SELECT 1 FROM temp.staged_matches"
            " WHERE staging = ? AND subscription = ? AND listing_id = ? LIMIT 1"
        )
        return {
            (name, lid)
            for name, lid in pairs
            if self._c.execute(sql, (staging, name, lid)).fetchone() is not None
        }

    async def staged_count(self, staging: int | None = None) -> int:
        """Listings staged (by the poll ``staging``, or by any): 0 once polls are done."""
        return await self._run(self._staged_count, staging)

    def _staged_count(self, staging: int | None) -> int:
        if not self._staging_ready:
            return 0
        if staging is None:
            row = self._c.execute("SELECT COUNT(*) FROM temp.staged_listings").fetchone()
        else:
            row = self._c.execute(
                "SELECT COUNT(*) FROM temp.staged_listings WHERE staging = ?", (staging,)
            ).fetchone()
        return int(row[0])

    async def discard_staged(self, staging: int, query_key: str | None = None) -> None:
        """Drop what the poll staged (for one query, or all of it): it failed, or it is done."""
        await self._run(self._discard_staged, staging, query_key)

    def _discard_staged(self, staging: int, query_key: str | None) -> None:
        if not self._staging_ready:
            return
        args: list[int | str] = [staging]
        where = "staging = ?"
        if query_key is not None:
            where, args = "staging = ? AND query_key = ?", [staging, query_key]
        for table in ("staged_listings", "staged_matches"):
            self._c.execute(f"DELETE FROM temp.{table} WHERE {where}", args)

    def _staging_tables(self) -> sqlite3.Connection:
        conn = self._c
        if not self._staging_ready:
            conn.executescript(
                """
                CREATE TEMP TABLE IF NOT EXISTS staged_listings (
                    staging     INTEGER NOT NULL,
                    query_key   TEXT NOT NULL,
                    listing_id  TEXT NOT NULL,
                    source      TEXT NOT NULL,
                    fingerprint TEXT NOT NULL,
                    price       REAL,
                    status      TEXT,
                    digest      BLOB,
                    created_at  TEXT,
                    updated_at  TEXT,
                    PRIMARY KEY (staging, query_key, listing_id)
                ) WITHOUT ROWID;
                CREATE TEMP TABLE IF NOT EXISTS staged_matches (
                    staging      INTEGER NOT NULL,
                    query_key    TEXT NOT NULL,
                    subscription TEXT NOT NULL,
                    source       TEXT NOT NULL,
                    listing_id   TEXT NOT NULL,
                    last_price   REAL,
                    last_status  TEXT,
                    figures      TEXT,
                    PRIMARY KEY (staging, subscription, source, listing_id)
                ) WITHOUT ROWID;
                """
            )
            self._staging_ready = True
        return conn

    def _merge_staged(self, conn: sqlite3.Connection, staging: int, now: str) -> None:
        """Inside ``record_poll``'s transaction: the staged rows, as ``seen``/``matches``
        would have written them."""
        # "WHERE true" keeps SQLite from reading ON CONFLICT as part of the SELECT's join.
        conn.execute(
            "INSERT INTO listings (query_key, listing_id, source, fingerprint, price, status,"
            " digest, created_at, updated_at, first_seen, last_seen)"
            " SELECT query_key, listing_id, source, fingerprint, price, status, digest,"
            " created_at, updated_at, ?, ? FROM temp.staged_listings WHERE staging = ? AND true"
            " ON CONFLICT (query_key, listing_id) DO UPDATE SET"
            " fingerprint = excluded.fingerprint, price = excluded.price,"
            " status = excluded.status, digest = excluded.digest,"
            " created_at = excluded.created_at, updated_at = excluded.updated_at,"
            " last_seen = excluded.last_seen, missed_sweeps = 0",
            (now, now, staging),
        )
        conn.execute(
            "INSERT INTO matches (subscription, source, listing_id, first_matched, last_price,"
            " last_status, last_changed, figures) SELECT subscription, source, listing_id, ?,"
            " last_price, last_status, ?, figures FROM temp.staged_matches"
            " WHERE staging = ? AND true"
            " ON CONFLICT (subscription, source, listing_id) DO UPDATE SET"
            " last_price = excluded.last_price, last_status = excluded.last_status,"
            " last_changed = excluded.last_changed, figures = excluded.figures",
            (now, now, staging),
        )
        # A listing matched again is no longer removed for that subscription.
        conn.execute(
            "DELETE FROM removals WHERE EXISTS (SELECT 1 FROM temp.staged_matches AS s"
            " WHERE s.staging = ? AND s.subscription = removals.subscription"
            " AND s.source = removals.source AND s.listing_id = removals.listing_id)",
            (staging,),
        )

    async def record_poll(self, record: PollRecord) -> int:
        """Commit one poll: listings, matches, cursors, baselines, outbox. Returns rows queued."""
        return await self._run(self._record_poll, record)

    def _record_poll(self, rec: PollRecord) -> int:
        now = _ts(self._now())
        with self._tx() as conn:
            if rec.staging is not None and self._staging_ready:
                self._merge_staged(conn, rec.staging, now)
            conn.executemany(
                "INSERT INTO listings (query_key, listing_id, source, fingerprint, price, status,"
                " digest, created_at, updated_at, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (query_key, listing_id) DO UPDATE SET"
                " fingerprint = excluded.fingerprint, price = excluded.price,"
                " status = excluded.status, digest = excluded.digest,"
                " created_at = excluded.created_at, updated_at = excluded.updated_at,"
                " last_seen = excluded.last_seen, missed_sweeps = 0",
                [
                    (
                        query_key,
                        f.id,
                        f.source,
                        f.fingerprint,
                        f.asking_amount,
                        f.status,
                        f.digest,
                        _iso(f.created_at),
                        _iso(f.updated_at),
                        now,
                        now,
                    )
                    for query_key, seen in rec.seen.items()
                    for f in seen
                ],
            )
            conn.executemany(
                "INSERT INTO matches (subscription, source, listing_id, first_matched, last_price,"
                " last_status, last_changed, figures) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subscription, source, listing_id) DO UPDATE SET"
                " last_price = excluded.last_price, last_status = excluded.last_status,"
                " last_changed = excluded.last_changed, figures = excluded.figures",
                [
                    (
                        m.subscription,
                        m.source,
                        m.listing_id,
                        now,
                        m.last_price,
                        m.last_status,
                        now,
                        m.figures,
                    )
                    for m in rec.matches
                ],
            )
            conn.executemany(
                "DELETE FROM removals WHERE subscription = ? AND source = ? AND listing_id = ?",
                [(m.subscription, m.source, m.listing_id) for m in rec.matches],
            )
            conn.executemany(
                "UPDATE removals SET told = 1, listing = NULL"
                " WHERE subscription = ? AND source = ? AND listing_id = ?",
                [(sub, rec.source, lid) for sub, lid in rec.removals_told],
            )
            conn.executemany(
                "INSERT INTO cursors (query_key, source, created_hw, updated_hw, last_polled)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (query_key) DO UPDATE SET"
                " created_hw = excluded.created_hw, updated_hw = excluded.updated_hw,"
                " last_polled = excluded.last_polled",
                [(c.query_key, c.source, c.created_hw, c.updated_hw, now) for c in rec.cursors],
            )
            for sweep in rec.sweeps:
                rec.forgotten += _count_absences(
                    conn, rec.source, sweep, now, rec.gone_after_sweeps
                )
            conn.executemany(
                "UPDATE subscriptions SET baselined_at = ? WHERE name = ? AND baselined_at IS NULL",
                [(now, name) for name in rec.baselined],
            )
            conn.executemany(
                "UPDATE subscriptions SET empty_answers = empty_answers + 1,"
                " empty_since = COALESCE(empty_since, ?),"
                " baselined_at = CASE WHEN empty_answers + 1 >= ? THEN ? ELSE NULL END"
                " WHERE name = ? AND baselined_at IS NULL",
                [(now, rec.empty_answers_to_baseline, now, name) for name in rec.empty_answers],
            )
            conn.executemany(
                "INSERT INTO channel_listings (channel_id, source, listing_id, price_seq,"
                " last_price, status_seq, last_status, price_told, status_told, marks)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (channel_id, source, listing_id) DO UPDATE SET"
                " price_seq = excluded.price_seq, last_price = excluded.last_price,"
                " status_seq = excluded.status_seq, last_status = excluded.last_status,"
                " price_told = excluded.price_told, status_told = excluded.status_told,"
                " marks = excluded.marks",
                [
                    (
                        c.channel_id,
                        c.source,
                        c.listing_id,
                        c.price_seq,
                        c.last_price,
                        c.status_seq,
                        c.last_status,
                        c.price_told,
                        c.status_told,
                        _dump_marks(c.marks),
                    )
                    for c in rec.channel_states
                ],
            )
            keys = [m.key for m in rec.messages]
            existing: set[str] = set()
            for chunk in _chunks(keys, 900):
                marks = ",".join("?" * len(chunk))
                existing.update(
                    r[0]
                    for r in conn.execute(f"SELECT key FROM outbox WHERE key IN ({marks})", chunk)
                )
            rec.duplicates = [k for k in keys if k in existing]
            # Compare-and-set on 'held': a release applies once, whoever saw it due.
            conn.executemany(
                "UPDATE outbox SET state = ?, digest = ?, next_attempt_at = ?,"
                " sent_at = CASE WHEN ? IS NULL THEN sent_at ELSE ? END"
                " WHERE key = ? AND state = 'held'",
                [
                    (
                        "pending" if r.digest is None else "digested",
                        r.digest,
                        now,
                        r.digest,
                        now,
                        r.key,
                    )
                    for r in rec.released
                ],
            )
            before = conn.total_changes
            _insert_messages(conn, [m for m in rec.messages if m.key not in existing], now)
            queued = conn.total_changes - before
            conn.execute(
                "INSERT INTO source_status (source, last_success, consecutive_failures,"
                " last_listings, last_events) VALUES (?, ?, 0, ?, ?)"
                " ON CONFLICT (source) DO UPDATE SET last_success = excluded.last_success,"
                " consecutive_failures = 0, last_listings = excluded.last_listings,"
                " last_events = excluded.last_events",
                (rec.source, now, rec.listings, rec.events),
            )
        return queued

    async def record_poll_failure(self, source: str, error: str) -> None:
        await self._run(self._record_poll_failure, source, error)

    def _record_poll_failure(self, source: str, error: str) -> None:
        now = _ts(self._now())
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO source_status (source, last_failure, last_error, consecutive_failures)"
                " VALUES (?, ?, ?, 1) ON CONFLICT (source) DO UPDATE SET"
                " last_failure = excluded.last_failure, last_error = excluded.last_error,"
                " consecutive_failures = source_status.consecutive_failures + 1",
                (source, now, error[:500]),
            )

    # ---------------------------------------------------------------- delivery
    async def due_messages(
        self, limit_per_channel: int = 50, *, max_wait_s: float | None = None
    ) -> dict[int, list[OutboxRow]]:
        """Per channel, the pending rows that may be sent now, in event order.

        A channel whose oldest open row is not due yet (backing off) or is ``sending``
        (outcome unknown, awaiting reconciliation) yields nothing: messages in a channel go
        out in the order their events happened. ``failed`` and ``dropped`` rows hold
        nothing up. A due time more than ``max_wait_s`` ahead (the longest wait delivery
        ever schedules) can only come from a clock stepped back: it counts as due now.
        """
        return await self._run(self._due_messages, limit_per_channel, max_wait_s)

    def _due_messages(self, limit: int, max_wait_s: float | None) -> dict[int, list[OutboxRow]]:
        now = self._now()
        horizon = None if max_wait_s is None else now + timedelta(seconds=max_wait_s)
        out: dict[int, list[OutboxRow]] = {}
        blocked: set[int] = set()
        rows = self._c.execute(
            f"SELECT {_ROW_COLS} FROM outbox WHERE state IN ('pending', 'sending')"
            " ORDER BY channel_id, COALESCE(after_seq, seq), seq"
        )
        for raw in rows:
            row = _row(raw)
            if row.message.channel_id in blocked:
                continue
            ahead = row.next_attempt_at > now
            waiting = ahead and (horizon is None or row.next_attempt_at <= horizon)
            if row.state == "sending" or waiting:
                blocked.add(row.message.channel_id)
                continue
            batch = out.setdefault(row.message.channel_id, [])
            if len(batch) < limit:
                batch.append(row)
            else:
                blocked.add(row.message.channel_id)
        return out

    async def claim(self, seq: int, *, thread_id: int | None = None) -> bool:
        """Mark a pending row ``sending`` before its request goes out (compare-and-set),
        with the thread its request goes to (None: the channel; a patch keeps the
        message it patches).

        False when the row is no longer pending (another claimer won, or an operator
        dropped it): the caller must not send it.
        """
        return await self._run(self._claim, seq, thread_id)

    def _claim(self, seq: int, thread_id: int | None = None) -> bool:
        now = _ts(self._now())
        # next_attempt_at = now: if we crash mid-send, reconciliation may look at once
        # (it still waits out the request timeout counted from claimed_at).
        return self._cas(
            "UPDATE outbox SET state = 'sending', claimed_at = ?, next_attempt_at = ?,"
            " attempts = attempts + 1,"
            " thread_id = CASE WHEN kind = 'message' THEN ? ELSE thread_id END"
            " WHERE seq = ? AND state = 'pending'",
            (now, now, thread_id, seq),
        )

    async def retarget(self, seq: int, thread_id: int | None) -> bool:
        """A claimed row's request goes somewhere else after all (its thread is gone:
        the channel), committed before that request goes out."""
        return await self._run(
            self._cas,
            "UPDATE outbox SET thread_id = ? WHERE seq = ? AND state = 'sending'",
            (thread_id, seq),
        )

    async def mark_dropped(self, seq: int, reason: str) -> bool:
        """Give up on a row that has nothing left to do, without an operator: a photo
        that cannot be posted, the patch of a message that is gone. It stays listed as
        ``dropped`` with the reason; it holds nothing up."""
        return await self._run(
            self._cas,
            "UPDATE outbox SET state = 'dropped', sent_at = ?, last_error = ?"
            " WHERE seq = ? AND state IN ('pending', 'sending')",
            (_ts(self._now()), reason[:500], seq),
        )

    async def thread_root(self, channel_id: int, source: str, listing_id: str) -> ThreadRoot | None:
        """Where a listing's later events in a channel reply, if anything was told there."""
        return await self._run(self._thread_root, channel_id, source, listing_id)

    def _thread_root(self, channel_id: int, source: str, listing_id: str) -> ThreadRoot | None:
        raw = self._c.execute(
            "SELECT root_key, message_id, digest FROM thread_roots"
            " WHERE channel_id = ? AND source = ? AND listing_id = ?",
            (channel_id, source, listing_id),
        ).fetchone()
        if raw is None:
            return None
        return ThreadRoot(channel_id, source, listing_id, str(raw[0]), int(raw[1]), bool(raw[2]))

    def thread_roots_sync(self, channel_id: int | None = None) -> list[ThreadRoot]:
        """Every thread root (of one channel), in the order they were told."""
        where, args = ("", []) if channel_id is None else (" WHERE channel_id = ?", [channel_id])
        return [
            ThreadRoot(int(c), str(s), str(lid), str(k), int(m), bool(d))
            for c, s, lid, k, m, d in self._c.execute(
                "SELECT channel_id, source, listing_id, root_key, message_id, digest"
                f" FROM thread_roots{where} ORDER BY told_at, message_id",
                args,
            )
        ]

    async def rows_by_keys(self, keys: Sequence[str]) -> list[OutboxRow]:
        """The outbox rows with these keys (those that exist), in outbox order."""
        return await self._run(self._rows_by_keys, list(keys))

    def _rows_by_keys(self, keys: list[str]) -> list[OutboxRow]:
        marks = ", ".join("?" * len(keys))
        sql = f"SELECT {_ROW_COLS} FROM outbox WHERE key IN ({marks}) ORDER BY seq"
        return [_row(r) for r in self._c.execute(sql, keys)] if keys else []

    async def forget_thread_root(self, channel_id: int, message_id: int) -> int:
        """The message is gone (deleted in ChatKitty): no listing replies under it any
        more. Returns how many listings it was the root of."""
        return await self._run(self._forget_thread_root, channel_id, message_id)

    def _forget_thread_root(self, channel_id: int, message_id: int) -> int:
        with self._tx() as conn:
            return conn.execute(
                "DELETE FROM thread_roots WHERE channel_id = ? AND message_id = ?",
                (channel_id, message_id),
            ).rowcount

    async def mark_sending(self, seq: int) -> None:
        """Claim without caring whether the claim won (tests and benchmarks)."""
        await self.claim(seq)

    async def mark_unknown(self, seq: int, delay_s: float, error: str) -> bool:
        """The send may or may not have reached ChatKitty: keep the row ``sending`` and
        look for it in the channel after ``delay_s`` before sending it again."""
        return await self._run(self._mark_unknown, seq, delay_s, error)

    def _mark_unknown(self, seq: int, delay_s: float, error: str) -> bool:
        due = _ts(self._now() + timedelta(seconds=delay_s))
        return self._cas(
            "UPDATE outbox SET next_attempt_at = ?, last_error = ?, may_be_sent = 1"
            " WHERE seq = ? AND state = 'sending'",
            (due, error[:500], seq),
        )

    async def mark_sent(
        self,
        seq: int,
        message_id: int | None,
        *,
        roots: Sequence[ThreadRoot] = (),
        followups: Sequence[OutgoingMessage] = (),
    ) -> bool:
        """The row is posted (``message_id``: where it is). In the same transaction: the
        thread roots it became (a listing's root already recorded stays), and the rows
        that follow from it (its photo, the patch of its thread root), each queued once
        whatever happens next and sent right after it."""
        if not roots and not followups:
            return await self._run(self._mark_sent, seq, message_id)
        return await self._run(self._mark_sent_with, seq, message_id, list(roots), list(followups))

    def _mark_sent_with(
        self,
        seq: int,
        message_id: int | None,
        roots: list[ThreadRoot],
        followups: list[OutgoingMessage],
    ) -> bool:
        now = _ts(self._now())
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, message_id = ?,"
                " last_error = NULL, may_be_sent = 0"
                " WHERE seq = ? AND state IN ('pending', 'sending')",
                (now, message_id, seq),
            )
            if cur.rowcount == 0:
                return False
            conn.executemany(
                "INSERT OR IGNORE INTO thread_roots (channel_id, source, listing_id, root_key,"
                " message_id, digest, told_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.channel_id, r.source, r.listing_id, r.root_key, r.message_id, r.digest, now)
                    for r in roots
                ],
            )
            _insert_messages(conn, followups, now, after_seq=seq)
        return True

    def _mark_sent(self, seq: int, message_id: int | None) -> bool:
        return self._cas(
            "UPDATE outbox SET state = 'sent', sent_at = ?, message_id = ?, last_error = NULL,"
            " may_be_sent = 0 WHERE seq = ? AND state IN ('pending', 'sending')",
            (_ts(self._now()), message_id, seq),
        )

    async def mark_retry(self, seq: int, delay_s: float, error: str) -> bool:
        """Definitely not posted (refused, or not found in the channel): pending again."""
        return await self._run(self._mark_retry, seq, delay_s, error)

    def _mark_retry(self, seq: int, delay_s: float, error: str) -> bool:
        due = _ts(self._now() + timedelta(seconds=delay_s))
        return self._cas(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, last_error = ?,"
            " may_be_sent = 0 WHERE seq = ? AND state = 'sending'",
            (due, error[:500], seq),
        )

    async def mark_failed(self, seq: int, error: str) -> bool:
        return await self._run(self._mark_failed, seq, error)

    def _mark_failed(self, seq: int, error: str) -> bool:
        return self._cas(
            "UPDATE outbox SET state = 'failed', last_error = ?"
            " WHERE seq = ? AND state IN ('pending', 'sending')",
            (error[:500], seq),
        )

    async def sending_rows(self) -> list[OutboxRow]:
        """Rows whose send outcome is unknown (a crash or a timeout mid-request)."""
        return await self._run(self._sending_rows)

    def _sending_rows(self) -> list[OutboxRow]:
        sql = f"SELECT {_ROW_COLS} FROM outbox WHERE state = 'sending' ORDER BY seq"
        return [_row(r) for r in self._c.execute(sql)]

    async def open_counts(self) -> tuple[int, datetime | None]:
        """(rows not yet delivered, creation time of the oldest of them)."""
        return await self._run(self._open_counts)

    def _open_counts(self) -> tuple[int, datetime | None]:
        n, oldest = self._c.execute(
            "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state IN ('pending', 'sending')"
        ).fetchone()
        return int(n), _parse_ts(oldest)

    async def next_due(self) -> datetime | None:
        """When the next open row is due (None: nothing open)."""
        return await self._run(self._next_due)

    def _next_due(self) -> datetime | None:
        (due,) = self._c.execute(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE state IN ('pending', 'sending')"
        ).fetchone()
        return _parse_ts(due)

    async def outbox_health(self) -> OutboxHealth:
        return await self._run(self.outbox_health_sync)

    def outbox_health_sync(self) -> OutboxHealth:
        n, oldest = self._open_counts()
        failed = self._c.execute("SELECT COUNT(*) FROM outbox WHERE state = 'failed'").fetchone()
        return OutboxHealth(n, oldest, int(failed[0]))

    def _cas(self, sql: str, args: Sequence[Any]) -> bool:
        """One compare-and-set UPDATE in its own transaction: True when it changed a row."""
        with self._tx() as conn:
            return conn.execute(sql, args).rowcount == 1

    # ------------------------------------------------ operator actions (sync, beside a service)
    # Each is one compare-and-set on the row's state, so they are safe while `run` works
    # the same file: a row the service claimed in between is simply not touched.
    _REQUEUE = (
        "UPDATE outbox SET state = CASE WHEN may_be_sent THEN 'sending' ELSE 'pending' END,"
        " next_attempt_at = ?, requeued_at = ?, attempts = 0"
    )

    def retry_failed_sync(self) -> int:
        """Every failed row back in the queue (one that may have been posted is searched
        for in its channel first)."""
        now = _ts(self._now())
        with self._tx() as conn:
            cur = conn.execute(self._REQUEUE + " WHERE state = 'failed'", (now, now))
            return cur.rowcount

    def row_sync(self, key: str) -> OutboxRow | None:
        raw = self._c.execute(f"SELECT {_ROW_COLS} FROM outbox WHERE key = ?", (key,)).fetchone()
        return None if raw is None else _row(raw)

    def retry_sync(self, key: str) -> bool:
        """Put one failed row back in the queue, or make a waiting pending row due now."""
        now = _ts(self._now())
        return self._cas(
            self._REQUEUE + " WHERE key = ? AND state IN ('failed', 'pending')",
            (now, now, key),
        )

    def drop_sync(self, key: str) -> bool:
        """Give up on one failed or pending row for good (it stays listed as ``dropped``)."""
        return self._cas(
            "UPDATE outbox SET state = 'dropped', sent_at = ?,"
            " last_error = 'dropped by an operator' || COALESCE(': ' || last_error, '')"
            " WHERE key = ? AND state IN ('failed', 'pending')",
            (_ts(self._now()), key),
        )

    def list_rows_sync(self, state: str | None = None, limit: int = 100) -> list[OutboxRow]:
        """Outbox rows, oldest first (all states, or one)."""
        where, args = ("", []) if state is None else (" WHERE state = ?", [state])
        sql = f"SELECT {_ROW_COLS} FROM outbox{where} ORDER BY seq LIMIT ?"
        return [_row(r) for r in self._c.execute(sql, [*args, limit])]

    # ---------------------------------------------------------------- housekeeping
    async def prune(self, older_than: datetime) -> Pruned:
        """Housekeeping for the whole state file (run it once per file, not per source).

        Forgets what nothing has used since ``older_than``: subscriptions no longer
        configured (with their match state), cursors of queries no longer polled (with
        their listing rows), and sent change messages (their sequence keys never recur).
        A sent ``new`` message deduplicates "new" for as long as its listing is known, so
        it is compacted (body and properties dropped, key kept) rather than deleted; once
        its listing is forgotten it goes too. Listings themselves are forgotten only on
        evidence that they are gone (``forget_listings``, complete sweeps).
        """
        return await self._run(self._prune, older_than)

    def _prune(self, older_than: datetime) -> Pruned:
        cutoff = _ts(older_than)
        now = _ts(self._now())
        with self._tx() as conn:
            # A row from before last_configured existed starts its grace period now.
            conn.execute(
                "UPDATE subscriptions SET last_configured = ? WHERE last_configured IS NULL",
                (now,),
            )
            subs = [
                str(r[0])
                for r in conn.execute(
                    "DELETE FROM subscriptions WHERE last_configured < ? RETURNING name",
                    (cutoff,),
                )
            ]
            conn.executemany("DELETE FROM matches WHERE subscription = ?", [(n,) for n in subs])
            # Removals are kept a retention period, for back_on_market (and untold ones of
            # subscriptions that left the config go too).
            conn.execute("DELETE FROM removals WHERE removed_at < ?", (cutoff,))
            queries = [
                str(r[0])
                for r in conn.execute(
                    "DELETE FROM cursors WHERE last_polled < ? RETURNING query_key", (cutoff,)
                )
            ]
            orphaned: dict[str, set[str]] = {}
            for key in queries:
                for source, lid in conn.execute(
                    "DELETE FROM listings WHERE query_key = ? RETURNING source, listing_id",
                    (key,),
                ):
                    orphaned.setdefault(str(source), set()).add(str(lid))
            listings = 0
            for source, ids in orphaned.items():
                listings += _forget_orphans(conn, source, sorted(ids))
            # Rows an operator dropped (sent_at: when) go like sent ones; failed rows stay
            # until an operator retries or drops them.
            sent_deleted = conn.execute(
                "DELETE FROM outbox WHERE state IN ('sent', 'dropped', 'digested') AND sent_at < ?"
                " AND (event != 'new'"
                " OR NOT EXISTS (SELECT 1 FROM matches m WHERE m.source = outbox.source"
                " AND m.listing_id = outbox.listing_id))",
                (cutoff,),
            ).rowcount
            # A thread root goes once nothing is known of its listing in its channel (a
            # listing told again later starts a new thread).
            conn.execute(
                "DELETE FROM thread_roots WHERE told_at < ? AND NOT EXISTS (SELECT 1 FROM"
                " channel_listings c WHERE c.channel_id = thread_roots.channel_id"
                " AND c.source = thread_roots.source AND c.listing_id = thread_roots.listing_id)",
                (cutoff,),
            )
            compacted = conn.execute(
                "UPDATE outbox SET body = '', properties = '{}', line = ''"
                " WHERE state IN ('sent', 'digested')"
                " AND sent_at < ? AND body != ''",
                (cutoff,),
            ).rowcount
        return Pruned(len(subs), len(queries), listings, compacted, sent_deleted)

    # ---------------------------------------------------------------- subscription health
    async def set_subscription_problems(self, kind: str, problems: Mapping[str, str]) -> None:
        """Replace the problems of ``kind`` with ``problems`` (subscription -> detail).

        A problem that persists keeps its ``since``; a subscription no longer named is
        cleared.
        """
        await self._run(self._set_subscription_problems, kind, dict(problems))

    def _set_subscription_problems(self, kind: str, problems: dict[str, str]) -> None:
        now = _ts(self._now())
        with self._tx() as conn:
            known = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM subscription_problems WHERE kind = ?", (kind,)
                )
            }
            for name in known - problems.keys():
                conn.execute(
                    "DELETE FROM subscription_problems WHERE name = ? AND kind = ?", (name, kind)
                )
            for name, detail in problems.items():
                conn.execute(
                    "INSERT INTO subscription_problems (name, kind, detail, since)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " kind = excluded.kind, detail = excluded.detail,"
                    " since = CASE WHEN subscription_problems.kind = excluded.kind"
                    " THEN subscription_problems.since ELSE excluded.since END",
                    (name, kind, detail[:500], now),
                )

    def subscription_problems_sync(self) -> list[SubscriptionProblem]:
        return [
            SubscriptionProblem(name, kind, detail, _parse_ts(since) or self._now())
            for name, kind, detail, since in self._c.execute(
                "SELECT name, kind, detail, since FROM subscription_problems ORDER BY name"
            )
        ]

    async def save_channel_names(self, names: Mapping[str, int]) -> None:
        """Remember the channel ids ChatKitty resolved names to (replacing the old map)."""
        await self._run(self._save_channel_names, dict(names))

    def _save_channel_names(self, names: dict[str, int]) -> None:
        now = _ts(self._now())
        with self._tx() as conn:
            conn.execute("DELETE FROM channel_names")
            conn.executemany(
                "INSERT INTO channel_names (name, channel_id, resolved_at) VALUES (?, ?, ?)",
                [(name, channel_id, now) for name, channel_id in names.items()],
            )

    async def load_channel_names(self) -> dict[str, int]:
        return await self._run(self._load_channel_names)

    def _load_channel_names(self) -> dict[str, int]:
        return dict(self._c.execute("SELECT name, channel_id FROM channel_names"))

    # ---------------------------------------------------------------- status (sync, read-only)
    def source_statuses_sync(self) -> list[SourceStatus]:
        rows = self._c.execute(
            "SELECT source, last_success, last_failure, last_error, consecutive_failures,"
            " last_listings, last_events FROM source_status ORDER BY source"
        )
        return [
            SourceStatus(r[0], _parse_ts(r[1]), _parse_ts(r[2]), r[3], r[4], r[5], r[6])
            for r in rows
        ]

    async def source_statuses(self) -> list[SourceStatus]:
        return await self._run(self.source_statuses_sync)

    def subscription_statuses_sync(self) -> list[SubscriptionStatus]:
        counts = dict(
            self._c.execute("SELECT subscription, COUNT(*) FROM matches GROUP BY subscription")
        )
        last: dict[str, datetime] = {}
        for subs_json, sent_at in self._c.execute(
            "SELECT subscriptions, MAX(sent_at) FROM outbox WHERE state = 'sent'"
            " GROUP BY subscriptions"
        ):
            stamp = _parse_ts(sent_at)
            for name in json.loads(subs_json):
                if stamp is not None and (name not in last or last[name] < stamp):
                    last[name] = stamp
        return [
            SubscriptionStatus(name, source, _parse_ts(base), counts.get(name, 0), last.get(name))
            for name, source, base in self._c.execute(
                "SELECT name, source, baselined_at FROM subscriptions ORDER BY name"
            )
        ]

    def outbox_summary_sync(self, failed_limit: int = 20) -> OutboxSummary:
        counts = dict(self._c.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        oldest = self._c.execute(
            "SELECT MIN(created_at) FROM outbox WHERE state IN ('pending', 'sending')"
        ).fetchone()[0]
        failed = [
            (int(r[0]), str(r[1]), int(r[2]), r[3])
            for r in self._c.execute(
                "SELECT seq, key, channel_id, last_error FROM outbox WHERE state = 'failed'"
                " ORDER BY seq DESC LIMIT ?",
                (failed_limit,),
            )
        ]
        return OutboxSummary({str(k): int(v) for k, v in counts.items()}, _parse_ts(oldest), failed)

    def all_rows_sync(self) -> list[OutboxRow]:
        """Every outbox row in order, for tests (``outbox list`` pages with ``list_rows_sync``)."""
        sql = f"SELECT {_ROW_COLS} FROM outbox ORDER BY seq"
        return [_row(r) for r in self._c.execute(sql)]

    # ---------------------------------------------------------------- chat commands
    async def command_channels(self, channel_ids: Iterable[int]) -> dict[int, CommandChannel]:
        """Make ``channel_ids`` the channels where commands are read; returns their cursors.

        A channel new to the set is enabled from now (earlier commands are never run); a
        channel that left it is forgotten, so enabling it again starts from then too.
        """
        return await self._run(self._command_channels, sorted(set(channel_ids)))

    def _command_channels(self, ids: list[int]) -> dict[int, CommandChannel]:
        now = _ts(self._now())
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO command_channels (channel_id, enabled_at) VALUES (?, ?)",
                [(i, now) for i in ids],
            )
            marks = ",".join("?" * len(ids))
            conn.execute(f"DELETE FROM command_channels WHERE channel_id NOT IN ({marks})", ids)
            rows = conn.execute(
                "SELECT channel_id, enabled_at, last_message_id FROM command_channels"
            ).fetchall()
        out = {}
        for channel_id, enabled_at, last in rows:
            when = _parse_ts(enabled_at)
            assert when is not None
            out[int(channel_id)] = CommandChannel(int(channel_id), when, last)
        return out

    async def record_command(self, handled: HandledCommand, change: ChatChange | None) -> bool:
        """One command's effect, its outcome and the channel's cursor, in ONE transaction.

        False (and nothing written) when this message was handled already: a command is
        never carried out twice, whatever crashed where.
        """
        return await self._run(self._record_command, handled, change)

    def _record_command(self, h: HandledCommand, change: ChatChange | None) -> bool:
        now = _ts(self._now())
        with self._tx() as conn:
            done = conn.execute("SELECT 1 FROM commands WHERE message_id = ?", (h.message_id,))
            if done.fetchone() is not None:
                return False
            if change is not None:
                _apply_chat_change(conn, change)
            conn.execute(
                "INSERT INTO commands (message_id, channel_id, username, verb, outcome, answer,"
                " handled_at, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    h.message_id,
                    h.channel_id,
                    h.username,
                    h.verb,
                    h.outcome,
                    h.answer,
                    now,
                    None if h.answer is not None else now,
                ),
            )
            conn.execute(
                "UPDATE command_channels SET last_message_id = MAX(COALESCE(last_message_id, 0),"
                " ?) WHERE channel_id = ?",
                (h.message_id, h.channel_id),
            )
        return True

    async def advance_command_cursor(self, channel_id: int, message_id: int) -> None:
        """Move a channel's cursor past a message that is not a command for listingbot."""
        await self._run(self._advance_command_cursor, channel_id, message_id)

    def _advance_command_cursor(self, channel_id: int, message_id: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE command_channels SET last_message_id = MAX(COALESCE(last_message_id, 0),"
                " ?) WHERE channel_id = ?",
                (message_id, channel_id),
            )

    async def recent_commands(self, channel_id: int, username: str, since: datetime) -> int:
        """How many commands ``username`` had handled in the channel since ``since``."""
        return await self._run(self._recent_commands, channel_id, username, since)

    def _recent_commands(self, channel_id: int, username: str, since: datetime) -> int:
        row = self._c.execute(
            "SELECT COUNT(*) FROM commands WHERE channel_id = ? AND username = ?"
            " AND handled_at >= ? AND outcome != ?",
            (channel_id, username, _ts(since), COMMAND_SKIPPED),
        ).fetchone()
        return int(row[0])

    async def pending_answers(self) -> list[PendingAnswer]:
        """Answers recorded but not yet known to be posted, oldest first."""
        return await self._run(self._pending_answers)

    def _pending_answers(self) -> list[PendingAnswer]:
        rows = self._c.execute(
            "SELECT message_id, channel_id, answer, handled_at FROM commands"
            " WHERE answered_at IS NULL ORDER BY message_id"
        ).fetchall()
        out = []
        for message_id, channel_id, answer, handled_at in rows:
            when = _parse_ts(handled_at)
            assert when is not None
            out.append(PendingAnswer(int(message_id), int(channel_id), str(answer or ""), when))
        return out

    async def mark_answered(self, message_id: int, answer_id: int | None) -> None:
        await self._run(self._mark_answered, message_id, answer_id)

    def _mark_answered(self, message_id: int, answer_id: int | None) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE commands SET answered_at = ?, answer_id = ? WHERE message_id = ?"
                " AND answered_at IS NULL",
                (_ts(self._now()), answer_id, message_id),
            )

    async def chat_subscriptions(self) -> list[ChatSubscriptionRow]:
        """Every subscription made from the chat, by channel then creation."""
        return await self._run(self.chat_subscriptions_sync)

    def chat_subscriptions_sync(self) -> list[ChatSubscriptionRow]:
        rows = self._c.execute(
            "SELECT name, channel_id, source, filters, first_run, state, created_by,"
            " created_at, command_id FROM chat_subscriptions"
            " ORDER BY channel_id, created_at, name"
        ).fetchall()
        out = []
        for r in rows:
            created = _parse_ts(r[7])
            assert created is not None
            out.append(
                ChatSubscriptionRow(
                    name=str(r[0]),
                    channel_id=int(r[1]),
                    source=str(r[2]),
                    filters=json.loads(r[3]),
                    first_run=str(r[4]),
                    state=str(r[5]),
                    created_by=str(r[6]),
                    created_at=created,
                    command_id=int(r[8]),
                )
            )
        return out

    async def listing_history(
        self, channel_id: int, listing_id: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        """For ``explain``: the newest snapshot of the listing any message carried, and
        what was last queued for it in this channel (event, state and when)."""
        return await self._run(self._listing_history, channel_id, listing_id)

    def _listing_history(
        self, channel_id: int, listing_id: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        snapshot: dict[str, Any] | None = None
        for (props,) in self._c.execute(
            "SELECT properties FROM outbox WHERE listing_id = ? AND properties != '{}'"
            " ORDER BY seq DESC LIMIT 1",
            (listing_id,),
        ):
            value = json.loads(props).get("listing")
            snapshot = value if isinstance(value, dict) else None
        row = self._c.execute(
            "SELECT event, state, sent_at, created_at FROM outbox WHERE channel_id = ?"
            " AND listing_id = ? ORDER BY seq DESC LIMIT 1",
            (channel_id, listing_id),
        ).fetchone()
        posted = None
        if row is not None:
            event, state, sent_at, created_at = row
            when = _parse_ts(sent_at if state == "sent" and sent_at else created_at)
            stamp = when.strftime("%Y-%m-%d %H:%M UTC") if when else "?"
            posted = f"{str(event).replace('_', ' ')} ({state}, {stamp})"
        return snapshot, posted

    async def prune_commands(self, older_than: datetime) -> int:
        """Forget answered commands handled before ``older_than``. Their messages are
        behind their channel's cursor, which keeps them from running again."""
        return await self._run(self._prune_commands, older_than)

    def _prune_commands(self, older_than: datetime) -> int:
        with self._tx() as conn:
            return conn.execute(
                "DELETE FROM commands WHERE answered_at IS NOT NULL AND handled_at < ?",
                (_ts(older_than),),
            ).rowcount

    def command_counts_sync(self) -> dict[str, int]:
        """Commands handled, by outcome, and answers still to post (status, metrics)."""
        out = {
            str(k): int(v)
            for k, v in self._c.execute("SELECT outcome, COUNT(*) FROM commands GROUP BY outcome")
        }
        row = self._c.execute("SELECT COUNT(*) FROM commands WHERE answered_at IS NULL")
        out["unanswered"] = int(row.fetchone()[0])
        return out

    def counts_sync(self) -> dict[str, int]:
        """Row counts per table, for status and the benchmark."""
        out = {}
        tables = ("listings", "matches", "channel_listings", "subscriptions", "cursors", "outbox")
        for table in tables:
            out[table] = int(self._c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return out


_ROW_COLS = (
    "seq, key, channel_id, source, listing_id, event, subscriptions, body, properties, state,"
    " attempts, created_at, next_attempt_at, claimed_at, message_id, last_error, sent_at,"
    " requeued_at, may_be_sent, kind, thread_id, threaded, photo"
)


def _row(r: Sequence[Any]) -> OutboxRow:
    created = _parse_ts(r[11])
    due = _parse_ts(r[12])
    assert created is not None
    assert due is not None
    return OutboxRow(
        seq=int(r[0]),
        message=OutgoingMessage(
            key=str(r[1]),
            channel_id=int(r[2]),
            source=str(r[3]),
            listing_id=str(r[4]),
            event=str(r[5]),
            subscriptions=tuple(json.loads(r[6])),
            body=str(r[7]),
            properties=json.loads(r[8]),
            kind=str(r[19]),
            thread_id=None if r[20] is None else int(r[20]),
            threaded=bool(r[21]),
            photo=r[22],
        ),
        state=str(r[9]),
        attempts=int(r[10]),
        created_at=created,
        next_attempt_at=due,
        claimed_at=_parse_ts(r[13]),
        message_id=None if r[14] is None else int(r[14]),
        last_error=r[15],
        sent_at=_parse_ts(r[16]),
        requeued_at=_parse_ts(r[17]),
        may_be_sent=bool(r[18]),
    )


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_messages(
    conn: sqlite3.Connection,
    messages: Sequence[OutgoingMessage],
    now: str,
    *,
    after_seq: int | None = None,
) -> None:
    """Queue outbox rows (a key already there is left as it is)."""
    conn.executemany(
        "INSERT OR IGNORE INTO outbox (key, channel_id, source, listing_id, event,"
        " subscriptions, body, properties, created_at, next_attempt_at, state,"
        " digest, line, sent_at, kind, thread_id, after_seq, threaded, photo)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                m.key,
                m.channel_id,
                m.source,
                m.listing_id,
                m.event,
                json.dumps(list(m.subscriptions)),
                m.body,
                json.dumps(m.properties, separators=(",", ":"), ensure_ascii=False),
                now,
                _ts(m.hold_until) if m.hold_until is not None else now,
                m.state,
                m.digest,
                m.line,
                # A told (digested) message counts as sent for housekeeping.
                now if m.state == "digested" else None,
                m.kind,
                m.thread_id,
                after_seq,
                m.threaded,
                m.photo,
            )
            for m in messages
        ],
    )


def _forget_orphans(
    conn: sqlite3.Connection, source: str, ids: Sequence[str], removed_at: str | None = None
) -> int:
    """Drop match and channel state of these listings where no query knows them any more;
    the number of listings forgotten that way. With ``removed_at`` the source confirmed
    them gone: each subscription that matched one keeps a removal (see ``removals``)."""
    forgotten = 0
    for lid in ids:
        still = conn.execute(
            "SELECT 1 FROM listings WHERE source = ? AND listing_id = ? LIMIT 1", (source, lid)
        ).fetchone()
        if still is not None:
            continue
        if removed_at is not None:
            last = conn.execute(
                "SELECT properties FROM outbox WHERE source = ? AND listing_id = ?"
                " AND properties != '{}' ORDER BY seq DESC LIMIT 1",
                (source, lid),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO removals (subscription, source, listing_id, removed_at,"
                " told, listing) SELECT subscription, source, listing_id, ?, 0, ? FROM matches"
                " WHERE source = ? AND listing_id = ?",
                (removed_at, last[0] if last else None, source, lid),
            )
        conn.execute("DELETE FROM matches WHERE source = ? AND listing_id = ?", (source, lid))
        conn.execute(
            "DELETE FROM channel_listings WHERE source = ? AND listing_id = ?", (source, lid)
        )
        forgotten += 1
    return forgotten


def _count_absences(
    conn: sqlite3.Connection, source: str, sweep: Sweep, now: str, gone_after: int
) -> int:
    """One more complete sweep without them for the listings this sweep did not return
    (rows it returned were just stamped ``now``); forget those absent ``gone_after``
    sweeps in a row. Returns the listings forgotten."""
    if sweep.unreadable is None:
        return 0  # a record without an id was skipped: any listing may have been it
    skip = sorted(sweep.unreadable)
    marks = ",".join("?" * len(skip))
    exclude = f" AND listing_id NOT IN ({marks})" if skip else ""
    conn.execute(
        "UPDATE listings SET missed_sweeps = missed_sweeps + 1"
        f" WHERE query_key = ? AND last_seen < ?{exclude}",
        (sweep.query_key, now, *skip),
    )
    gone = [
        str(r[0])
        for r in conn.execute(
            "DELETE FROM listings WHERE query_key = ? AND missed_sweeps >= ? RETURNING listing_id",
            (sweep.query_key, gone_after),
        )
    ]
    return _forget_orphans(conn, source, gone, now)


def _apply_chat_change(conn: sqlite3.Connection, change: ChatChange) -> None:
    if change.kind == "add":
        row = change.row
        assert row is not None
        conn.execute(
            "INSERT INTO chat_subscriptions (name, channel_id, source, filters, first_run,"
            " state, created_by, created_at, command_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.name,
                row.channel_id,
                row.source,
                json.dumps(row.filters, sort_keys=True),
                row.first_run,
                row.state,
                row.created_by,
                _ts(row.created_at),
                row.command_id,
            ),
        )
    elif change.kind in {"pause", "resume"}:
        state = "paused" if change.kind == "pause" else "active"
        conn.execute("UPDATE chat_subscriptions SET state = ? WHERE name = ?", (state, change.name))
        if change.kind == "resume":
            # What appeared while it was paused is recorded, not announced (a first run
            # that posts is for a new subscription only).
            conn.execute(
                "UPDATE chat_subscriptions SET first_run = 'baseline' WHERE name = ?",
                (change.name,),
            )
            conn.execute(
                "UPDATE subscriptions SET baselined_at = NULL, empty_answers = 0,"
                " empty_since = NULL WHERE name = ?",
                (change.name,),
            )
    elif change.kind == "remove":
        conn.execute("DELETE FROM chat_subscriptions WHERE name = ?", (change.name,))
        conn.execute("DELETE FROM subscriptions WHERE name = ?", (change.name,))
        conn.execute("DELETE FROM matches WHERE subscription = ?", (change.name,))
        conn.execute("DELETE FROM subscription_problems WHERE name = ?", (change.name,))
    else:
        raise ValueError(f"unknown chat change {change.kind!r}")
