"""Specification of the poller's housekeeping and its upstream round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from listingbot.clock import FakeClock
from listingbot.polling import FETCH_AHEAD, PRUNE_EVERY, prune_due
from listingbot.sim import SimStack
from tests.harness import config_text, load, running

UK_SUB = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
"""

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_pruning_is_due_first_and_then_once_an_hour() -> None:
    """Never pruned: due. Pruned less than PRUNE_EVERY ago: not due. Then due again."""
    assert prune_due(None, T0)
    assert not prune_due(T0, T0 + PRUNE_EVERY - timedelta(seconds=1))
    assert prune_due(T0, T0 + PRUNE_EVERY)


async def test_a_poll_prunes_listings_unseen_for_the_retention_period(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Listings no query has seen for `state.retention` leave the state file after a
    successful poll; the listings still on the market stay."""
    # state.retention is left at its default, 30 days: the poller gets it from the config.
    text = config_text(sims, UK_SUB, state_path=tmp_path / "state.sqlite3", sources=("kato",))
    async with running(load(tmp_path, text), clock) as app:
        assert app.pollers["kato"].retention == timedelta(days=30)
        assert (await app.poll("kato")).ok
        assert app.store is not None
        live = len(sims.market.ids("kato"))
        gone = sims.market.ids("kato")[:3]
        for listing_id in gone:
            sims.market.remove("kato", listing_id)
        clock.advance(timedelta(days=31).total_seconds())
        outcome = await app.poll("kato")
        assert outcome.ok
        assert outcome.pruned == len(gone)
        assert app.store.counts_sync()["listings"] == live - len(gone)


async def test_queries_after_the_first_are_fetched_a_few_at_a_time(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The first query is fetched alone; then FETCH_AHEAD queries are in flight together
    (their first searches all answered before any second search), each searched twice."""
    prices = range(300_000, 1_300_000, 100_000)
    subs = "".join(
        f"- name: ny-{price}\n  source: kotohomes\n  channel: 702\n"
        f"  filters: {{states: [NY], price_max: {price}}}\n"
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
        (dict(r.query)["price_max"], dict(r.query)["sort_by"])
        for r in sims.kotohomes.requests
        if r.path == "/v1/listings"
    ]
    assert sorted(searches) == sorted(
        (str(p), sort) for p in prices for sort in ("created_at", "updated_at")
    )
    first = searches[0][0]
    assert searches[:2] == [(first, "created_at"), (first, "updated_at")]
    batch = searches[2 : 2 + FETCH_AHEAD]
    assert [sort for _, sort in batch] == ["created_at"] * FETCH_AHEAD
    assert len({price for price, _ in batch}) == FETCH_AHEAD
