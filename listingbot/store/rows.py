"""The store's own states and result types: what its units of work take and give back.

The types other stages share (match and channel state, cursors, outgoing messages,
outbox rows) live in :mod:`listingbot.records`; these are the store's vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from listingbot.records import (
    ChannelState,
    Cursor,
    Facts,
    MatchState,
    OutgoingMessage,
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
    # A long answer's rows, staged page by page as the poll read it (``Store.stage_soon``)
    # instead of held in ``seen`` / ``matches``: ``record_poll`` merges them first, in its
    # one transaction. None: nothing staged.
    staging: int | None = None
    staged: int = 0  # listings staged


@dataclass(frozen=True)
class ServedBefore:
    """What the staging of a page left out (``Store.stage_soon(first_counts=True)``): the
    listings an earlier page of the same sweep staged, and the subscription of each match
    row of theirs (one entry per row)."""

    listings: frozenset[str] = frozenset()
    subscriptions: tuple[str, ...] = ()


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
