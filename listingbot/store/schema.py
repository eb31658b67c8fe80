"""The state file's schema: one migration per step, applied in order on open.

``PRAGMA user_version`` is the number of steps a file has had. Each entry migrates from
``user_version == index`` to ``index + 1`` and runs in one transaction with the version
bump, so a file is always at exactly one step.
"""

from __future__ import annotations

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
    # 11: what each page of a sweep held the last time it was read (issue 15), so that a
    # page served again byte for byte is known whole without reading its records: the
    # digest of the answer's body and, per record, its listing id and the hex digest of
    # its raw record (``listings.digest``). A page is known only while every one of those
    # listings is still recorded with that digest; otherwise it is read record by record.
    """
    CREATE TABLE sweep_pages (
        query_key TEXT NOT NULL,
        page      TEXT NOT NULL,  -- "<status asked for>:<page number>"
        digest    BLOB NOT NULL,
        records   TEXT NOT NULL,  -- JSON [[listing id, hex digest of its raw record], ...]
        PRIMARY KEY (query_key, page)
    ) WITHOUT ROWID
    """,
    # 12: every sweep moves last_seen of every listing it saw, and this index moved with
    # it (a third of the cost of that update) while no query read it: absences are
    # counted per query through the primary key, long-unseen listings are grouped through
    # listings_listing (issue 15).
    """
    DROP INDEX IF EXISTS listings_last_seen
    """,
)
