"""Tripwires for the benchmarks (``make bench``): quick versions of scenarios 1 and 3 that
count rather than time, so a change that makes upstream cost grow with subscriptions or
delivery lose its order fails here before anyone runs the full suite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks import workload
from benchmarks.delivery import outbox_messages
from benchmarks.upstream import expected_kato_pages
from listingbot.app import App
from listingbot.clock import FakeClock
from listingbot.config import Config
from listingbot.sim import SimStack
from listingbot.store import PollRecord
from tests.harness import SECRETS, make_sims, meta, running

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

CHANNELS = 5
KATO_PAGE_SIZE = 20


def channels() -> list[tuple[int, str, str]]:
    return [(c, f"ch-{c}", f"Channel {c}") for c in workload.channel_ids(CHANNELS)]


def config(sims: SimStack, tmp_path: Path, subs: list[dict[str, object]]) -> Config:
    return workload.parse(
        workload.config_data(
            subs,
            state_path=tmp_path / "state.sqlite3",
            kotohomes_url=sims.kotohomes_url,
            kato_url=sims.kato_url,
            chatkitty_url=sims.chatkitty_url,
            chatkitty_token_url=sims.chatkitty_token_url,
            kato_page_size=KATO_PAGE_SIZE,
            secrets=SECRETS,
        )
    )


async def upstream_requests(app: App, sims: SimStack) -> int:
    """Search and availability requests sent during one cycle of every source."""
    logs = (sims.kotohomes.requests, sims.kato.requests)
    before = [len(log) for log in logs]
    for source in list(app.pollers):
        assert (await app.poll(source)).ok
    sent = [r for log, start in zip(logs, before, strict=True) for r in log[start:]]
    return sum(1 for r in sent if r.path.startswith(("/v1/listings", "/v2/availability")))


async def test_upstream_requests_per_cycle_follow_distinct_queries_not_subscriptions(
    tmp_path: Path, clock: FakeClock
) -> None:
    """200 subscriptions cost 2 searches per distinct Kotohomes query plus one Kato sweep's
    pages, on the first cycle and on the next one."""
    raw = workload.subscriptions(200, seed=7, channels=CHANNELS)
    subs = workload.validated(raw)
    koto_queries = workload.distinct_queries(subs, "kotohomes")
    assert workload.distinct_queries(subs, "kato") == 1
    assert koto_queries < sum(1 for s in subs if s.source == "kotohomes")  # some share
    async with make_sims(clock, channels=channels()) as sims:

        def expected() -> int:
            return 2 * koto_queries + expected_kato_pages(
                len(sims.market.ids("kato")), KATO_PAGE_SIZE
            )

        async with running(config(sims, tmp_path, raw), clock) as app:
            assert await upstream_requests(app, sims) == expected()
            sims.market.advance(600)
            clock.advance(600)
            assert await upstream_requests(app, sims) == expected()


async def test_kato_subscriptions_share_one_sweep(tmp_path: Path, clock: FakeClock) -> None:
    """100 Kato subscriptions that differ only in local filters cost one sweep's pages."""
    raw = workload.subscriptions(100, seed=3, sources=("kato",), channels=CHANNELS)
    async with make_sims(clock, channels=channels()) as sims:
        pages = expected_kato_pages(len(sims.market.ids("kato")), KATO_PAGE_SIZE)
        async with running(config(sims, tmp_path, raw), clock) as app:
            assert await upstream_requests(app, sims) == pages


async def test_queued_messages_are_all_delivered_in_per_channel_order(
    tmp_path: Path, clock: FakeClock
) -> None:
    """200 messages queued over 5 channels all reach ChatKitty, once each, and each
    channel receives them in the order they were queued."""
    raw = workload.subscriptions(5, seed=1, channels=CHANNELS)
    queued = outbox_messages(200, workload.channel_ids(CHANNELS), seed=5)
    order = {m.key: i for i, m in enumerate(queued)}
    async with (
        make_sims(clock, channels=channels()) as sims,
        running(config(sims, tmp_path, raw), clock) as app,
    ):
        assert app.store is not None
        assert await app.store.record_poll(PollRecord("kotohomes", messages=queued)) == 200
        async with asyncio.timeout(30):
            while (await app.deliver()).pending:
                clock.advance(1)
    received = {c: [meta(m)["key"] for m in sims.chatkitty.messages[c]] for c, _, _ in channels()}
    keys = [key for per_channel in received.values() for key in per_channel]
    assert sorted(keys) == sorted(order)
    for per_channel in received.values():
        assert [order[k] for k in per_channel] == sorted(order[k] for k in per_channel)
