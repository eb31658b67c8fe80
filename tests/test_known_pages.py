"""Specification of pages known whole (issue 15): a page of a Kato sweep served again byte
for byte, while the state file still holds each of its listings as the page held them, is
staged as seen without being read; anything else about it is read record by record, and
what a poll posts, records and forgets is the same either way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from listingbot.clock import FakeClock
from listingbot.polling import PollOutcome
from tests.harness import config_text, load, make_sims
from tests.test_polling import UK_BASELINE, poller_for, tick

# 120 records are three pages of 50 / 50 / 20.
PAGES = 3

UK_POST = UK_BASELINE.replace("first_run: baseline", "first_run: post")

SECOND = """\
- name: uk-too
  source: kato
  channel: 705
  filters: {}
  first_run: baseline
"""


def listing_rows(tmp_path: Path) -> dict[str, tuple[str, int]]:
    """Each recorded listing's (last_seen, missed_sweeps), by id."""
    conn = sqlite3.connect(tmp_path / "state.sqlite3")
    try:
        rows = conn.execute("SELECT listing_id, last_seen, missed_sweeps FROM listings")
        return {str(lid): (str(seen), int(missed)) for lid, seen, missed in rows}
    finally:
        conn.close()


def recorded_pages(tmp_path: Path) -> list[str]:
    conn = sqlite3.connect(tmp_path / "state.sqlite3")
    try:
        return [str(r[0]) for r in conn.execute("SELECT page FROM sweep_pages ORDER BY page")]
    finally:
        conn.close()


def known(outcome: PollOutcome) -> int:
    assert outcome.ok, outcome.error
    return outcome.pages_known


async def test_an_unchanged_sweep_knows_every_page_and_sees_every_listing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The first sweep reads and records its three pages; the next one, of an account
    that did not change, knows all three, counts all 120 listings and stamps every one
    seen at its own time (no absence counted)."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=120) as sims,
        poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store),
    ):
        first = await poller.poll()
        before = listing_rows(tmp_path)
        tick(sims, clock, 600)
        second = await poller.poll()
        after = listing_rows(tmp_path)
    assert (known(first), first.listings) == (0, 120)
    assert recorded_pages(tmp_path) == [":1", ":2", ":3"]
    assert (known(second), second.listings, second.events) == (PAGES, 120, 0)
    assert after.keys() == before.keys()
    assert {missed for _seen, missed in after.values()} == {0}
    assert all(after[lid][0] > before[lid][0] for lid in after)


async def test_a_change_is_read_and_posted_while_the_other_pages_are_known(
    tmp_path: Path, clock: FakeClock
) -> None:
    """One record's price drops: its page is read and the drop is queued once; the two
    pages that did not change are known."""
    async with make_sims(clock, kotohomes_count=0, kato_count=119) as sims:
        target = str(sims.market.add_kato(price=500_000)["id"])  # the last, on page 3
        async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, store):
            await poller.poll()
            tick(sims, clock, 600)
            sims.market.update_kato(target, price=400_000)
            outcome = await poller.poll()
            rows = store.all_rows_sync()
    assert (known(outcome), outcome.listings) == (PAGES - 1, 120)
    assert [(r.message.event, r.message.listing_id) for r in rows] == [("price_drop", target)]


async def test_no_page_is_known_to_a_subscription_in_its_first_run(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A subscription added beside one that has swept the account shares its query: its
    first run looks at every listing, so no page is known, and it records all 120."""
    async with make_sims(clock, kotohomes_count=0, kato_count=120) as sims:
        async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store):
            await poller.poll()
        tick(sims, clock, 600)
        both = UK_BASELINE + SECOND
        async with poller_for(sims, tmp_path, clock, both, "kato") as (poller, _store):
            joined = await poller.poll()
            tick(sims, clock, 600)
            settled = await poller.poll()
    assert known(joined) == 0
    assert joined.baseline_matches == {"uk-too": 120}
    assert known(settled) == PAGES


async def test_a_page_whose_listing_was_forgotten_is_read_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A listing the state file no longer holds (housekeeping, the source said it was
    gone) makes its page unknown although the page is unchanged: the page is read and
    the listing recorded again (its "new" message, queued before, is not queued twice:
    its delivery key exists)."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=120) as sims,
        poller_for(sims, tmp_path, clock, UK_POST, "kato") as (poller, store),
    ):
        await poller.poll()
        target = sims.market.ids("kato")[0]  # on the first page
        assert await store.forget_listings("kato", [target]) == 1
        tick(sims, clock, 600)
        outcome = await poller.poll()
        rows = [r for r in store.all_rows_sync() if r.message.listing_id == target]
    assert (known(outcome), outcome.listings) == (PAGES - 1, 120)
    assert target in listing_rows(tmp_path)
    assert [r.message.event for r in rows] == ["new"]


async def test_a_listing_gone_from_the_account_is_forgotten_with_pages_known(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The last record leaves the account: every page changes (each carries the server's
    count) and is read once, then all are known again; after three complete sweeps without
    it the listing is forgotten while the others stay."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=120) as sims,
        poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store),
    ):
        await poller.poll()
        gone = sims.market.ids("kato")[-1]
        sims.market.remove("kato", gone)
        outcomes = []
        for _ in range(3):
            tick(sims, clock, 600)
            outcomes.append(await poller.poll())
    assert [known(o) for o in outcomes] == [0, PAGES, PAGES]
    rows = listing_rows(tmp_path)
    assert gone not in rows
    assert len(rows) == 119


async def test_a_failed_sweep_records_no_page(tmp_path: Path, clock: FakeClock) -> None:
    """Page 3 fails (500, after the client's retries): no page of that sweep is recorded,
    so the next sweep reads every page (and records them)."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=120) as sims,
        poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store),
    ):
        sims.kato.fail_from_page = 3
        failed = await poller.poll()
        assert not failed.ok
        assert recorded_pages(tmp_path) == []
        sims.kato.fail_from_page = None
        again = await poller.poll()
    assert (known(again), again.listings) == (0, 120)
    assert recorded_pages(tmp_path) == [":1", ":2", ":3"]


async def test_a_page_with_a_skipped_record_is_read_every_time(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Records skipped as malformed (a stable share, the same ones every poll) keep their
    pages from being recorded: those pages are read in every sweep, so the skips are
    counted every time, while the other pages are known."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=300) as sims,
        poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store),
    ):
        sims.faults.enabled_for = {"kato"}
        sims.faults.set(rate_malformed=0.05)
        first = await poller.poll()
        tick(sims, clock, 600)
        second = await poller.poll()
    recorded = recorded_pages(tmp_path)
    assert first.skipped > 0
    assert (second.skipped, second.listings) == (first.skipped, first.listings)
    assert 0 < len(recorded) < 6
    assert known(second) == len(recorded)


async def test_pages_are_known_after_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    """What a sweep recorded of its pages lives in the state file: a new process (a new
    poller and store on the same file) knows every unchanged page on its first sweep."""
    async with make_sims(clock, kotohomes_count=0, kato_count=120) as sims:
        async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store):
            await poller.poll()
        tick(sims, clock, 600)
        async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store):
            restarted = await poller.poll()
    assert (known(restarted), restarted.listings, restarted.events) == (PAGES, 120, 0)


async def test_a_changed_page_a_failed_sweep_read_is_read_when_served_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A price drops on page 1 and the next sweep fails at page 3, recording nothing. The
    sweep after it is served the page that failed sweep read, byte for byte: the state
    file does not know it, so it is read, and the drop is queued once, while pages 2 and
    3 (unchanged since the sweep that was recorded) are known."""
    async with make_sims(clock, kotohomes_count=0, kato_count=120) as sims:
        page_one = sims.market.kato_records()[:50]
        priced = next(r for r in page_one if (r.get("price") or {}).get("value"))
        target = str(priced["id"])
        async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, store):
            await poller.poll()
            tick(sims, clock, 600)
            sims.market.update_kato(target, price=priced["price"]["value"] / 2)
            sims.kato.fail_from_page = 3
            failed = await poller.poll()
            assert not failed.ok
            sims.kato.fail_from_page = None
            tick(sims, clock, 600)
            outcome = await poller.poll()
            rows = store.all_rows_sync()
    assert (known(outcome), outcome.listings) == (PAGES - 1, 120)
    assert [(r.message.event, r.message.listing_id) for r in rows] == [("price_drop", target)]


async def test_a_subscription_joining_the_running_poller_reads_the_pages_it_read_before(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A subscription added to the poller that swept the account (the same client, which
    remembers every page it read) shares its query and is in its first run: the pages
    served again byte for byte are decoded and read for it, and it records all 120; once
    it has, the pages are known again."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=120) as sims,
        poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store),
    ):
        await poller.poll()
        tick(sims, clock, 600)
        both = load(
            tmp_path,
            config_text(
                sims, UK_BASELINE + SECOND, state_path=tmp_path / "state.sqlite3", sources=("kato",)
            ),
        )
        poller.set_subscriptions(
            both.subscriptions, {s.name: int(s.channel) for s in both.subscriptions}
        )
        joined = await poller.poll()
        tick(sims, clock, 600)
        settled = await poller.poll()
    assert known(joined) == 0
    assert joined.baseline_matches == {"uk-too": 120}
    assert known(settled) == PAGES
