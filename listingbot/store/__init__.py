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

The package: ``schema.py`` (the migrations), ``rows.py`` (the store's states and result
types), ``lock.py`` (:class:`StateLock`), ``_sql.py`` (helpers and statements shared by
units of work) and ``database.py`` (:class:`Store`). The Store stays one class: it is one
connection on one thread, and its units of work cross the table groups (``record_poll``
writes the staged pages, listings, matches, cursors, channel state and the outbox in one
transaction). Split further, it would be mixins over that one connection calling into
each other, which hides the transaction boundaries this design depends on.
"""

from __future__ import annotations

from listingbot.store.database import Store
from listingbot.store.lock import StateLock
from listingbot.store.rows import (
    CHAT_STATES,
    COMMAND_DONE,
    COMMAND_REFUSED,
    COMMAND_SKIPPED,
    OPEN_STATES,
    OUTBOX_STATES,
    PROBLEM_CHANNEL,
    PROBLEM_QUERY,
    QUIET_STATES,
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
    Release,
    ServedBefore,
    SourceStatus,
    SubscriptionProblem,
    SubscriptionStatus,
    Sweep,
)
from listingbot.store.schema import MIGRATIONS

__all__ = [
    "CHAT_STATES",
    "COMMAND_DONE",
    "COMMAND_REFUSED",
    "COMMAND_SKIPPED",
    "MIGRATIONS",
    "OPEN_STATES",
    "OUTBOX_STATES",
    "PROBLEM_CHANNEL",
    "PROBLEM_QUERY",
    "QUIET_STATES",
    "ChatChange",
    "ChatSubscriptionRow",
    "CommandChannel",
    "HandledCommand",
    "HeldMessage",
    "OutboxHealth",
    "OutboxSummary",
    "PendingAnswer",
    "PollRecord",
    "Pruned",
    "Release",
    "ServedBefore",
    "SourceStatus",
    "StateLock",
    "Store",
    "SubscriptionProblem",
    "SubscriptionStatus",
    "Sweep",
]
