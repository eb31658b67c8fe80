"""The :class:`Store`: one connection on one dedicated thread, one method per unit of work.

See the package docstring for the design; the schema is in :mod:`.schema`, the result
types in :mod:`.rows`, the lock in :mod:`.lock`, shared SQL in :mod:`._sql`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from listingbot.errors import StoreError
from listingbot.records import (
    ChannelState,
    Cursor,
    Facts,
    MatchState,
    OutboxRow,
    OutgoingMessage,
    PageMark,
    Removal,
    ThreadRoot,
)
from listingbot.store._sql import (
    _ROW_COLS,
    _apply_chat_change,
    _chunks,
    _count_absences,
    _dump_marks,
    _forget_orphans,
    _from_iso,
    _insert_messages,
    _insert_rows,
    _iso,
    _load_marks,
    _parse_ts,
    _row,
    _ts,
)
from listingbot.store.lock import StateLock
from listingbot.store.rows import (
    COMMAND_SKIPPED,
    ChatChange,
    ChatSubscriptionRow,
    CommandChannel,
    HandledCommand,
    HeldMessage,
    OutboxHealth,
    OutboxSummary,
    PendingAnswer,
    PollRecord,
    Pruned,
    ServedBefore,
    SourceStatus,
    SubscriptionProblem,
    SubscriptionStatus,
)
from listingbot.store.schema import MIGRATIONS

T = TypeVar("T")


# The listings a recorded page held (?1: its ``records``, ?2: the query key). CROSS JOIN
# keeps the page's records the outer loop, each one primary-key lookup; SQLite's own
# choice was the other order, scanning the query's listings once per record (80 s for a
# steady sweep of 10,000 records instead of 0.3 s).
PAGE_LISTINGS = (
    "FROM json_each(?1) AS j CROSS JOIN listings AS l"
    " ON l.query_key = ?2 AND l.listing_id = json_extract(j.value, '$[0]')"
)


# A page's staged rows (``Store._stage``, ``_insert_rows``): a kept listing's (no
# fingerprint: the state file holds its facts), a seen one's, and its subscriptions'
# match state.
STAGE_KEPT = (
    "INSERT OR REPLACE INTO temp.staged_listings (staging, query_key, listing_id, source, digest)"
)
STAGE_SEEN = (
    "INSERT OR REPLACE INTO temp.staged_listings (staging, query_key, listing_id, source,"
    " fingerprint, price, status, digest, created_at, updated_at)"
)
STAGE_MATCHES = (
    "INSERT OR REPLACE INTO temp.staged_matches (staging, query_key, subscription, source,"
    " listing_id, last_price, last_status, figures)"
)


def _facts_row(f: Facts) -> tuple[Any, ...]:
    """A listing's facts as its row holds them, from ``listing_id`` to ``updated_at``."""
    return (
        f.id,
        f.source,
        f.fingerprint,
        f.asking_amount,
        f.status,
        f.digest,
        _iso(f.created_at),
        _iso(f.updated_at),
    )


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
            # The staging tables (temp, on a file of their own: memory holds a page, not
            # the sweep) are written in one transaction per page: their rollback journal
            # in memory holds one page's changes, and a crash loses them either way. On
            # a file, it was a third of staging a page.
            conn.execute("PRAGMA temp.journal_mode=MEMORY")
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

    async def load_known(
        self, query_key: str, ids: Sequence[str], staging: int | None = None
    ) -> tuple[dict[str, Facts], set[str]]:
        """What this query recorded of these listings the last time it saw them (their
        fingerprints, and the digest of the raw record they came from, ``Facts.digest``,
        where it kept one), and which of them the poll ``staging`` staged already for
        this query (an earlier page of the same sweep served them): what the read stage
        needs of a page, in one store call."""
        return await self._run(self._load_known, query_key, list(ids), staging)

    def _load_known(
        self, query_key: str, ids: list[str], staging: int | None
    ) -> tuple[dict[str, Facts], set[str]]:
        out: dict[str, Facts] = {}
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT listing_id, source, fingerprint, price, status, created_at,"
                " updated_at, digest FROM listings"
                f" WHERE query_key = ? AND listing_id IN ({marks})"
            )
            for lid, source, fp, price, status, created, updated, digest in self._c.execute(
                sql, [query_key, *chunk]
            ):
                out[lid] = Facts(
                    lid, source, fp, price, status, _from_iso(created), _from_iso(updated), digest
                )
        staged = self._staged_ids(staging, query_key, ids) if staging is not None else set()
        return out, staged

    async def has_listings(self, query_key: str) -> bool:
        """Whether this query has recorded any listing (its sweeps have known facts)."""
        return await self._run(self._has_listings, query_key)

    def _has_listings(self, query_key: str) -> bool:
        row = self._c.execute(
            "SELECT 1 FROM listings WHERE query_key = ? LIMIT 1", (query_key,)
        ).fetchone()
        return row is not None

    async def load_page(
        self, query_key: str, ids: Sequence[str], staging: int, page: PageMark
    ) -> tuple[int | None, dict[str, Facts], set[str]]:
        """``load_known`` for a page of a sweep, unless the page is known whole.

        A page is known whole when its body is byte for byte the one this query recorded
        for that page (``stage_soon(page=...)``) and each listing it held is still
        recorded with the digest of the record it held. Then its listings are staged as
        kept (as the read stage would have staged them, record by record; one an earlier
        page of the sweep staged counts there) and the first value is how many were
        staged, with nothing else loaded. Otherwise it is None, and the rest is what
        ``load_known`` answers."""
        return await self._run(self._load_page, query_key, list(ids), staging, page)

    async def keep_page(self, query_key: str, staging: int, page: PageMark) -> int | None:
        """``load_page``'s first half, for a page whose records are not decoded yet: how
        many listings were staged as kept when the page is known whole, else None (and
        nothing staged). The listings are the ones the page held when it was recorded."""
        return await self._run(self._keep_page, query_key, staging, page)

    def _load_page(
        self, query_key: str, ids: list[str], staging: int, page: PageMark
    ) -> tuple[int | None, dict[str, Facts], set[str]]:
        kept = self._keep_page(query_key, staging, page)
        if kept is not None:
            return kept, {}, set()
        known, again = self._load_known(query_key, ids, staging)
        return None, known, again

    def _keep_page(self, query_key: str, staging: int, page: PageMark) -> int | None:
        row = self._c.execute(
            "SELECT records FROM sweep_pages WHERE query_key = ? AND page = ? AND digest = ?",
            (query_key, page.key, page.digest),
        ).fetchone()
        if row is None:
            return None
        records = str(row[0])
        # Each listing the page held, still recorded with the digest it had on the page.
        held, still = self._c.execute(
            "SELECT json_array_length(?1), (SELECT COUNT(*)"
            f" {PAGE_LISTINGS} AND hex(l.digest) = json_extract(j.value, '$[1]'))",
            (records, query_key),
        ).fetchone()
        if not held or held != still:
            return None
        conn = self._staging_tables()
        before = conn.total_changes
        conn.execute(
            "INSERT OR IGNORE INTO temp.staged_listings (staging, query_key, listing_id,"
            f" source, digest) SELECT ?3, ?2, l.listing_id, '', l.digest {PAGE_LISTINGS}",
            (records, query_key, staging),
        )
        return conn.total_changes - before

    def _load_matches(
        self, source: str, subs: list[str], ids: list[str]
    ) -> dict[tuple[str, str], MatchState]:
        """Match state for every (subscription, listing) pair among these, keyed that way."""
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

    async def load_detection_state(
        self, source: str, subscriptions: Sequence[str], pairs: Sequence[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], MatchState], dict[tuple[str, str], Removal]]:
        """What change detection needs of these (subscription, listing id) pairs, in one
        store call: the match state of every pair among the listings (``_load_matches``),
        and the removals of the listings a pair has no match state for (a listing no
        subscription knows may be one the source confirmed gone; ``load_removals``)."""
        return await self._run(self._load_detection_state, source, list(subscriptions), list(pairs))

    async def with_detection_state(self, source: str, names: Sequence[str]) -> set[str]:
        """Which of these subscriptions have any detection state (match rows, removals)."""
        return await self._run(self._with_detection_state, source, list(names))

    def _with_detection_state(self, source: str, names: list[str]) -> set[str]:
        if not names:
            return set()
        sql = (
            "SELECT value FROM json_each(?) AS n WHERE"
            " EXISTS (SELECT 1 FROM matches WHERE subscription = n.value AND source = ?)"
            " OR EXISTS (SELECT 1 FROM removals WHERE subscription = n.value AND source = ?)"
        )
        rows = self._c.execute(sql, (json.dumps(names), source, source))
        return {name for (name,) in rows}

    def _load_detection_state(
        self, source: str, subs: list[str], pairs: list[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], MatchState], dict[tuple[str, str], Removal]]:
        ids = list(dict.fromkeys(lid for _, lid in pairs))
        previous = self._load_matches(source, subs, ids)
        unknown = sorted({lid for name, lid in pairs if (name, lid) not in previous})
        removed = self._load_removals(source, subs, unknown) if unknown else {}
        return previous, removed

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

    def stage_soon(
        self,
        staging: int,
        query_key: str,
        seen: Sequence[Facts],
        matches: Sequence[MatchState],
        kept: Sequence[Facts] = (),
        *,
        page: PageMark | None = None,
        first_counts: bool = False,
    ) -> asyncio.Future[ServedBefore]:
        """Hold one page's rows for the poll ``staging`` until it commits: the facts of
        each listing seen that the state file does not hold yet, ``kept`` the listings seen
        whose facts it holds already but for the raw record's digest (their fingerprint is
        the one recorded: only ``last_seen`` and the digest move), and the match state
        detection moved.

        Queued on the store's thread without waiting for it: the poll reads its next page
        meanwhile. Store calls run one at a time in the order made, so a later call (the
        next page's ``load_known``, the commit, a discard) sees it done; await the future
        for its outcome.

        ``page``: the page of a sweep these rows are, every record of it read and each
        listing in ``seen`` or ``kept`` (see ``load_page``): the commit records what it
        held, so that the next sweep knows it whole if it is served again unchanged.

        ``first_counts``: the poll did not ask which of these listings an earlier page
        of its sweep staged (``load_known``'s second half), so the staging does: such a
        listing's rows are left out (the first counts), and so is ``page`` (what it held
        is not what the sweep staged of it). The future's ``ServedBefore`` says which
        listings, and whose match rows, were left out; without ``first_counts`` it is
        empty. Asking before reading each page made the read wait for the staging of
        the page before it: an eighth of a first sweep."""
        loop = asyncio.get_running_loop()
        held: list[list[str]] | None = None
        if page is not None:
            held = [[f.id, f.digest.hex().upper()] for f in (*seen, *kept) if f.digest]
            if len(held) != len(seen) + len(kept):
                held = None  # a record without a digest cannot be known again
        return loop.run_in_executor(
            self._executor,
            self._guarded,
            functools.partial(
                self._stage,
                page=None if page is None or not held else (page, json.dumps(held)),
                first_counts=first_counts,
            ),
            staging,
            query_key,
            list(seen),
            list(matches),
            [(f.id, f.digest) for f in kept],
        )

    def _stage(
        self,
        staging: int,
        query_key: str,
        seen: list[Facts],
        matches: list[MatchState],
        kept: list[tuple[str, bytes | None]],
        *,
        page: tuple[PageMark, str] | None = None,
        first_counts: bool = False,
    ) -> ServedBefore:
        conn = self._staging_tables()
        served = ServedBefore()
        if first_counts and seen:
            again = self._staged_ids(staging, query_key, [f.id for f in seen])
            if again:
                seen = [f for f in seen if f.id not in again]
                left = [m for m in matches if m.listing_id in again]
                matches = [m for m in matches if m.listing_id not in again]
                served = ServedBefore(frozenset(again), tuple(m.subscription for m in left))
                page = None
        conn.execute("BEGIN")
        try:
            if page is not None:
                mark, held = page
                conn.execute(
                    "INSERT OR REPLACE INTO temp.staged_pages (staging, query_key, page,"
                    " digest, records) VALUES (?, ?, ?, ?, ?)",
                    (staging, query_key, mark.key, mark.digest, held),
                )
            # A kept listing's row has no fingerprint: the state file holds its facts.
            kept_values: list[Any] = []
            for lid, digest in kept:
                kept_values += (staging, query_key, lid, "", digest)
            _insert_rows(conn, STAGE_KEPT, 5, kept_values)
            seen_values: list[Any] = []
            for f in seen:
                seen_values += (staging, query_key, *_facts_row(f))
            _insert_rows(conn, STAGE_SEEN, 10, seen_values)
            match_values: list[Any] = []
            for m in matches:
                match_values += (
                    staging,
                    query_key,
                    m.subscription,
                    m.source,
                    m.listing_id,
                    m.last_price,
                    m.last_status,
                    m.figures,
                )
            _insert_rows(conn, STAGE_MATCHES, 8, match_values)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return served

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
        # A discard touches every page of a sweep's staging: its journal goes on a file
        # (in memory it would hold the whole sweep), a page's staging keeps its own in
        # memory (``_open_sync``).
        self._c.execute("PRAGMA temp.journal_mode=DELETE")
        try:
            for table in ("staged_listings", "staged_matches", "staged_pages"):
                self._c.execute(f"DELETE FROM temp.{table} WHERE {where}", args)
        finally:
            self._c.execute("PRAGMA temp.journal_mode=MEMORY")

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
                    fingerprint TEXT,  -- NULL: kept, the state file holds its facts
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
                CREATE TEMP TABLE IF NOT EXISTS staged_pages (
                    staging   INTEGER NOT NULL,
                    query_key TEXT NOT NULL,
                    page      TEXT NOT NULL,
                    digest    BLOB NOT NULL,
                    records   TEXT NOT NULL,
                    PRIMARY KEY (staging, query_key, page)
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
            " created_at, updated_at, ?, ? FROM temp.staged_listings"
            " WHERE staging = ? AND fingerprint IS NOT NULL"
            " ON CONFLICT (query_key, listing_id) DO UPDATE SET"
            " fingerprint = excluded.fingerprint, price = excluded.price,"
            " status = excluded.status, digest = excluded.digest,"
            " created_at = excluded.created_at, updated_at = excluded.updated_at,"
            " last_seen = excluded.last_seen, missed_sweeps = 0",
            (now, now, staging),
        )
        # A kept listing (staged without a fingerprint) is as the state file holds it but
        # for last_seen and the raw record's digest (bytes the listing does not read may
        # have changed).
        moved = conn.execute(
            "UPDATE listings SET last_seen = ?, missed_sweeps = 0, digest = k.digest"
            " FROM temp.staged_listings AS k WHERE k.staging = ? AND k.fingerprint IS NULL"
            " AND listings.query_key = k.query_key AND listings.listing_id = k.listing_id",
            (now, staging),
        ).rowcount
        (kept,) = conn.execute(
            "SELECT COUNT(*) FROM temp.staged_listings WHERE staging = ? AND fingerprint IS NULL",
            (staging,),
        ).fetchone()
        if moved != kept:
            # A listing the sweep found recorded was forgotten while it ran (housekeeping,
            # another process): its facts are not staged, so the sweep cannot be recorded
            # whole. The transaction rolls back; the next sweep reads it as new.
            raise StoreError(
                f"state file {self.path}: {kept - moved} listing(s) the sweep found recorded"
                " were forgotten while it ran; the sweep is not recorded"
            )
        conn.execute(
            "INSERT OR REPLACE INTO sweep_pages (query_key, page, digest, records)"
            " SELECT query_key, page, digest, records FROM temp.staged_pages WHERE staging = ?",
            (staging,),
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
                    (query_key, *_facts_row(f), now, now)
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
        # Only each channel's first ``limit`` open rows can be sent or hold the channel
        # back (the walk below stops at the first row that waits, or at a full batch), so
        # only those are read and decoded: a round costs its batches, not the backlog.
        rows = self._c.execute(
            f"SELECT {_ROW_COLS} FROM outbox WHERE seq IN ("
            " SELECT seq FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY channel_id"
            "  ORDER BY COALESCE(after_seq, seq), seq) AS place"
            "  FROM outbox WHERE state IN ('pending', 'sending'))"
            " WHERE place <= ?)"
            " ORDER BY channel_id, COALESCE(after_seq, seq), seq",
            (limit,),
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

    async def claim_in_thread(
        self, seq: int, channel_id: int, source: str, listing_id: str
    ) -> tuple[bool, ThreadRoot | None]:
        """Claim a listing's text for its thread: the thread root its listing has in the
        channel (None: none, the text goes to the channel) is looked up and the row
        claimed with it in one transaction, one trip to the store's thread.

        (False, None) when the claim lost, as :meth:`claim`: the caller must not send it.
        """
        return await self._run(self._claim_in_thread, seq, channel_id, source, listing_id)

    def _claim_in_thread(
        self, seq: int, channel_id: int, source: str, listing_id: str
    ) -> tuple[bool, ThreadRoot | None]:
        with self._tx() as conn:
            return self._claim_in(conn, _ts(self._now()), seq, (channel_id, source, listing_id))

    def _claim_in(
        self,
        conn: sqlite3.Connection,
        now: str,
        seq: int,
        thread_of: tuple[int, str, str] | None,
    ) -> tuple[bool, ThreadRoot | None]:
        """Claim ``seq`` inside the caller's transaction: as :meth:`claim` (``thread_of``
        None), or as :meth:`claim_in_thread` for that (channel, source, listing)."""
        root = None if thread_of is None else self._thread_root(*thread_of)
        won = (
            conn.execute(
                "UPDATE outbox SET state = 'sending', claimed_at = ?, next_attempt_at = ?,"
                " attempts = attempts + 1,"
                " thread_id = CASE WHEN kind = 'message' THEN ? ELSE thread_id END"
                " WHERE seq = ? AND state = 'pending'",
                (now, now, None if root is None else root.message_id, seq),
            ).rowcount
            == 1
        )
        return (True, root) if won else (False, None)

    async def unclaim(self, seq: int) -> bool:
        """A claimed row whose request never went out (the service stopped first) is
        pending again, as before its claim."""
        return await self._run(
            self._cas,
            "UPDATE outbox SET state = 'pending', attempts = MAX(0, attempts - 1)"
            " WHERE seq = ? AND state = 'sending'",
            (seq,),
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

    async def mark_sent_then_claim(
        self,
        seq: int,
        message_id: int | None,
        roots: Sequence[ThreadRoot],
        next_seq: int,
        thread_of: tuple[int, str, str] | None,
    ) -> tuple[bool, bool, ThreadRoot | None]:
        """:meth:`mark_sent` (with the roots it became, no follow-ups) and, when it
        marked the row, the claim of the channel's next row (:meth:`claim`, or
        :meth:`claim_in_thread` for ``thread_of``), in one transaction: a message costs
        one trip to the store's thread. Returns (marked, next claimed, next's root)."""
        return await self._run(
            self._mark_sent_then_claim, seq, message_id, list(roots), next_seq, thread_of
        )

    def _mark_sent_then_claim(
        self,
        seq: int,
        message_id: int | None,
        roots: list[ThreadRoot],
        next_seq: int,
        thread_of: tuple[int, str, str] | None,
    ) -> tuple[bool, bool, ThreadRoot | None]:
        now = _ts(self._now())
        with self._tx() as conn:
            if not self._sent_in(conn, now, seq, message_id, roots):
                return False, False, None
            claimed, root = self._claim_in(conn, now, next_seq, thread_of)
        return True, claimed, root

    def _mark_sent_with(
        self,
        seq: int,
        message_id: int | None,
        roots: list[ThreadRoot],
        followups: list[OutgoingMessage],
    ) -> bool:
        now = _ts(self._now())
        with self._tx() as conn:
            if not self._sent_in(conn, now, seq, message_id, roots):
                return False
            _insert_messages(conn, followups, now, after_seq=seq)
        return True

    def _sent_in(
        self,
        conn: sqlite3.Connection,
        now: str,
        seq: int,
        message_id: int | None,
        roots: list[ThreadRoot],
    ) -> bool:
        """Mark ``seq`` sent with the thread roots it became, inside the caller's
        transaction; False (nothing written) when it is no longer open."""
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
                conn.execute("DELETE FROM sweep_pages WHERE query_key = ?", (key,))
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
