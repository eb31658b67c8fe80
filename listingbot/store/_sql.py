"""SQL helpers the units of work share: timestamps as stored, chunked ``IN`` lists, row
decoding, and the statements more than one unit of work runs inside its transaction."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from listingbot.records import (
    OutboxRow,
    OutgoingMessage,
)
from listingbot.store.rows import (
    ChatChange,
    Sweep,
)

T = TypeVar("T")


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


# Parameters in one statement at most: under SQLite's oldest default limit (999).
MAX_PARAMS = 900


@functools.lru_cache(maxsize=64)
def _rows_sql(head: str, width: int, count: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * count)}"


def _insert_rows(conn: sqlite3.Connection, head: str, width: int, values: Sequence[Any]) -> None:
    """``head`` (``INSERT ... INTO t (columns)``) with ``values`` (rows of ``width``
    values, flattened), as a few statements of many rows: ``executemany`` steps its
    statement once a row (resetting it, binding, and releasing and taking back the GIL
    each time), where a page of a first sweep is now one statement."""
    per = max(1, MAX_PARAMS // width) * width
    for start in range(0, len(values), per):
        chunk = values[start : start + per]
        conn.execute(_rows_sql(head, width, len(chunk) // width), chunk)


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
            for m in map(OutgoingMessage.written, messages)
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
