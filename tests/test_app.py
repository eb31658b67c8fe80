"""End to end: the real app against the simulators, one `once` cycle at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from listingbot.app import App
from listingbot.cli import run_once
from listingbot.clock import FakeClock
from listingbot.sim import SimStack
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

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

NY_SUB = f"""\
- name: ny-homes
  source: kotohomes
  channel: 702
  filters: {{states: [NY], zip_codes: {zips("NY")}}}
"""

UK_SUB = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
"""


def cfg(sims: SimStack, tmp_path: Path, subs: str = NY_SUB + UK_SUB, **kw: object) -> str:
    return config_text(sims, subs, state_path=tmp_path / "state.sqlite3", **kw)  # type: ignore[arg-type]


def ny_listing_ids(sims: SimStack) -> list[str]:
    return [r["id"] for r in sims.market.kotohomes_records() if r.get("state") == "NY"]


async def test_first_run_under_baseline_posts_nothing(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A subscription's first poll records what matches and posts nothing."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app:
        assert await app.once()
        assert app.totals.listings > 0
    assert sum(len(m) for m in sims.chatkitty.messages.values()) == 0


async def test_first_run_post_posts_current_matches(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """`first_run: post` announces what matches on the first poll."""
    subs = NY_SUB + "  first_run: post\n"
    async with running(
        load(tmp_path, cfg(sims, tmp_path, subs, sources=("kotohomes",))), clock
    ) as app:
        assert await app.once()
    posted = {meta(m)["listing_id"] for m in messages(sims, 702)}
    assert posted
    assert posted <= set(ny_listing_ids(sims))


async def test_new_listing_is_posted_once_to_its_channel(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A listing that appears after the baseline is posted once, to its subscription's channel."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        record = sims.market.add_kotohomes(state="NY", price=450_000)
        assert await app.once()
    (message,) = messages(sims, 702)
    assert meta(message) == {
        "key": meta(message)["key"],
        "event": "new",
        "events": ["new"],
        "source": "kotohomes",
        "listing_id": record["id"],
        "subscriptions": ["ny-homes"],
    }
    assert "New listing" in message["body"]
    assert "$450,000" in message["body"]
    assert message["properties"]["listing"]["id"] == record["id"]
    assert messages(sims, 704) == []


async def test_running_once_again_posts_nothing(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """With no market change, another cycle (even from a fresh process) posts nothing new."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        sims.market.add_kotohomes(state="NY")
        await app.once()
    async with running(config, clock) as app:
        assert await app.once()
        assert await app.once()
    assert len(messages(sims, 702)) == 1


async def test_price_drop_is_posted_once_with_old_and_new_price(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A price drop on a known listing is posted once, showing old → new."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        record = sims.market.add_kotohomes(state="NY", price=600_000)
        await app.once()
        clock.advance(60)
        sims.market.now = clock.now()
        sims.market.update_kotohomes(record["id"], price=550_000)
        assert await app.once()
        assert await app.once()
    drops = [m for m in messages(sims, 702) if meta(m)["event"] == "price_drop"]
    assert len(drops) == 1
    assert "$600,000 → $550,000" in drops[0]["body"]


async def test_status_change_is_posted_with_old_and_new_status(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A status change on a known listing is posted as old → new."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        record = sims.market.add_kotohomes(state="NY", status="active")
        await app.once()
        sims.market.update_kotohomes(record["id"], status="pending")
        assert await app.once()
    (change,) = [m for m in messages(sims, 702) if meta(m)["event"] == "status_change"]
    assert "Active → Pending" in change["body"]


async def test_two_subscriptions_in_one_channel_get_one_message_naming_both(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """One message per (channel, listing, event), naming every subscription that matched."""
    subs = NY_SUB + (
        "- name: ny-cheap\n  source: kotohomes\n  channel: nyc-homes\n"
        f"  filters: {{states: [NY], zip_codes: {zips('NY')}, price_max: 500000}}\n"
    )
    config = load(tmp_path, cfg(sims, tmp_path, subs, sources=("kotohomes",)))
    async with running(config, clock) as app:
        await app.once()
        record = sims.market.add_kotohomes(state="NY", price=400_000)
        assert await app.once()
    (message,) = messages(sims, 702)
    assert meta(message)["listing_id"] == record["id"]
    assert meta(message)["subscriptions"] == ["ny-cheap", "ny-homes"]
    assert "ny-cheap, ny-homes" in message["body"]


async def test_identical_queries_are_fetched_once(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Subscriptions with the same upstream filters share one query (two requests)."""
    subs = "".join(
        f"- name: s{i}\n  source: kotohomes\n  channel: 702\n"
        f"  filters: {{states: [NY], zip_codes: {zips('NY')}}}\n"
        f"  notify: [new]\n"
        for i in range(5)
    )
    config = load(tmp_path, cfg(sims, tmp_path, subs, sources=("kotohomes",)))
    async with running(config, clock) as app:
        await app.once()
    listing_requests = [r for r in sims.kotohomes.requests if r.path == "/v1/listings"]
    assert len(listing_requests) == 2


async def test_expired_kato_token_is_refreshed_and_request_replayed(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A 401 for an expired token fetches one new token and the poll still succeeds."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        assert await app.once()
        assert sims.kato.tokens_issued == 1
        sims.kato.expire_tokens()
        record = sims.market.add_kato(to_let=True)
        assert await app.once()
    assert sims.kato.tokens_issued == 2
    assert [meta(m)["listing_id"] for m in messages(sims, 704)] == [str(record["id"])]


async def test_expired_chatkitty_token_is_refreshed_and_send_replayed(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A ChatKitty 401 mid-run refreshes the token once and the message still goes out."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        tokens = sims.chatkitty.tokens_issued
        sims.chatkitty.expire_tokens()
        sims.market.add_kotohomes(state="NY")
        assert await app.once()
    assert sims.chatkitty.tokens_issued == tokens + 1
    assert len(messages(sims, 702)) == 1


async def once_against_a_throttling_kato(
    tmp_path: Path, clock: FakeClock
) -> tuple[list[int | None], float]:
    """One `once` where the service may send more than Kato accepts, so Kato answers 429.

    Returns the statuses Kato sent and the seconds the app counted as rate-limit wait.
    """
    async with make_sims(clock, kato_rpm=4) as sims:
        text = cfg(
            sims,
            tmp_path,
            UK_SUB,
            sources=("kato",),
            kato="requests_per_minute: 600\npage_size: 5\n",
        )
        async with running(load(tmp_path, text), clock) as app:
            assert await app.once()
            waited = sample(app, "listingbot_rate_limit_wait_seconds_total", api="kato")
        return [r.status for r in sims.kato.requests], waited


async def test_kato_429_with_retry_after_is_waited_out(tmp_path: Path, clock: FakeClock) -> None:
    """When Kato answers 429 with Retry-After, the client waits that long and carries on."""
    statuses, _waited = await once_against_a_throttling_kato(tmp_path, clock)
    assert 429 in statuses
    assert statuses[-1] == 200
    # Every 429 was answered with a Retry-After the client honoured on the fake clock.
    assert any(wait >= 1 for wait in clock.sleeps)


async def test_kotohomes_403_stops_that_source_loudly_while_kato_works(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """A refused Kotohomes key fails that source with a loud error; Kato still delivers."""
    config = load(tmp_path, cfg(sims, tmp_path))
    sims.kotohomes.api_keys = {"some-other-key"}
    async with running(config, clock) as app:
        assert not await app.once()
        record = sims.market.add_kato()
        assert not await app.once()
        ready, checks = await app.readiness()
    assert not ready
    assert "refused the API key" in checks["source:kotohomes"]["error"]
    assert [meta(m)["listing_id"] for m in messages(sims, 704)] == [str(record["id"])]
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    stopped = [e for e in events if e["event"] == "source_stopped"]
    assert stopped
    assert stopped[0]["level"] == "error"
    # Stopped means stopped: no further Kotohomes requests after the first refusal.
    assert sum(1 for r in sims.kotohomes.requests if r.status == 403) == 1


async def test_a_malformed_field_costs_the_field_not_the_record(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """bedrooms "three": the listing is posted without a bedroom count, the field is
    counted as dropped, nothing is skipped."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        odd = sims.market.add_kotohomes(state="NY", bedrooms="three", price=300_000)
        good = sims.market.add_kotohomes(state="NY", price=310_000)
        assert await app.once()
        skipped = sample(app, "listingbot_records_skipped_total", source="kotohomes")
        dropped = sample(
            app, "listingbot_record_fields_dropped_total", source="kotohomes", field="bedrooms"
        )
    posted = {meta(m)["listing_id"]: m for m in messages(sims, 702)}
    assert sorted(posted) == sorted([odd["id"], good["id"]])
    assert "three" not in posted[odd["id"]]["body"]
    assert (skipped, dropped) == (0, 1)


async def test_ambiguous_send_failure_is_reconciled_without_a_duplicate(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """ChatKitty stores a message then fails: the retry finds it in the channel, no resend."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        sims.market.add_kotohomes(state="NY")
        sims.faults.enabled_for = {"chatkitty"}
        sims.faults.set(rate_commit_then_fail=1.0)
        assert await app.once()
        assert app.store is not None
        rows = app.store.all_rows_sync()
        found = sample(app, "listingbot_messages_reconciled_total", result="already_sent")
    assert len(messages(sims, 702)) == 1
    assert [r.state for r in rows] == ["sent"]
    assert found == 1


async def test_transient_send_failure_is_retried_within_once(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A refused send (ChatKitty down for a moment) is retried on backoff before `once` ends."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        sims.market.add_kotohomes(state="NY")
        sims.faults.enabled_for = {"chatkitty"}
        sims.faults.set(rate_503=1.0)
        assert not await app.once()
        sims.faults.clear()
        assert await app.once()
    assert len(messages(sims, 702)) == 1


async def test_permanent_failure_is_recorded_and_does_not_block_other_channels(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A channel that disappeared fails its message with the reason; others still deliver."""
    subs = NY_SUB + (
        "- name: ca-homes\n  source: kotohomes\n  channel: 703\n"
        f"  filters: {{states: [CA], zip_codes: {zips('CA')}}}\n"
    )
    config = load(tmp_path, cfg(sims, tmp_path, subs, sources=("kotohomes",)))
    async with running(config, clock) as app:
        await app.once()
        sims.chatkitty.remove_channel(703)
        sims.market.add_kotohomes(state="CA")
        ny = sims.market.add_kotohomes(state="NY")
        assert not await app.once()
        assert app.store is not None
        failed = [r for r in app.store.all_rows_sync() if r.state == "failed"]
    assert [meta(m)["listing_id"] for m in messages(sims, 702)] == [ny["id"]]
    (row,) = failed
    assert row.message.channel_id == 703
    assert "404" in (row.last_error or "") or "not found" in (row.last_error or "").lower()


async def test_dry_run_prints_messages_and_changes_nothing(
    sims: SimStack, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """`once --dry-run` prints what it would post and writes no state, sends nothing."""
    subs = NY_SUB + "  first_run: post\n"
    config = load(tmp_path, cfg(sims, tmp_path, subs, sources=("kotohomes",)))
    app = App(config, clock=clock)
    await app.start(dry_run=True)
    try:
        assert await run_once(app, dry_run=True)
    finally:
        await app.close()
    out = capsys.readouterr().out
    assert "New listing" in out
    assert sims.chatkitty.messages.get(702, []) == []
    store = Store.open_sync(config.state.path, clock.now)
    try:
        assert store.counts_sync() == {
            "listings": 0,
            "matches": 0,
            "channel_listings": 0,
            "subscriptions": 0,
            "cursors": 0,
            "outbox": 0,
        }
    finally:
        store.close_sync()


async def test_time_waiting_out_a_429_is_counted_as_rate_limit_wait(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Seconds spent honouring Kato's Retry-After show up in the rate-limit wait metric."""
    _statuses, waited = await once_against_a_throttling_kato(tmp_path, clock)
    assert waited >= 1


async def test_message_refused_past_give_up_after_is_marked_failed_with_its_reason(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A message refused for longer than delivery.give_up_after is failed, not retried forever."""
    text = cfg(sims, tmp_path, extra="delivery:\n  give_up_after: 1h\n  backoff_max_s: 60\n")
    async with running(load(tmp_path, text), clock) as app:
        await app.once()
        sims.market.add_kotohomes(state="NY")
        sims.faults.enabled_for = {"chatkitty"}
        sims.faults.set(rate_429=1.0)
        assert not await app.once()
        for _ in range(70):  # a 429 without Retry-After waits up to a minute: let time pass
            clock.advance(60)
            await app.deliver()
        assert app.store is not None
        (row,) = app.store.all_rows_sync()
        ready, checks = await app.readiness()
    assert row.state == "failed"
    assert (row.last_error or "").startswith("gave up after 6")  # 60-ish min
    assert "delivery.give_up_after" in (row.last_error or "")
    assert messages(sims, 702) == []
    assert not ready
    assert checks["outbox"]["failed"] == 1
