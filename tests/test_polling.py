"""Specification of the poller: what it forgets and when, what a poll sees of a reload,
first runs, its upstream round trips, and (at the end, without the app) what one poll
reads, queues and commits."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from listingbot import sources
from listingbot.app import App
from listingbot.clock import FakeClock
from listingbot.metrics import Metrics
from listingbot.models import Source
from listingbot.polling import FETCH_AHEAD, PRUNE_EVERY, Poller, prune_due
from listingbot.sim import SimStack
from listingbot.sim.market import iso_ms
from listingbot.store import Store
from tests.harness import (
    LogCapture,
    config_text,
    load,
    make_sims,
    messages,
    meta,
    running,
    sample,
    zips,
)

UK_SUB = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
"""

# A real geographic constraint (Kotohomes refuses searches by state alone).
ASTORIA = """\
- name: astoria
  source: kotohomes
  channel: 702
  filters: {zip_codes: ["11101"]}
"""

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86_400.0


def tick(sims: SimStack, clock: FakeClock, seconds: float) -> None:
    """Time passes for the service and the market alike."""
    clock.advance(seconds)
    sims.market.now = clock.now()


def events_for(sims: SimStack, channel: int, listing_id: str) -> list[str]:
    return [
        meta(m)["event"]
        for m in messages(sims, channel)
        if str(meta(m)["listing_id"]) == str(listing_id)
    ]


def listing_rows(app: App, listing_id: str) -> int:
    assert app.store is not None
    conn = app.store._c
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM listings WHERE listing_id = ?", (listing_id,)
        ).fetchone()[0]
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the event loop run until ``condition()`` holds (no time passes)."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def test_pruning_is_due_first_and_then_once_an_hour() -> None:
    """Never pruned: due. Pruned less than PRUNE_EVERY ago: not due. Then due again."""
    assert prune_due(None, T0)
    assert not prune_due(T0, T0 + PRUNE_EVERY - timedelta(seconds=1))
    assert prune_due(T0, T0 + PRUNE_EVERY)


# ---------------------------------------------------------------- not seen is not gone


async def test_a_live_kotohomes_listing_out_of_view_for_a_month_keeps_its_history(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A live listing outside the 50 newest for longer than `state.retention` is kept
    (Kotohomes says it exists): its later price drop is posted as a drop, not as new."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        text = config_text(sims, ASTORIA, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",))
        async with running(load(tmp_path, text), clock) as app:
            sims.market.add_kotohomes(state="NY", zip_code="11101")
            await app.once()
            tick(sims, clock, 60)
            target = sims.market.add_kotohomes(state="NY", zip_code="11101", price=600_000)
            await app.once()
            for i in range(60):  # newer listings push the target out of both top-50 lists
                tick(sims, clock, 60)
                sims.market.add_kotohomes(state="NY", zip_code="11101", price=400_000 + i)
            await app.once()
            for _ in range(31):
                tick(sims, clock, DAY)
                await app.once()
            asked = [r for r in sims.kotohomes.requests if r.path.endswith(f"/{target['id']}")]
            assert asked, "the long-unseen listing was checked"
            assert listing_rows(app, target["id"]) == 1
            tick(sims, clock, 60)
            sims.market.update_kotohomes(target["id"], price=550_000)
            await app.once()
        assert events_for(sims, 702, target["id"]) == ["new", "price_drop"]


async def test_a_kotohomes_listing_the_api_no_longer_knows_is_forgotten(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Once unseen for `state.retention`, a listing Kotohomes answers 404 for is forgotten
    with its match state; the listings still listed stay."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        text = config_text(sims, ASTORIA, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",))
        async with running(load(tmp_path, text), clock) as app:
            kept = sims.market.add_kotohomes(state="NY", zip_code="11101")
            gone = sims.market.add_kotohomes(state="NY", zip_code="11101")
            await app.once()
            sims.market.remove("kotohomes", gone["id"])
            tick(sims, clock, 29 * DAY)
            outcome = await app.poll("kotohomes")
            assert outcome.pruned == 0  # not yet long unseen
            assert listing_rows(app, gone["id"]) == 1
            tick(sims, clock, 2 * DAY)
            outcome = await app.poll("kotohomes")
            assert outcome.pruned == 1
            assert listing_rows(app, gone["id"]) == 0
            assert listing_rows(app, kept["id"]) == 1
            assert app.store is not None
            assert app.store.counts_sync()["matches"] == 1


async def test_kotohomes_asks_about_a_bounded_number_of_listings_per_poll(
    tmp_path: Path, clock: FakeClock
) -> None:
    """At most `state.gone_checks_per_poll` single-listing requests follow a poll."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        text = config_text(
            sims,
            ASTORIA,
            state_path=tmp_path / "s.sqlite3",
            sources=("kotohomes",),
            extra="",
        ).replace("state:\n", "state:\n  gone_checks_per_poll: 2\n", 1)
        async with running(load(tmp_path, text), clock) as app:
            added = [sims.market.add_kotohomes(state="NY", zip_code="11101") for _ in range(5)]
            await app.once()
            for record in added:
                sims.market.remove("kotohomes", record["id"])
            tick(sims, clock, 31 * DAY)
            forgotten = []
            for _ in range(3):
                before = len(sims.kotohomes.requests)
                forgotten.append((await app.poll("kotohomes")).pruned)
                single = [r for r in sims.kotohomes.requests[before:] if r.path != "/v1/listings"]
                assert len(single) <= 2
        assert forgotten == [2, 2, 1]


async def test_a_kato_listing_is_forgotten_after_consecutive_complete_sweeps_without_it(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Absent from `state.gone_after_sweeps` (3) complete sweeps in a row, a Kato listing
    is forgotten; absent from fewer, or back in between, it is kept."""
    text = config_text(sims, UK_SUB, state_path=tmp_path / "s.sqlite3", sources=("kato",))
    async with running(load(tmp_path, text), clock) as app:
        assert (await app.poll("kato")).ok
        assert app.store is not None
        live = len(sims.market.ids("kato"))
        gone = sims.market.ids("kato")[:3]
        for listing_id in gone:
            sims.market.remove("kato", listing_id)
        pruned = []
        for _ in range(3):
            tick(sims, clock, 600)
            pruned.append((await app.poll("kato")).pruned)
        assert pruned == [0, 0, 3]
        assert app.store.counts_sync()["listings"] == live - len(gone)


# ---------------------------------------------------------------- housekeeping


async def test_unconfigured_subscriptions_and_unpolled_queries_are_forgotten_after_retention(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A subscription removed from the config keeps its state for `state.retention` (so
    putting it back resumes it), then its row, its match state, its query's cursor and
    the listing rows only its query had leave the state file."""
    both = UK_SUB + "- name: uk-web\n  source: kato\n  channel: 704\n"
    both += "  filters: {published_to_website: true}\n"
    path = tmp_path / "s.sqlite3"
    async with running(
        load(tmp_path, config_text(sims, both, state_path=path, sources=("kato",))), clock
    ) as app:
        assert (await app.poll("kato")).ok
        assert app.store is not None
        before = app.store.counts_sync()
        assert before["cursors"] == 2
        await app.reload(
            load(tmp_path, config_text(sims, UK_SUB, state_path=path, sources=("kato",)))
        )
        tick(sims, clock, 10 * DAY)
        assert (await app.poll("kato")).ok
        assert app.store.counts_sync()["subscriptions"] == 2  # within the grace period
        tick(sims, clock, 21 * DAY)
        assert (await app.poll("kato")).ok
        after = app.store.counts_sync()
        names = [s.name for s in app.store.subscription_statuses_sync()]
    assert names == ["uk-all"]
    assert after["cursors"] == 1
    assert after["matches"] < before["matches"]
    assert after["listings"] < before["listings"]


async def test_a_reload_that_only_shortens_retention_applies_it(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A reload that changes `state.retention` and no source setting makes the new
    retention the one housekeeping uses: a subscription removed by that reload is
    forgotten after the new, shorter period, not the old one."""
    both = UK_SUB + "- name: uk-web\n  source: kato\n  channel: 704\n"
    both += "  filters: {published_to_website: true}\n"
    path = tmp_path / "s.sqlite3"
    async with running(
        load(tmp_path, config_text(sims, both, state_path=path, sources=("kato",))), clock
    ) as app:
        assert (await app.poll("kato")).ok
        shorter = config_text(sims, UK_SUB, state_path=path, sources=("kato",))
        shorter = shorter.replace(f"  path: {path}\n", f"  path: {path}\n  retention: 5d\n")
        await app.reload(load(tmp_path, shorter))
        tick(sims, clock, 6 * DAY)
        assert (await app.poll("kato")).ok
        names = [s.name for s in app.store.subscription_statuses_sync()]
    assert names == ["uk-all"]


async def test_housekeeping_runs_once_per_state_file_not_once_per_source(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """Two sources polling after the prune is due make one housekeeping pass."""
    subs = UK_SUB + ASTORIA
    path = tmp_path / "s.sqlite3"
    async with running(load(tmp_path, config_text(sims, subs, state_path=path)), clock) as app:
        await app.once()
        await app.reload(
            load(
                tmp_path,
                config_text(sims, ASTORIA + UK_SUB.replace("uk-all", "uk-2"), state_path=path),
            )
        )
        tick(sims, clock, 31 * DAY)
        await app.once()
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    pruned = [e for e in lines if e["event"] == "state_pruned"]
    assert len(pruned) == 1
    assert pruned[0]["subscriptions"] == 1


# ---------------------------------------------------------------- reloads and polls in flight

POOL = """\
- name: pool
  source: kotohomes
  channel: 702
  filters: {zip_codes: ["11101"], keywords_any: [pool]}
"""
GARAGE = """\
- name: garage
  source: kotohomes
  channel: 703
  filters: {zip_codes: ["11101"], keywords_any: [garage]}
"""


async def reload_mid_poll(
    sims: SimStack, tmp_path: Path, clock: FakeClock, before: str, after: str
) -> None:
    """Start a poll under ``before``, reload ``after`` while its fetch is held, finish it."""
    path = tmp_path / "s.sqlite3"
    v1 = load(tmp_path, config_text(sims, before, state_path=path, sources=("kotohomes",)))
    v2 = load(tmp_path, config_text(sims, after, state_path=path, sources=("kotohomes",)))
    async with running(v1, clock) as app:
        await app.once()
        tick(sims, clock, 60)
        sims.market.add_kotohomes(
            state="NY", zip_code="11101", description="Lovely house with a heated pool"
        )
        sims.faults.enabled_for = {"kotohomes"}
        sims.faults.hold()
        poll = asyncio.create_task(app.poll("kotohomes"))
        await until(lambda: sims.faults.held > 0, "the poll to be mid-fetch")
        await app.reload(v2)
        sims.faults.release()
        outcome = await poll
        assert outcome.ok, outcome.error
        await app.deliver()


async def test_a_reload_that_reorders_subscriptions_mid_poll_misroutes_nothing(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The poll in flight keeps the plan it started with: the pool listing goes to the
    pool subscription's channel, not to whichever subscription took its place."""
    await reload_mid_poll(sims, tmp_path, clock, POOL + GARAGE, GARAGE + POOL)
    posted = {ch: [meta(m)["subscriptions"] for m in messages(sims, ch)] for ch in (702, 703)}
    assert posted == {702: [["pool"]], 703: []}


async def test_removing_a_subscription_mid_poll_finishes_the_poll_on_its_snapshot(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A subscription removed while a poll is in flight does not crash that poll; the
    poll completes as it started, and the next poll no longer serves it."""
    await reload_mid_poll(sims, tmp_path, clock, POOL + GARAGE, GARAGE)
    assert [meta(m)["subscriptions"] for m in messages(sims, 702)] == [["pool"]]


async def test_a_reload_applies_from_the_next_poll(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A subscription added mid-poll is not in that poll; the next poll serves it."""
    path = tmp_path / "s.sqlite3"
    v1 = load(tmp_path, config_text(sims, GARAGE, state_path=path, sources=("kotohomes",)))
    v2 = load(
        tmp_path,
        config_text(
            sims,
            GARAGE + POOL.replace("pool\n", "pool\n  first_run: post\n", 1),
            state_path=path,
            sources=("kotohomes",),
        ),
    )
    async with running(v1, clock) as app:
        await app.once()
        sims.market.add_kotohomes(state="NY", zip_code="11101", description="A pool")
        sims.faults.enabled_for = {"kotohomes"}
        sims.faults.hold()
        poll = asyncio.create_task(app.poll("kotohomes"))
        await until(lambda: sims.faults.held > 0, "the poll to be mid-fetch")
        await app.reload(v2)
        sims.faults.release()
        first = await poll
        second = await app.poll("kotohomes")
    assert first.queued == 0  # garage alone: the pool listing is not for it
    assert second.queued >= 1  # pool, in its first run (post), announces it


# ---------------------------------------------------------------- first runs and filter edits


async def test_a_filter_edit_keeps_the_changes_of_listings_already_followed(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """After a filter edit, a price drop of a listing the subscription already follows is
    posted; only listings new to it are taken in silently."""
    path = tmp_path / "s.sqlite3"
    v2_sub = ASTORIA.replace('["11101"]}', '["11101"], keywords_none: [auction]}')
    v1 = load(tmp_path, config_text(sims, ASTORIA, state_path=path, sources=("kotohomes",)))
    v2 = load(tmp_path, config_text(sims, v2_sub, state_path=path, sources=("kotohomes",)))
    async with running(v1, clock) as app:
        await app.once()
        tick(sims, clock, 60)
        rec = sims.market.add_kotohomes(
            state="NY", zip_code="11101", price=600_000, description="Sunny home"
        )
        await app.once()
        tick(sims, clock, 60)
        sims.market.update_kotohomes(rec["id"], price=550_000)
        await app.reload(v2)
        await app.once()
        await app.once()
    assert events_for(sims, 702, rec["id"]) == ["new", "price_drop"]


SAME_QUERY_POST = """\
- name: astoria-post
  source: kotohomes
  channel: 703
  filters: {zip_codes: ["11101"]}
  first_run: post
"""


async def test_first_run_post_beside_a_subscription_with_the_same_query_posts_every_match(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """`first_run: post` added beside a subscription with the same upstream query posts
    one `new` per current match: its first run is its own, not the query's."""
    path = tmp_path / "s.sqlite3"
    v1 = load(tmp_path, config_text(sims, ASTORIA, state_path=path, sources=("kotohomes",)))
    v2 = load(
        tmp_path,
        config_text(sims, ASTORIA + SAME_QUERY_POST, state_path=path, sources=("kotohomes",)),
    )
    async with running(v1, clock) as app:
        await app.once()
        await app.reload(v2)
        await app.once()
        await app.once()
    live = [r for r in sims.market.kotohomes_records() if r.get("zip_code") == "11101"]
    assert live
    assert sorted(meta(m)["listing_id"] for m in messages(sims, 703)) == sorted(
        r["id"] for r in live
    )


async def test_first_run_post_replacing_a_subscription_with_the_same_query_posts_every_match(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A `first_run: post` subscription that takes over another's query (a rename, a
    move to another channel) posts every current match in its channel."""
    path = tmp_path / "s.sqlite3"
    v1 = load(tmp_path, config_text(sims, ASTORIA, state_path=path, sources=("kotohomes",)))
    v2 = load(tmp_path, config_text(sims, SAME_QUERY_POST, state_path=path, sources=("kotohomes",)))
    async with running(v1, clock) as app:
        await app.once()
        await app.reload(v2)
        await app.once()
    live = [r for r in sims.market.kotohomes_records() if r.get("zip_code") == "11101"]
    assert len(messages(sims, 703)) == len(live) > 0


async def test_an_empty_first_answer_does_not_complete_the_baseline(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A first run whose query answers nothing stays a first run: listings that already
    existed when it answered nothing (a glitch) are taken in silently, not as new."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        text = config_text(sims, ASTORIA, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",))
        async with running(load(tmp_path, text), clock) as app:
            await app.once()  # empty
            tick(sims, clock, 60)
            earlier = iso_ms(clock.now() - timedelta(days=2))
            for _ in range(4):  # there all along, missing from the empty answer
                sims.market.add_kotohomes(
                    state="NY", zip_code="11101", created_at=earlier, updated_at=earlier
                )
            await app.once()  # the first real answer: the baseline
            assert messages(sims, 702) == []
            tick(sims, clock, 60)
            fresh = sims.market.add_kotohomes(state="NY", zip_code="11101")
            await app.once()
        assert [meta(m)["listing_id"] for m in messages(sims, 702)] == [fresh["id"]]


async def test_after_an_empty_first_answer_listings_created_since_are_new(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Listings created after a first run's empty answer did not exist when it looked:
    they are announced, in either first-run mode."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        text = config_text(sims, ASTORIA, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",))
        async with running(load(tmp_path, text), clock) as app:
            await app.once()  # empty
            tick(sims, clock, 60)
            fresh = sims.market.add_kotohomes(state="NY", zip_code="11101")
            await app.once()
        assert [meta(m)["listing_id"] for m in messages(sims, 702)] == [fresh["id"]]


async def test_repeated_empty_answers_complete_the_baseline(
    tmp_path: Path, clock: FakeClock
) -> None:
    """An area that really is empty: after three empty answers the first run is over, and
    the first listing to appear is announced."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        text = config_text(sims, ASTORIA, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",))
        async with running(load(tmp_path, text), clock) as app:
            for _ in range(3):
                await app.once()
                tick(sims, clock, 60)
            fresh = sims.market.add_kotohomes(state="NY", zip_code="11101")
            await app.once()
        assert [meta(m)["listing_id"] for m in messages(sims, 702)] == [fresh["id"]]


# ---------------------------------------------------------------- delivery keys


async def test_a_value_returning_to_an_earlier_one_is_posted_every_time(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Kato rent 30 -> 35 -> 30 -> 35 with `updated_at` null: all three changes posted."""
    text = config_text(sims, UK_SUB, state_path=tmp_path / "s.sqlite3", sources=("kato",))
    async with running(load(tmp_path, text), clock) as app:
        await app.once()
        rec = sims.market.add_kato(rent=30.0, updated_at=None)
        await app.once()
        for rent in (35.0, 30.0, 35.0):
            tick(sims, clock, 600)
            sims.market.update_kato(str(rec["id"]), rent=rent, updated_at=None)
            await app.once()
    assert events_for(sims, 704, rec["id"]) == [
        "new",
        "price_increase",
        "price_drop",
        "price_increase",
    ]


async def test_an_event_whose_key_is_already_queued_is_counted_and_logged(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """A `first_run: post` subscription added to a channel that was already told about
    every listing queues nothing twice, and says so: metric and log line."""
    path = tmp_path / "s.sqlite3"
    post_too = UK_SUB.replace("uk-all", "uk-too") + "  first_run: post\n"
    v1 = load(
        tmp_path,
        config_text(
            sims, UK_SUB.replace("{}", "{}\n  first_run: post"), state_path=path, sources=("kato",)
        ),
    )
    v2 = load(tmp_path, config_text(sims, UK_SUB + post_too, state_path=path, sources=("kato",)))
    async with running(v1, clock) as app:
        await app.once()
        told = len(messages(sims, 704))
        await app.reload(v2)
        outcome = await app.poll("kato")
        counted = sample(app, "listingbot_events_deduplicated_total", source="kato")
    assert outcome.events == told > 0
    assert outcome.queued == 0
    assert counted == told
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    (line,) = [e for e in lines if e["event"] == "events_already_queued"]
    assert line["count"] == told


# ---------------------------------------------------------------- round trips


async def test_queries_after_the_first_are_fetched_a_few_at_a_time(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The first query is fetched alone; then FETCH_AHEAD queries are in flight together
    (their first searches all answered before any second search), each searched twice."""
    prices = range(300_000, 1_300_000, 100_000)
    subs = "".join(
        f"- name: ny-{price}\n  source: kotohomes\n  channel: 702\n"
        f"  filters: {{states: [NY], zip_codes: {zips('NY')}, price_max: {price}}}\n"
        for price in prices
    )
    config = load(
        tmp_path,
        config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",)),
    )
    async with running(config, clock) as app:
        # Every answer takes 50 ms, as over a network: requests sent together finish together.
        sims.faults.enabled_for = {"kotohomes"}
        sims.faults.set(rate_slow=1.0, slow_s=0.05)
        outcome = await app.poll("kotohomes")
    assert outcome.ok
    searches = [
        # No sort_by is the search for updates (newest update first in both versions).
        (dict(r.query)["price_max"], dict(r.query).get("sort_by", "updates"))
        for r in sims.kotohomes.requests
        if r.path == "/v1/listings"
    ]
    assert sorted(searches) == sorted(
        (str(p), sort) for p in prices for sort in ("updates", "created_at")
    )
    first = searches[0][0]
    assert searches[:2] == [(first, "updates"), (first, "created_at")]
    batch = searches[2 : 2 + FETCH_AHEAD]
    assert [sort for _, sort in batch] == ["updates"] * FETCH_AHEAD
    assert len({price for price, _ in batch}) == FETCH_AHEAD


# ---------------------------------------------------------------- the poller alone
# A Poller over a real Store, the source's real fetcher and the simulators: no App, no
# scheduler, no delivery. What one poll reads, detects, queues and commits.


@asynccontextmanager
async def poller_for(
    sims: SimStack, tmp_path: Path, clock: FakeClock, subscriptions: str, source: Source
) -> AsyncIterator[tuple[Poller, Store]]:
    """A Poller for ``source``'s subscriptions in ``subscriptions`` (numeric channels),
    built as the app builds it, and its store."""
    config = load(
        tmp_path,
        config_text(sims, subscriptions, state_path=tmp_path / "state.sqlite3", sources=(source,)),
    )
    store = await Store.open(config.state.path, clock.now)
    try:
        async with aiohttp.ClientSession() as session:
            metrics = Metrics()
            fetcher = sources.get(source).fetcher(
                config, session=session, clock=clock, metrics=metrics
            )
            poller = Poller(source, fetcher, store, clock, metrics, channels={})
            channels = {s.name: int(s.channel) for s in config.subscriptions}
            poller.set_subscriptions(config.subscriptions, channels)
            yield poller, store
    finally:
        await store.close()


def dropped(poller: Poller, field_name: str) -> float:
    value = poller.metrics.registry.get_sample_value(
        "listingbot_record_fields_dropped_total",
        {"source": poller.source, "field": field_name},
    )
    return value or 0.0


UK_BASELINE = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
  first_run: baseline
"""


async def test_a_poll_baselines_first_then_queues_each_change_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A first run under `baseline` records every match and queues nothing; the next poll
    queues exactly the new listing and the price drop since, and the one after nothing."""
    async with make_sims(clock, kotohomes_count=0, kato_count=5) as sims:
        old = sims.market.add_kato(price=500_000)
        async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, store):
            first = await poller.poll()
            assert first.ok
            assert first.queued == 0
            assert first.baseline_matches == {"uk-all": 6}
            tick(sims, clock, 60)
            added = sims.market.add_kato(price=250_000)
            sims.market.update_kato(old["id"], price=400_000)
            second = await poller.poll()
            third = await poller.poll()
            rows = store.all_rows_sync()
    assert second.queued == 2
    assert sorted((r.message.event, r.message.listing_id) for r in rows) == sorted(
        [("new", str(added["id"])), ("price_drop", str(old["id"]))]
    )
    assert {r.message.channel_id for r in rows} == {704}
    assert (third.events, third.queued) == (0, 0)


async def test_a_dry_run_poll_composes_messages_and_writes_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """`poll(dry_run=True)` returns the messages a poll would queue; the state file stays
    empty (no subscription, listing, cursor or outbox row)."""
    subs = UK_BASELINE.replace("first_run: baseline", "first_run: post")
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=3) as sims,
        poller_for(sims, tmp_path, clock, subs, "kato") as (poller, store),
    ):
        outcome = await poller.poll(dry_run=True)
        counts = store.counts_sync()
    assert [m.event for m in outcome.messages] == ["new"] * 3
    assert outcome.queued == 0
    assert set(counts.values()) == {0}, counts


async def test_a_refused_query_fails_its_subscriptions_and_the_others_commit(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Kotohomes refuses a search by states alone (400): that query's subscription is
    named in `rejected`, the poll stays good, and the other query's listings are queued."""
    subs = ASTORIA + (
        "- name: ny-states\n  source: kotohomes\n  channel: 703\n  filters: {states: [NY]}\n"
    )
    subs = subs.replace("- name: astoria", "- name: astoria\n  first_run: post", 1)
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        listing = sims.market.add_kotohomes(state="NY", zip_code="11101")
        async with poller_for(sims, tmp_path, clock, subs, "kotohomes") as (poller, store):
            outcome = await poller.poll()
            rows = store.all_rows_sync()
    assert outcome.ok
    assert list(outcome.rejected) == ["ny-states"]
    assert outcome.failed_queries == 1
    assert [(r.message.channel_id, r.message.listing_id) for r in rows] == [(702, listing["id"])]


async def test_a_source_outage_fails_the_poll_and_moves_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Every request failing (500, after the client's retries): the poll fails naming the
    subscriptions, records the failure, and commits no cursor, listing or baseline."""
    async with (
        make_sims(clock, kotohomes_count=0, kato_count=4) as sims,
        poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, store),
    ):
        sims.faults.enabled_for = {"kato"}
        sims.faults.set(rate_500=1.0)
        outcome = await poller.poll()
        counts = store.counts_sync()
        (status,) = await store.source_statuses()
    assert not outcome.ok
    assert outcome.error is not None
    assert "uk-all" in outcome.error
    assert (counts["cursors"], counts["listings"], counts["outbox"]) == (0, 0, 0)
    assert status.consecutive_failures == 1
    assert store_baselined(tmp_path) is None


def store_baselined(tmp_path: Path) -> str | None:
    """When the subscription `uk-all` completed its first run (None: not yet)."""
    conn = sqlite3.connect(tmp_path / "state.sqlite3")
    try:
        row = conn.execute("SELECT baselined_at FROM subscriptions WHERE name = 'uk-all'")
        found = row.fetchone()
    finally:
        conn.close()
    return None if found is None else found[0]


async def test_a_record_read_again_unchanged_is_not_normalized_again(
    tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """A record with an unreadable field loses that field and is reported (logged and
    counted) once; polls that read the same bytes again report nothing more, and a
    change to the record reports it again."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        record = sims.market.add_kato(for_sale="perhaps")
        async with poller_for(sims, tmp_path, clock, UK_BASELINE, "kato") as (poller, _store):
            await poller.poll()
            await poller.poll()
            once = dropped(poller, "for_sale")
            tick(sims, clock, 60)
            sims.market.update_kato(record["id"], price=1_000, for_sale="perhaps")
            await poller.poll()
            again = dropped(poller, "for_sale")
    warnings = [
        line
        for line in logs.getvalue().splitlines()
        if '"record_field_dropped"' in line and '"for_sale"' in line
    ]
    assert (once, again) == (1.0, 2.0)
    assert len(warnings) == 2
