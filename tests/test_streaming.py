"""Specification of the page-by-page sweep (issue 15): memory bounded by a page, not by the
account, and a sweep that fails midway changes nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sqlite3
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import pytest

from benchmarks.kato_server import RecordedKato
from listingbot.app import App
from listingbot.clients.kato import KatoClient
from listingbot.clock import FakeClock
from listingbot.polling import Reader
from listingbot.sim import SimStack
from listingbot.sim._http import start_app
from listingbot.sim.market import Market
from listingbot.sources.kato import KatoFetcher
from tests.harness import SECRETS, config_text, load, make_sims, running
from tests.test_polling import UK_BASELINE, poller_for, store_baselined, tick


async def test_a_sweep_failing_on_its_last_page_records_nothing_of_the_pages_before(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Pages 1 and 2 of 3 are read, detected and staged; page 3 fails (500, after the
    client's retries): the poll fails and records no listing, match or baseline, nothing
    stays staged, and the next sweep records all of them."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=120) as sims,
        poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, store),
    ):
        sims.kato.fail_from_page = 3
        failed = await poller.poll()
        served = {
            int(dict(r.query)["page"])
            for r in sims.kato.requests
            if r.path.endswith("/availability") and r.status == 200
        }
        assert served == {1, 2}
        assert not failed.ok
        counts = store.counts_sync()
        assert (counts["listings"], counts["matches"], counts["cursors"]) == (0, 0, 0)
        assert store_baselined(tmp_path) is None
        assert await store.staged_count() == 0
        sims.kato.fail_from_page = None
        again = await poller.poll()
        counts = store.counts_sync()
        assert again.ok
        assert again.baseline_matches == {"uk-all": 120}
        assert (counts["listings"], counts["matches"]) == (120, 120)
        assert store_baselined(tmp_path) is not None
        assert await store.staged_count() == 0


# Two statuses: each poll of this subscription is two sweeps, one per status.
TWO_STATUSES = """\
- name: uk-two
  source: kato
  channel: 704
  filters: {status: [available, under_offer]}
  first_run: baseline
"""


def _moves_between_the_status_sweeps(sims: SimStack, listing_id: str) -> None:
    """Between a poll's two sweeps (before the under_offer sweep's first page), the
    listing moves from available to under_offer."""

    def move(page: int, statuses: tuple[str, ...]) -> None:
        if statuses == ("under_offer",) and page == 1:
            sims.market.update_kato(listing_id, status="under_offer")

    sims.kato.before_page = move


async def test_a_listing_served_on_two_pages_of_one_sweep_counts_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Two statuses are two sweeps, merged by id: a listing whose status changed between
    them is served by both, and is read, matched and recorded once (the first)."""
    subs = TWO_STATUSES
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=0) as sims,
        poller_for(sims, tmp_path, clock, subs, "kato") as (poller, store),
    ):
        moving = sims.market.add_kato(status="available")
        sims.market.add_kato(status="under_offer")

        _moves_between_the_status_sweeps(sims, str(moving["id"]))
        outcome = await poller.poll()
        counts = store.counts_sync()
    assert outcome.ok, outcome.error
    assert outcome.listings == 2
    assert outcome.baseline_matches == {"uk-two": 2}
    assert (counts["listings"], counts["matches"]) == (2, 2)


async def _served_twice(tmp_path: Path, clock: FakeClock, *, moving_first: bool) -> None:
    """120 under_offer listings and one available one that moves to under_offer before
    the second sweep: served by the available sweep's only page and again by the
    under_offer sweep, on its first page (``moving_first``: it is the market's first
    record) or its last (it is the market's last). Read, matched and recorded once."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=0) as sims,
        poller_for(sims, tmp_path, clock, TWO_STATUSES, "kato") as (poller, store),
    ):
        moving = sims.market.add_kato(status="available") if moving_first else None
        for _ in range(120):
            sims.market.add_kato(status="under_offer")
        if moving is None:
            moving = sims.market.add_kato(status="available")
        _moves_between_the_status_sweeps(sims, str(moving["id"]))
        outcome = await poller.poll()
        counts = store.counts_sync()
        served = [
            dict(r.query)["page"] for r in sims.kato.requests if r.path.endswith("/availability")
        ]
    assert served == ["1", "1", "2", "3"]  # one available page, three under_offer pages
    assert outcome.ok, outcome.error
    assert outcome.listings == 121
    assert outcome.baseline_matches == {"uk-two": 121}
    assert (counts["listings"], counts["matches"]) == (121, 121)


async def test_a_listing_served_again_by_the_very_next_page_counts_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The next page is read while this one is still detected, before it is staged: a
    listing this page served and the next serves again still counts once."""
    await _served_twice(tmp_path, clock, moving_first=True)


async def test_a_listing_served_again_pages_later_counts_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A listing the sweep's first page served and its fourth serves again counts once:
    the pages between staged it, and the state file's staging says so."""
    await _served_twice(tmp_path, clock, moving_first=False)


async def test_a_first_sweep_posting_everything_posts_a_listing_served_twice_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A first sweep reads its pages without asking the state file (nothing is recorded):
    a listing the first page served and the fourth serves again is still posted once,
    recorded as the first page served it (available), and the page that served it
    again is not recorded as known whole (what it held is not what the sweep staged)."""
    posting = TWO_STATUSES.replace("first_run: baseline", "first_run: post")
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=0) as sims,
        poller_for(sims, tmp_path, clock, posting, "kato") as (poller, store),
    ):
        for _ in range(120):
            sims.market.add_kato(status="under_offer")
        moving = sims.market.add_kato(status="available")
        _moves_between_the_status_sweeps(sims, str(moving["id"]))
        outcome = await poller.poll()
        rows = store.all_rows_sync()
    conn = sqlite3.connect(tmp_path / "state.sqlite3")
    (status,) = conn.execute(
        "SELECT status FROM listings WHERE listing_id = ?", (str(moving["id"]),)
    ).fetchone()
    (pages,) = conn.execute("SELECT COUNT(*) FROM sweep_pages").fetchone()
    conn.close()
    assert outcome.ok, outcome.error
    assert outcome.listings == 121
    assert outcome.events == 121
    posted = [r.message.listing_id for r in rows if r.message.listing_id]  # not the digest
    assert len(posted) == len(set(posted)) == 121
    assert status == "available"
    assert pages == 3  # of the four served: the under_offer sweep's last page is not


async def test_a_restarted_service_takes_unchanged_records_from_the_state_file(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A record whose bytes are what its query read last time is not normalized again,
    even by a new process: a field it drops is reported by the first poll only, not by
    the first poll after a restart (the state file keeps each record's digest)."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        sims.market.add_kato(for_sale="perhaps")
        for expected in (1.0, 0.0):
            # A new poller and store each time: a restart.
            async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _s):
                assert (await poller.poll()).ok
                dropped = poller.metrics.registry.get_sample_value(
                    "listingbot_record_fields_dropped_total",
                    {"source": "kato", "field": "for_sale"},
                )
                assert (dropped or 0.0) == expected


@asynccontextmanager
async def _ready_for_a_first_sweep(tmp_path: Path, records: int) -> AsyncIterator[App]:
    """The service started on a new state file, with a Kato account of ``records``
    served pre-rendered (``benchmarks.kato_server``): what is measured is the service,
    not a simulator rendering its market for every page."""
    clock = FakeClock()
    kato = RecordedKato(
        records, 5, clients={SECRETS["KATO_CLIENT_ID"]: SECRETS["KATO_CLIENT_SECRET"]}
    )
    runner, kato_url = await start_app(kato.app(), "127.0.0.1", 0)
    try:
        async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
            state = tmp_path / f"s{records}.sqlite3"
            text = config_text(sims, UK_BASELINE, state_path=state, sources=("kato",))
            text = text.replace(sims.kato_url, kato_url)
            async with running(load(tmp_path, text), clock) as app:
                yield app
    finally:
        await runner.cleanup()


async def test_a_first_sweep_holds_a_page_in_memory_not_the_account(tmp_path: Path) -> None:
    """Peak traced memory of a first sweep over 50 pages is within 1.5x of the peak over
    5 pages: what grows with the account is staged in the state file, not held.

    The account is served pre-rendered (``benchmarks.kato_server``), so what is traced is
    the service's memory, not a simulator rendering its market for every page."""
    peaks: dict[int, int] = {}
    for records in (250, 2500):
        async with _ready_for_a_first_sweep(tmp_path, records) as app:
            gc.collect()
            tracemalloc.start()
            try:
                outcome = await app.poll("kato")
                _, peaks[records] = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert outcome.ok
            assert outcome.listings == records
    assert peaks[2500] <= 1.5 * peaks[250], peaks


def _sqlite_library() -> ctypes.CDLL | None:
    """The SQLite library Python's ``sqlite3`` uses, when it is a shared one (its memory
    counters are then the ones listingbot's connections move)."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    library = ctypes.CDLL(name)
    library.sqlite3_memory_highwater.restype = ctypes.c_int64
    library.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return library


async def test_a_first_sweep_holds_sqlite_memory_bounded_not_by_the_account(
    tmp_path: Path,
) -> None:
    """SQLite's own peak memory (its page caches, journals kept in memory) over a first
    sweep of 20,000 records is within 1.25x of that over 10,000: the sweep's staging
    lives on the temp tables' file, and no transaction over the whole staging (the
    discard after the commit) keeps its journal in memory. tracemalloc does not see this
    memory; a discard journaled in memory grew the service's RSS by 18 MB at 100,000
    records (scenario 7 of ``make bench``)."""
    library = _sqlite_library()
    if library is None:
        pytest.skip("Python's sqlite3 is not linked to a shared SQLite library here")
    peaks: dict[int, int] = {}
    for records in (10_000, 20_000):
        async with _ready_for_a_first_sweep(tmp_path, records) as app:
            library.sqlite3_memory_highwater(1)  # reset to what is in use now
            outcome = await app.poll("kato")
            peaks[records] = library.sqlite3_memory_highwater(0)
            assert outcome.ok
            assert outcome.listings == records
    assert peaks[20_000] <= 1.25 * peaks[10_000], peaks


def _listing_rows(path: Path) -> dict[str, tuple[object, ...]]:
    """Every listing row of a state file, by id, without its first_seen (a time of its own)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT listing_id, source, fingerprint, price, status, digest, created_at,"
            " updated_at, last_seen, missed_sweeps FROM listings"
        ).fetchall()
    finally:
        conn.close()
    return {str(r[0]): tuple(r[1:]) for r in rows}


async def test_a_steady_sweep_leaves_each_listing_as_a_first_sweep_of_the_same_records_would(
    tmp_path: Path, clock: FakeClock
) -> None:
    """After a second sweep in which some records changed, one changed only in bytes the
    listing does not read (a new record: its digest and fingerprint move) and the rest were served
    as before (staged by id alone), every listing's row holds what a first sweep of the
    same records on a new state file records: the same facts, digest, last_seen and missed
    sweeps."""
    async with make_sims(clock, kotohomes_count=0, kato_count=120) as sims:
        async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store):
            assert (await poller.poll()).ok
            before = _listing_rows(tmp_path / "state.sqlite3")
            tick(sims, clock, 600)
            ids = sims.market.ids("kato")
            sims.market.update_kato(ids[0], price=123_456)
            sims.market.update_kato(ids[1], status="under_offer")
            quiet = sims.market.find("kato", ids[2])
            assert quiet is not None
            sims.market.update_kato(ids[2], updated_at=quiet["updated_at"], crm_note="x")
            second = await poller.poll()
        assert second.ok, second.error
        steady = _listing_rows(tmp_path / "state.sqlite3")
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        async with poller_for(sims, fresh, clock, UK_BASELINE, "kato") as (poller, _store):
            assert (await poller.poll()).ok
        first = _listing_rows(fresh / "state.sqlite3")
    assert steady == first
    assert len(steady) == 120
    # The quiet change is a new record: the fingerprint is the record's digest.
    assert steady[ids[2]][1] == steady[ids[2]][4].hex() != before[ids[2]][1]
    assert steady[ids[0]][1] != before[ids[0]][1]


async def test_a_listing_served_unchanged_then_changed_in_one_sweep_counts_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A listing the state file knows, served as it was by the first of a sweep's two
    status queries (staged by id) and changed by the second, is read and recorded once: the
    first serving counts, so the sweep reports two listings and the status stays."""
    subs = TWO_STATUSES
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=0) as sims,
        poller_for(sims, tmp_path, clock, subs, "kato") as (poller, store),
    ):
        moving = sims.market.add_kato(status="available")
        sims.market.add_kato(status="under_offer")
        assert (await poller.poll()).ok
        before = _listing_rows(tmp_path / "state.sqlite3")[str(moving["id"])]
        tick(sims, clock, 600)

        _moves_between_the_status_sweeps(sims, str(moving["id"]))
        outcome = await poller.poll()
        after = _listing_rows(tmp_path / "state.sqlite3")[str(moving["id"])]
        assert await store.staged_count() == 0
    assert outcome.ok, outcome.error
    assert outcome.listings == 2
    assert outcome.events == 0
    assert after[:-2] == before[:-2]  # the same facts; last_seen moved
    assert after[-2] != before[-2]


async def test_a_sweep_whose_known_listing_is_forgotten_under_it_records_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A listing the sweep's first page found recorded is deleted from the state file by
    another connection before the last page: the poll fails, no listing's last_seen moves
    and nothing stays staged; the next sweep records every listing, that one anew."""
    state = tmp_path / "state.sqlite3"
    async with make_sims(clock, kotohomes_count=0, kato_count=120) as sims:
        text = config_text(sims, UK_BASELINE, state_path=state, sources=("kato",))
        async with running(load(tmp_path, text), clock) as app:
            assert (await app.poll("kato")).ok
            before = _listing_rows(state)
            tick(sims, clock, 600)
            forgotten = sims.market.ids("kato")[0]

            def forget(page: int, statuses: tuple[str, ...]) -> None:
                if page == 3:
                    conn = sqlite3.connect(state)
                    with conn:
                        conn.execute("DELETE FROM listings WHERE listing_id = ?", (forgotten,))
                    conn.close()

            sims.kato.before_page = forget
            failed = await app.poll("kato")
            after = _listing_rows(state)
            staged = await app.parts.store.staged_count()
            sims.kato.before_page = None
            again = await app.poll("kato")
            last = _listing_rows(state)
    assert not failed.ok
    assert "forgotten while it ran" in (failed.error or "")
    assert staged == 0
    assert after == {lid: row for lid, row in before.items() if lid != forgotten}
    assert again.ok, again.error
    assert set(last) == set(before)
    assert all(row[-2] != before[lid][-2] for lid, row in last.items())


async def test_a_kotohomes_poll_leaves_each_listing_it_saw_as_a_first_poll_would(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A Kotohomes query's answers are staged as a sweep's pages are: after a second poll
    in which one listing changed and another came back as before (staged by id), every
    listing it saw has the row a first poll of the same market on a new state file
    writes."""
    subs = """\
- name: astoria
  source: kotohomes
  channel: 702
  filters: {zip_codes: ["11101", "11102", "11103", "11105"]}
  first_run: baseline
"""
    async with make_sims(clock, kotohomes_count=400, kato_count=0) as sims:
        async with poller_for(sims, tmp_path, clock, subs, "kotohomes") as (poller, _store):
            assert (await poller.poll()).ok
            tick(sims, clock, 600)
            # One listing of the query changes; the answer for new listings serves the
            # newest one again (its bound is inclusive), unchanged.
            changed = sorted(_listing_rows(tmp_path / "state.sqlite3"))[0]
            sims.market.update_kotohomes(changed, price=123_456)
            second = await poller.poll()
        assert second.ok, second.error
        steady = _listing_rows(tmp_path / "state.sqlite3")
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        async with poller_for(sims, fresh, clock, subs, "kotohomes") as (poller, _store):
            assert (await poller.poll()).ok
        first = _listing_rows(fresh / "state.sqlite3")
    now = max(row[-2] for row in steady.values())
    seen = {lid: row for lid, row in steady.items() if row[-2] == now}
    assert changed in seen
    assert len(seen) >= 2, (len(steady), len(first))
    assert seen == {lid: first[lid] for lid in seen}


def test_a_record_whose_id_is_a_lone_surrogate_is_skipped_without_an_id() -> None:
    """A Kato record whose id is ``"\\ud800x"`` (JSON can escape a lone surrogate, the
    standard library decodes it, UTF-8 cannot hold it) is skipped as a record without a
    usable id: known by its content, not by that id, which the commit would have bound
    into the state file's absence count (a UnicodeEncodeError failing the poll). The rest
    of its page is read."""
    records = Market(5, kotohomes_count=0, kato_count=3).kato_records()
    broken = {**records[1], "id": "\ud800x"}
    reader = Reader("kato", KatoFetcher(cast(KatoClient, None)).normalize)
    observed, bad = reader.read([records[0], broken, records[2]])
    assert [o.facts.id for o in observed] == [str(records[0]["id"]), str(records[2]["id"])]
    assert len(bad) == 1
    assert next(iter(bad)).startswith("#")  # an anonymous skip: no id to keep
