"""The state file: migrations, the poll transaction, and the outbox state machine."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from listingbot.clock import FakeClock
from listingbot.errors import StoreError
from listingbot.records import Cursor, Facts, MatchState, OutgoingMessage, PageMark, ThreadRoot
from listingbot.store import MIGRATIONS, PollRecord, Store
from listingbot.store.database import PAGE_LISTINGS


def message(key: str, channel: int = 702, listing_id: str = "li_1") -> OutgoingMessage:
    return OutgoingMessage(
        key=key,
        channel_id=channel,
        source="kotohomes",
        listing_id=listing_id,
        event="new",
        subscriptions=("sub-a",),
        body="hello",
        properties={"listingbot": {"key": key}},
    )


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "state.sqlite3", clock.now)
    yield s
    await s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_new_file_is_migrated_to_the_latest_schema(tmp_path: Path, clock: FakeClock) -> None:
    """Opening a fresh file applies every migration and records the version."""
    s = await Store.open(tmp_path / "s.sqlite3", clock.now)
    assert s.schema_version == len(MIGRATIONS)
    await s.close()


async def test_newer_schema_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    """A state file from a newer listingbot is not touched."""
    path = tmp_path / "s.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        await Store.open(path, clock.now)


async def test_record_poll_writes_everything_and_ignores_duplicate_keys(store: Store) -> None:
    """One poll commits listings, cursors and outbox rows; a repeated key is not queued twice."""
    rec = PollRecord(
        "kotohomes",
        seen={"q1": [Facts("li_1", "kotohomes", "fp", 1.0, "active", None, None)]},
        cursors=[Cursor("q1", "kotohomes", "2026-01-01T00:00:00+00:00", None)],
        messages=[message("k1")],
    )
    assert await store.record_poll(rec) == 1
    assert await store.record_poll(rec) == 0
    assert store.counts_sync()["outbox"] == 1
    assert (await store.load_cursors(["q1"]))["q1"].created_hw == "2026-01-01T00:00:00+00:00"
    known, _ = await store.load_known("q1", ["li_1", "li_2"])
    assert {lid: f.fingerprint for lid, f in known.items()} == {"li_1": "fp"}


async def test_due_messages_keep_channel_order_behind_a_waiting_row(
    store: Store, clock: FakeClock
) -> None:
    """A row backing off holds back the rows after it in its channel, not other channels."""
    await store.record_poll(
        PollRecord("kotohomes", messages=[message("a1"), message("a2"), message("b1", 703)])
    )
    due = await store.due_messages()
    first = due[702][0]
    await store.mark_sending(first.seq)
    await store.mark_retry(first.seq, 60, "boom")
    due = await store.due_messages()
    assert 702 not in due
    assert [r.message.key for r in due[703]] == ["b1"]
    clock.advance(61)
    assert [r.message.key for r in (await store.due_messages())[702]] == ["a1", "a2"]


async def test_due_messages_answer_as_a_walk_over_every_open_row(
    store: Store, clock: FakeClock
) -> None:
    """A round reads only each channel's first rows, and answers what a walk over every
    open row would: the rows before the first that waits, at most ``limit`` per channel,
    follow-ups right after the row they follow, failed rows holding nothing up."""
    msgs = [message(f"a{i}") for i in range(6)]  # more than a batch
    msgs += [message(f"b{i}", 703) for i in range(4)]  # b1 of unknown outcome
    msgs += [message(f"c{i}", 704) for i in range(3)]  # c0 backing off
    msgs += [message(f"d{i}", 705) for i in range(5)]  # d0 sent, its follow-up queued
    await store.record_poll(PollRecord("kotohomes", messages=msgs))
    seqs = {r.message.key: r.seq for r in store.all_rows_sync()}
    await store.mark_failed(seqs["a1"], "refused")
    await store.mark_sending(seqs["b1"])
    await store.mark_sending(seqs["c0"])
    await store.mark_retry(seqs["c0"], 60, "busy")
    await store.mark_sending(seqs["d0"])
    await store.mark_sent(seqs["d0"], 1, followups=[message("d0-photo", 705)])
    everything = await store.due_messages(1_000)
    walk = {channel: rows[:3] for channel, rows in everything.items()}
    due = await store.due_messages(3)
    assert {c: [r.message.key for r in rows] for c, rows in due.items()} == {
        702: ["a0", "a2", "a3"],
        703: ["b0"],
        705: ["d0-photo", "d1", "d2"],
    }
    assert due == walk
    clock.advance(61)
    assert [r.message.key for r in (await store.due_messages(2))[704]] == ["c0", "c1"]


async def test_sending_rows_block_their_channel_until_reconciled(store: Store) -> None:
    """A row of unknown outcome is not sent again, nor are rows behind it."""
    await store.record_poll(PollRecord("kotohomes", messages=[message("a1"), message("a2")]))
    row = (await store.due_messages())[702][0]
    await store.mark_sending(row.seq)
    assert await store.due_messages() == {}
    assert [r.message.key for r in await store.sending_rows()] == ["a1"]


async def test_failed_rows_do_not_block_and_can_be_retried(store: Store) -> None:
    """A permanently failed row lets its channel go on; retry-failed puts it back."""
    await store.record_poll(PollRecord("kotohomes", messages=[message("a1"), message("a2")]))
    row = (await store.due_messages())[702][0]
    await store.mark_sending(row.seq)
    await store.mark_failed(row.seq, "channel gone")
    assert [r.message.key for r in (await store.due_messages())[702]] == ["a2"]
    assert store.retry_failed_sync() == 1
    assert [r.message.key for r in (await store.due_messages())[702]] == ["a1", "a2"]


async def test_subscription_with_changed_filters_baselines_again(store: Store) -> None:
    """New subscriptions and ones whose filters changed need a first run; others do not."""
    assert await store.sync_subscriptions([("a", "kato", "h1")]) == {"a"}
    await store.record_poll(PollRecord("kato", baselined=["a"]))
    assert await store.sync_subscriptions([("a", "kato", "h1")]) == set()
    assert await store.sync_subscriptions([("a", "kato", "h2")]) == {"a"}


async def test_prune_keeps_listings_however_long_unseen(store: Store, clock: FakeClock) -> None:
    """Not seen is not gone: housekeeping never forgets a listing its query still polls,
    however long ago the listing was seen; only evidence forgets it."""
    await store.record_poll(
        PollRecord(
            "kato",
            seen={"q": [Facts("old", "kato", "f", None, None, None, None)]},
            cursors=[Cursor("q", "kato")],
        )
    )
    clock.advance(86400 * 10)
    await store.record_poll(PollRecord("kato", cursors=[Cursor("q", "kato")]))
    await store.prune(clock.now() - timedelta(days=5))
    assert list((await store.load_known("q", ["old"]))[0]) == ["old"]
    assert await store.forget_listings("kato", ["old"]) == 1
    assert (await store.load_known("q", ["old"]))[0] == {}


async def test_prune_compacts_old_sent_new_rows_and_deletes_old_sent_changes(
    store: Store, clock: FakeClock
) -> None:
    """A sent `new` row of a known listing keeps its key (it deduplicates `new`) but loses
    its body; a sent change row (its sequence key never recurs) goes."""
    change = OutgoingMessage("c1", 702, "kotohomes", "li_1", "price_drop", ("a",), "drop", {"k": 1})
    await store.record_poll(
        PollRecord(
            "kotohomes",
            matches=[MatchState("a", "kotohomes", "li_1", 1.0, None)],
            messages=[message("n1"), change],
        )
    )
    for row in store.all_rows_sync():
        await store.mark_sent(row.seq, 1)
    clock.advance(86400 * 10)
    pruned = await store.prune(clock.now() - timedelta(days=5))
    assert (pruned.compacted, pruned.sent_deleted) == (1, 1)
    (row,) = store.all_rows_sync()
    assert (row.message.key, row.message.body, row.message.properties) == ("n1", "", {})


def state_file_at(path: Path, step: int, *rows: str) -> Path:
    """A state file migrated to ``step`` by an earlier listingbot, holding ``rows``."""
    conn = sqlite3.connect(path)
    for migration in MIGRATIONS[:step]:
        conn.executescript(migration)
    for row in rows:
        conn.execute(row)
    conn.execute(f"PRAGMA user_version = {step}")
    conn.commit()
    conn.close()
    return path


async def test_migration_keeps_the_keys_of_existing_rows(tmp_path: Path, clock: FakeClock) -> None:
    """A state file from schema 1 keeps its outbox rows and their keys, and a `new` queued
    before the upgrade still deduplicates the same `new` after it."""
    path = state_file_at(
        tmp_path / "v1.sqlite3",
        1,
        "INSERT INTO outbox (key, channel_id, source, listing_id, event, subscriptions, body,"
        " properties, created_at, next_attempt_at) VALUES ('lb1-old', 702, 'kotohomes', 'li_1',"
        " 'new', '[\"a\"]', 'hello', '{}', '2026-01-01T00:00:00.000000Z',"
        " '2026-01-01T00:00:00.000000Z')",
    )
    s = await Store.open(path, clock.now)
    try:
        assert s.schema_version == len(MIGRATIONS)
        assert [(r.message.key, r.state) for r in s.all_rows_sync()] == [("lb1-old", "pending")]
        rec = PollRecord("kotohomes", messages=[message("lb1-old")])
        assert await s.record_poll(rec) == 0
        assert rec.duplicates == ["lb1-old"]
    finally:
        await s.close()


async def test_step_12_drops_the_last_seen_index_and_keeps_the_listings(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A state file at step 11 opens at the current step: its listings are still known
    (facts and digest), and the index on last_seen, which every sweep had to move for
    every listing and no query read, is gone."""
    path = state_file_at(
        tmp_path / "v11.sqlite3",
        11,
        "INSERT INTO listings (query_key, listing_id, source, fingerprint, price, status,"
        " first_seen, last_seen, digest) VALUES ('q', '7', 'kato', 'fp', 5.0, 'available',"
        " '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', x'00ff')",
    )
    s = await Store.open(path, clock.now)
    try:
        assert s.schema_version == len(MIGRATIONS)
        known, _ = await s.load_known("q", ["7"], None)
        assert (known["7"].fingerprint, known["7"].digest) == ("fp", b"\x00\xff")
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    try:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        conn.close()
    assert "listings_listing" in indexes
    assert "listings_last_seen" not in indexes


async def test_poll_failure_is_recorded_per_source(store: Store) -> None:
    """Failures count up per source and a success resets them."""
    await store.record_poll_failure("kato", "503 three times")
    await store.record_poll_failure("kato", "503 again")
    (st,) = store.source_statuses_sync()
    assert st.consecutive_failures == 2
    assert st.last_error == "503 again"
    await store.record_poll(PollRecord("kato"))
    (st,) = store.source_statuses_sync()
    assert st.consecutive_failures == 0


async def test_sqlite_errors_leave_the_store_only_as_store_errors(
    store: Store, clock: FakeClock
) -> None:
    """A state file damaged under the service (here: pages overwritten by another program)
    makes reads and writes fail with StoreError, never a raw sqlite3 error."""
    await store.record_poll(PollRecord("kotohomes", messages=[message(f"k{i}") for i in range(50)]))
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.execute("CREATE TABLE scribble (x)")  # the service's page cache is now stale
    other.close()
    size = store.path.stat().st_size
    with store.path.open("r+b") as damaged:
        damaged.seek(4096)
        damaged.write(b"\xff" * (size - 4096))
    with pytest.raises(StoreError, match="malformed"):
        await store.due_messages()
    with pytest.raises(StoreError, match="malformed"):
        await store.record_poll(PollRecord("kotohomes", messages=[message("late")]))
    with pytest.raises(StoreError, match="malformed"):
        store.retry_failed_sync()


async def test_a_claim_is_compare_and_set(store: Store) -> None:
    """Claiming a pending row succeeds once; a second claim of it loses (returns False)."""
    await store.record_poll(PollRecord("kotohomes", messages=[message("a1")]))
    (row,) = (await store.due_messages())[702]
    assert await store.claim(row.seq)
    assert not await store.claim(row.seq)
    (after,) = store.all_rows_sync()
    assert (after.state, after.attempts) == ("sending", 1)


async def test_a_due_time_beyond_the_longest_wait_counts_as_due_now(
    store: Store, clock: FakeClock
) -> None:
    """A row scheduled further ahead than max_wait_s (the clock stepped back) is due now;
    one within it still waits."""
    await store.record_poll(PollRecord("kotohomes", messages=[message("a1")]))
    (row,) = (await store.due_messages())[702]
    await store.claim(row.seq)
    await store.mark_retry(row.seq, 30.0, "429")
    assert await store.due_messages(max_wait_s=60) == {}
    clock.advance(-7200)
    assert [r.message.key for r in (await store.due_messages(max_wait_s=60))[702]] == ["a1"]
    assert await store.due_messages() == {}  # without a bound: still waiting


async def test_a_claim_for_a_thread_takes_the_listings_root_and_loses_like_any_claim(
    store: Store,
) -> None:
    """claim_in_thread claims a text with its listing's thread root (none: the channel),
    and a row already claimed is not claimed again, whatever its root."""
    msgs = [message("a1"), message("a2"), message("b1", listing_id="li_2")]
    await store.record_poll(PollRecord("kotohomes", messages=msgs))
    first, second, other = (await store.due_messages())[702]
    assert await store.claim_in_thread(first.seq, 702, "kotohomes", "li_1") == (True, None)
    assert await store.claim_in_thread(first.seq, 702, "kotohomes", "li_1") == (False, None)
    root = ThreadRoot(702, "kotohomes", "li_1", "a1", 4242)
    assert await store.mark_sent(first.seq, 4242, roots=[root])
    assert await store.claim_in_thread(second.seq, 702, "kotohomes", "li_1") == (True, root)
    assert await store.claim_in_thread(other.seq, 702, "kotohomes", "li_2") == (True, None)
    claimed = {r.message.key: r.message.thread_id for r in await store.sending_rows()}
    assert claimed == {"a2": 4242, "b1": None}


async def test_operator_retry_and_drop_act_on_one_row_by_key(store: Store) -> None:
    """retry KEY puts a failed row back; drop KEY closes it for good; neither touches a row
    in flight or one already sent."""
    await store.record_poll(PollRecord("kotohomes", messages=[message("a1"), message("a2")]))
    first, second = (await store.due_messages())[702]
    await store.claim(first.seq)
    await store.mark_failed(first.seq, "HTTP 400")
    assert store.retry_sync("a1")
    retried = store.row_sync("a1")
    assert retried is not None
    assert retried.state == "pending"
    await store.claim(second.seq)
    assert not store.retry_sync("a2")
    assert not store.drop_sync("a2")
    assert store.drop_sync("a1")
    dropped = store.row_sync("a1")
    assert dropped is not None
    assert dropped.state == "dropped"
    assert (dropped.last_error or "").startswith("dropped by an operator")
    assert not store.retry_sync("nope")
    assert [r.message.key for r in store.list_rows_sync("dropped")] == ["a1"]


async def test_the_subscriptions_with_detection_state_are_those_with_matches_or_removals(
    tmp_path: Path, store: Store
) -> None:
    """A poll asks for detection state only for subscriptions that have any: match rows
    or removals of the poll's source. A subscription with neither (new, or state of
    another source only) is not one of them."""
    await store.record_poll(
        PollRecord(
            "kato",
            matches=[
                MatchState("has-match", "kato", "k1", 100.0, "available", None),
                MatchState("other-source", "kotohomes", "h1", 100.0, "active", None),
            ],
        )
    )
    conn = sqlite3.connect(tmp_path / "state.sqlite3")
    with conn:
        conn.execute(
            "INSERT INTO removals (subscription, source, listing_id, removed_at, told)"
            " VALUES ('has-removal', 'kato', 'k2', '2026-01-01T00:00:00+00:00', 1)"
        )
    conn.close()
    names = ["has-match", "has-removal", "new", "other-source"]
    assert await store.with_detection_state("kato", names) == {"has-match", "has-removal"}
    assert await store.with_detection_state("kato", []) == set()


def _facts(lid: str, digest: bytes) -> Facts:
    return Facts(lid, "kato", f"fp-{lid}", None, "available", None, None, digest)


async def _sweep(store: Store, page: PageMark | None, *facts: Facts) -> None:
    """One committed poll whose one page of query "q" held ``facts``."""
    staging = store.open_staging()
    await store.stage_soon(staging, "q", facts, [], page=page)
    await store.record_poll(PollRecord("kato", staging=staging, staged=len(facts)))
    await store.discard_staged(staging)


async def test_a_page_is_known_whole_only_while_its_listings_are_recorded_as_it_held_them(
    store: Store,
) -> None:
    """A committed page is known by its key and body digest, its listings staged as kept;
    another body, a listing recorded since with another record's digest, or a listing
    forgotten makes it unknown (the read stage then gets ``load_known``'s answer)."""
    page = PageMark(":1", b"body-1")
    await _sweep(store, page, _facts("a", b"A1"), _facts("b", b"B1"))
    staging = store.open_staging()
    kept, known, again = await store.load_page("q", ["a", "b"], staging, page)
    assert (kept, known, again) == (2, {}, set())
    assert await store.staged_count(staging) == 2
    await store.discard_staged(staging)
    other = await store.load_page("q", ["a", "b"], store.open_staging(), PageMark(":1", b"x"))
    assert other[0] is None
    assert set(other[1]) == {"a", "b"}
    # "b" recorded since from another page of a sweep with another record: the page's
    # "b" is not the one the state file holds.
    await _sweep(store, None, _facts("b", b"B2"))
    assert (await store.load_page("q", ["a", "b"], store.open_staging(), page))[0] is None
    await _sweep(store, page, _facts("a", b"A1"), _facts("b", b"B2"))
    assert (await store.load_page("q", ["a", "b"], store.open_staging(), page))[0] == 2
    assert await store.forget_listings("kato", ["a"]) == 1
    assert (await store.load_page("q", ["a", "b"], store.open_staging(), page))[0] is None


async def test_a_known_page_stages_no_listing_an_earlier_page_of_the_sweep_staged(
    store: Store,
) -> None:
    """A listing an earlier page of the same sweep served counts there (the first counts):
    a known page stages only its other listings, and says how many."""
    page = PageMark(":2", b"body-2")
    await _sweep(store, page, _facts("a", b"A1"), _facts("b", b"B1"))
    staging = store.open_staging()
    await store.stage_soon(staging, "q", [_facts("a", b"A9")], [])
    kept, _known, _again = await store.load_page("q", ["a", "b"], staging, page)
    assert kept == 1
    assert await store.staged_count(staging) == 2
    await store.discard_staged(staging)


async def test_a_discarded_sweep_records_no_page(store: Store) -> None:
    """A page staged by a sweep that failed (discarded) is not known to the next one."""
    page = PageMark(":1", b"body-1")
    await _sweep(store, page, _facts("a", b"A1"))
    staging = store.open_staging()
    other = PageMark(":1", b"body-other")
    await store.stage_soon(staging, "q", [_facts("a", b"A2")], [], page=other)
    await store.discard_staged(staging)
    assert (await store.load_page("q", ["a"], store.open_staging(), other))[0] is None
    assert (await store.load_page("q", ["a"], store.open_staging(), page))[0] == 1


async def test_a_known_page_costs_one_primary_key_lookup_per_record(store: Store) -> None:
    """Checking and staging a known page look each of its listings up by primary key, never
    by scanning the query's listings (which made a steady sweep of 10,000 records take
    80 s instead of 0.3 s)."""
    conn = sqlite3.connect(store.path)
    try:
        plan = [
            str(row[-1])
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT l.listing_id {PAGE_LISTINGS}", ('[["a", "A"]]', "q")
            )
        ]
    finally:
        conn.close()
    # The page's records outside, each listing found by its whole key inside (the other
    # order reads as "SEARCH l USING PRIMARY KEY (query_key=?)", then "SCAN j").
    assert plan[0].startswith("SCAN j"), plan
    assert plan[1:] == ["SEARCH l USING PRIMARY KEY (query_key=? AND listing_id=?)"], plan
