"""Delivery specs: the real Deliverer on a real Store (tmp_path) against the real ChatKitty
simulator on loopback, on a fake clock. Faults come from the simulator's switches and from
the world around the state file (another SQLite connection, another process), never from
patching listingbot."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from listingbot.clients.base import RetryPolicy
from listingbot.clients.chatkitty import ChatKittyClient
from listingbot.clock import FakeClock
from listingbot.config import DeliveryConfig
from listingbot.delivery import CLOCK_SKEW_MARGIN_S, Deliverer, DeliveryOutcome
from listingbot.errors import StateLocked
from listingbot.metrics import Metrics
from listingbot.records import OutboxRow, OutgoingMessage
from listingbot.sim import SimStack
from listingbot.store import PollRecord, StateLock, Store
from tests.harness import SECRETS, config_text, make_sims, meta, write_config

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

TIMEOUT_S = 0.3  # the client's request timeout (real seconds: the simulator holds requests)


@dataclass
class Bed:
    sims: SimStack
    clock: FakeClock
    store: Store
    chatkitty: ChatKittyClient
    metrics: Metrics
    deliverer: Deliverer
    path: Path
    queued: int = 0

    async def queue(self, channel: int = 702, n: int = 1) -> list[str]:
        """Queue ``n`` messages for ``channel``, as a poll would; returns their keys."""
        keys = [f"k-{channel}-{self.queued + i:04d}" for i in range(n)]
        self.queued += n
        await self.store.record_poll(
            PollRecord("kotohomes", messages=[message(key, channel) for key in keys])
        )
        return keys

    def rows(self) -> dict[str, OutboxRow]:
        return {row.message.key: row for row in self.store.all_rows_sync()}

    def posted(self, channel: int = 702) -> list[str]:
        """Delivery keys of the bot's messages in ``channel``, in channel order."""
        return [
            meta(m)["key"]
            for m in self.sims.chatkitty.messages.get(channel, [])
            if "listingbot" in (m.get("properties") or {})
        ]

    def chatter(self, channel: int, n: int, *, every_s: float = 1.0) -> None:
        """``n`` messages from people in ``channel``, ``every_s`` apart."""
        for i in range(n):
            self.clock.advance(every_s)
            self.sims.chatkitty.post_as(channel, "alice" if i % 2 else "bob", f"chat {i}")


def message(key: str, channel: int = 702) -> OutgoingMessage:
    return OutgoingMessage(
        key=key,
        channel_id=channel,
        source="kotohomes",
        listing_id=f"li_{key}",
        event="new",
        subscriptions=("sub-a",),
        body=f"New listing {key}",
        properties={"listingbot": {"key": key, "event": "new"}},
    )


def delivery_config(**overrides: Any) -> DeliveryConfig:
    settings: dict[str, Any] = {"backoff_base_s": 1.0, "backoff_max_s": 60.0}
    settings.update(overrides)
    return DeliveryConfig.model_validate(settings)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(sims: SimStack, session: aiohttp.ClientSession, clock: FakeClock) -> ChatKittyClient:
    return ChatKittyClient(
        api_url=sims.chatkitty_url,
        path_prefix=sims.chatkitty_prefix,
        token_url=sims.chatkitty_token_url,
        client_id=SecretStr(SECRETS["CHATKITTY_CLIENT_ID"]),
        client_secret=SecretStr(SECRETS["CHATKITTY_CLIENT_SECRET"]),
        session=session,
        clock=clock,
        timeout_s=TIMEOUT_S,
        retry=RetryPolicy(max_attempts=2),
    )


@pytest.fixture
async def bed(
    tmp_path: Path, clock: FakeClock, session: aiohttp.ClientSession
) -> AsyncIterator[Bed]:
    async with make_sims(clock) as sims:
        path = tmp_path / "state.sqlite3"
        store = await Store.open(path, clock.now, exclusive=True, busy_timeout_ms=50)
        ck = client(sims, session, clock)
        metrics = Metrics()
        deliverer = Deliverer(store, ck, clock, metrics, delivery_config())
        try:
            yield Bed(sims, clock, store, ck, metrics, deliverer, path)
        finally:
            await store.close()


async def stored_then_failed(bed: Bed, channel: int = 702) -> DeliveryOutcome:
    """One pass in which ChatKitty stores the message and then fails the answer."""
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_commit_then_fail=1.0)
    out = await bed.deliverer.run_pass()
    bed.sims.faults.clear()
    assert out.unknown == 1
    return out


# --------------------------------------------------------------------------- a pass


async def test_a_pass_posts_every_due_message_once_in_channel_order_and_marks_it_sent(
    bed: Bed,
) -> None:
    """One pass posts each queued message to its channel, in the order queued, and
    records it sent with ChatKitty's message id."""
    north, south = await bed.queue(702, 3), await bed.queue(703, 2)
    out = await bed.deliverer.run_pass()
    assert (out.sent, out.channels, out.pending) == (5, 2, 0)
    assert bed.posted(702) == north
    assert bed.posted(703) == south
    rows = bed.rows()
    assert {rows[k].state for k in north + south} == {"sent"}
    ids = {m["id"] for ch in (702, 703) for m in bed.sims.chatkitty.messages[ch]}
    assert {rows[k].message_id for k in north + south} == ids


async def test_a_second_pass_posts_nothing_again(bed: Bed) -> None:
    """Exactly once: a message sent by one pass is not sent by the next."""
    keys = await bed.queue(702, 2)
    await bed.deliverer.run_pass()
    out = await bed.deliverer.run_pass()
    assert out.sent == 0
    assert bed.posted() == keys


async def test_a_503_requeues_the_message_with_backoff_and_holds_its_channel_behind_it(
    bed: Bed,
) -> None:
    """ChatKitty answering 503 (it did not take the message): the row waits one jittered
    backoff, the messages after it wait too (channel order), and once due all go out."""
    keys = await bed.queue(702, 3)
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_503=1.0)
    out = await bed.deliverer.run_pass()
    bed.sims.faults.clear()
    assert (out.sent, out.retried) == (0, 1)
    first = bed.rows()[keys[0]]
    assert first.state == "pending"
    assert first.attempts == 1
    assert "503" in (first.last_error or "")
    assert (await bed.deliverer.run_pass()).sent == 0  # not due yet
    bed.clock.advance(60)
    assert (await bed.deliverer.run_pass()).sent == 3
    assert bed.posted() == keys


async def test_a_message_chatkitty_rejects_fails_alone_and_its_channel_goes_on(
    bed: Bed,
) -> None:
    """A 400 for one message (a blank body) fails that row with ChatKitty's reason; the
    messages after it in the channel are still posted in the same pass."""
    before = await bed.queue(702)
    await bed.store.record_poll(
        PollRecord("kotohomes", messages=[dataclasses.replace(message("blank"), body="   ")])
    )
    after = await bed.queue(702)
    out = await bed.deliverer.run_pass()
    assert (out.sent, out.failed) == (2, 1)
    assert bed.posted() == before + after
    row = bed.rows()["blank"]
    assert row.state == "failed"
    assert "blank" in (row.last_error or "")


async def test_a_channel_chatkitty_refuses_holds_only_its_own_messages(bed: Bed) -> None:
    """403 on one channel (the app lost access) requeues its rows; another channel's
    messages go out in the same pass."""
    await bed.queue(702, 2)
    other = await bed.queue(703, 2)
    bed.sims.chatkitty.denied_channels.add(702)
    out = await bed.deliverer.run_pass()
    assert (out.sent, out.retried) == (2, 1)
    assert bed.posted(703) == other
    assert bed.posted(702) == []
    assert {r.state for r in bed.rows().values() if r.message.channel_id == 702} == {"pending"}


async def test_a_stopped_deliverer_starts_no_new_pass(bed: Bed) -> None:
    """After stop() (shutdown), a pass sends nothing and leaves the rows queued."""
    await bed.queue(702, 2)
    bed.deliverer.stop()
    out = await bed.deliverer.run_pass()
    assert out.sent == 0
    assert bed.posted() == []
    assert {r.state for r in bed.rows().values()} == {"pending"}


class _StopOnStore(list[dict[str, Any]]):
    """A channel's message list that asks the deliverer to stop the moment ChatKitty
    stores the first message in it (a shutdown arriving mid-channel)."""

    def __init__(self, items: list[dict[str, Any]], deliverer: Deliverer) -> None:
        super().__init__(items)
        self.deliverer = deliverer

    def append(self, item: dict[str, Any]) -> None:
        super().append(item)
        self.deliverer.stop()


async def test_a_stop_mid_channel_leaves_the_rows_not_posted_pending_not_claimed(
    bed: Bed,
) -> None:
    """A shutdown between two rows of a channel leaves every row not posted pending, as
    before its claim (nothing of unknown outcome to reconcile), and the next service
    posts them at once, in order."""
    keys = await bed.queue(702, 3)
    bed.sims.chatkitty.messages[702] = _StopOnStore(bed.sims.chatkitty.messages[702], bed.deliverer)
    out = await bed.deliverer.run_pass()
    assert (out.sent, bed.posted(702)) == (1, keys[:1])
    rows = bed.rows()
    assert [(rows[k].state, rows[k].attempts) for k in keys[1:]] == [("pending", 0)] * 2
    after = Deliverer(bed.store, bed.chatkitty, bed.clock, bed.metrics, delivery_config())
    again = await after.run_pass()
    assert (again.sent, again.reconciled_requeued, again.unknown) == (2, 0, 0)
    assert bed.posted(702) == keys


async def test_configure_applies_new_settings_to_the_next_pass(bed: Bed) -> None:
    """configure() (a reload) is how settings change: a lower give_up_after fails an old
    message refused on the next pass instead of retrying it."""
    (key,) = await bed.queue()
    bed.clock.advance(2 * 3600)
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_429=1.0)
    assert (await bed.deliverer.run_pass()).retried == 1
    bed.deliverer.configure(delivery_config(give_up_after=timedelta(hours=1)))
    bed.clock.advance(120)
    out = await bed.deliverer.run_pass()
    assert out.failed == 1
    assert "give_up_after" in (bed.rows()[key].last_error or "")


async def test_the_sent_counter_counts_each_posted_message(bed: Bed) -> None:
    """listingbot_messages_sent_total grows by the messages a pass posted."""
    await bed.queue(702, 3)
    await bed.deliverer.run_pass()
    sent = bed.metrics.registry.get_sample_value("listingbot_messages_sent_total")
    assert sent == 3


# --------------------------------------------------------------------------- claims (defect 2)


async def test_two_deliverers_on_one_file_post_each_message_once(
    bed: Bed, session: aiohttp.ClientSession
) -> None:
    """Claims are compare-and-set: two delivery passes racing on one file (the lock
    bypassed) never send a row twice; the loser of a claim skips it."""
    keys = [*(await bed.queue(702, 20)), *(await bed.queue(703, 20))]
    other_store = await Store.open(bed.path, bed.clock.now)  # not exclusive: the backstop
    try:
        other = Deliverer(
            other_store,
            client(bed.sims, session, bed.clock),
            bed.clock,
            Metrics(),
            bed.deliverer.config,
        )
        bed.sims.faults.enabled_for = {"chatkitty"}
        bed.sims.faults.set(rate_slow=1.0, slow_s=0.01)
        first, second = await asyncio.gather(bed.deliverer.run_pass(), other.run_pass())
    finally:
        await other_store.close()
    posted = Counter(bed.posted(702) + bed.posted(703))
    assert [k for k, n in posted.items() if n > 1] == []
    assert first.sent + second.sent == len(keys)
    assert set(posted) == set(keys)


async def test_second_service_on_the_state_file_is_refused_naming_the_holder(
    bed: Bed,
) -> None:
    """Opening a held state file for service work fails with StateLocked: who, since when."""
    with pytest.raises(StateLocked) as refused:
        await Store.open(bed.path, bed.clock.now, exclusive=True)
    text = str(refused.value)
    assert f"process {os.getpid()}" in text
    assert "since 2026-01-01T12:00:00" in text
    assert "--wait-lock" in text


async def test_wait_lock_waits_on_the_injected_clock_then_refuses(bed: Bed) -> None:
    """--wait-lock N: the lock is tried again on the clock for N seconds, then refused."""
    waiter = FakeClock(bed.clock.now())
    with pytest.raises(StateLocked, match=r"waited 3s"):
        await Store.open(bed.path, waiter.now, exclusive=True, wait_lock_s=3, sleep=waiter.sleep)
    assert sum(waiter.sleeps) == pytest.approx(3.0)
    assert len(waiter.sleeps) == 3 / StateLock.POLL_S


async def test_wait_lock_gets_the_lock_once_the_holder_lets_go(tmp_path: Path) -> None:
    """A waiting process takes the lock as soon as the holder releases it."""
    path = tmp_path / "state.sqlite3"
    clock = FakeClock()
    holder = StateLock(path)
    assert holder.try_acquire(clock.now())

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.monotonic() >= 1.0:
            holder.release()  # the other process exits a second into the wait

    store = await Store.open(path, clock.now, exclusive=True, wait_lock_s=60, sleep=sleep)
    try:
        assert store.lock is not None
        assert store.lock.held
        assert sum(clock.sleeps) == pytest.approx(1.0)
    finally:
        await store.close()


def _cli(config: Path, *args: str) -> tuple[int, str]:
    """Run the real listingbot entry point as another process."""
    import subprocess  # noqa: PLC0415 - only this helper starts processes

    done = subprocess.run(
        [sys.executable, "-m", "listingbot.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, **SECRETS},
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


async def test_another_process_refuses_a_held_state_file_with_exit_2(bed: Bed) -> None:
    """`listingbot once` started beside the holder exits 2 naming it; read-only and outbox
    commands still work beside it."""
    text = config_text(
        bed.sims,
        "- name: ny\n  source: kotohomes\n  channel: 702\n  filters: {zip_codes: ['10001']}\n",
        state_path=bed.path,
        sources=("kotohomes",),
    )
    config = write_config(bed.path.parent, text)
    code, out = await asyncio.to_thread(_cli, config, "once")
    assert code == 2, out
    assert f"is in use by process {os.getpid()} since 2026-01-01T12:00:00" in out
    code, out = await asyncio.to_thread(_cli, config, "once", "--wait-lock", "0.5")
    assert code == 2, out
    assert "(waited 0.5s)" in out
    code, out = await asyncio.to_thread(_cli, config, "outbox", "list")
    assert code == 0, out
    assert bed.sims.chatkitty.messages[702] == []


# ----------------------------------------------------------------- reconciliation by time (3)


async def test_reconciliation_finds_its_message_behind_300_messages_of_chatter(bed: Bed) -> None:
    """Reconciliation pages back by time, not by count: 300 people's messages posted after
    the bot's do not hide it, and nothing is sent twice."""
    (key,) = await bed.queue()
    await stored_then_failed(bed)
    bed.chatter(702, 300)
    out = await bed.deliverer.run_pass()
    assert out.reconciled_sent == 1
    assert bed.posted() == [key]
    assert bed.rows()[key].state == "sent"


async def test_reconciliation_that_cannot_reach_the_claim_time_leaves_the_outcome_unknown(
    bed: Bed,
) -> None:
    """When the lookback cap stops the search before the claim time, the row stays
    `sending` (searched again later), never taken as "not found"."""
    bed.deliverer.configure(delivery_config(reconcile_lookback=100))
    (key,) = await bed.queue()
    await stored_then_failed(bed)
    bed.sims.chatkitty.messages[702].clear()  # (the bot's message was lost on ChatKitty's side)
    bed.chatter(702, 300)
    out = await bed.deliverer.run_pass()
    assert (out.reconciled_sent, out.reconciled_requeued, out.sent) == (0, 0, 0)
    assert out.reconcile_incomplete == 1
    assert bed.rows()[key].state == "sending"


async def test_reconciliation_with_a_failing_page_leaves_the_outcome_unknown(bed: Bed) -> None:
    """A message page that fails mid-search concludes nothing: the row stays `sending`."""
    (key,) = await bed.queue()
    await stored_then_failed(bed)
    bed.sims.chatkitty.messages[702].clear()
    bed.clock.advance(600)
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_500=1.0)
    out = await bed.deliverer.run_pass()
    assert (out.reconciled_requeued, out.sent) == (0, 0)
    assert bed.rows()[key].state == "sending"


async def test_reconciliation_concludes_not_sent_once_it_reaches_older_messages(
    bed: Bed,
) -> None:
    """A key absent back to before the claim (minus the skew margin) is sent again, once."""
    bed.chatter(702, 5, every_s=CLOCK_SKEW_MARGIN_S)  # older than the claim by far
    (key,) = await bed.queue()
    await stored_then_failed(bed)
    bed.sims.chatkitty.messages[702][:] = [
        m for m in bed.sims.chatkitty.messages[702] if "listingbot" not in m["properties"]
    ]
    bed.chatter(702, 200)
    bed.clock.advance(120)
    out = await bed.deliverer.run_pass()
    assert (out.reconciled_requeued, out.sent) == (1, 1)
    assert bed.posted() == [key]


# --------------------------------------------------------------------------- late store (4)


async def test_a_send_stored_after_the_client_timed_out_is_not_sent_twice(bed: Bed) -> None:
    """ChatKitty stores a message after the client gave up: until the request timeout plus
    late_store_margin_s has passed since the claim, "not found" does not mean "not sent"."""
    (key,) = await bed.queue()
    await bed.chatkitty.list_channels()  # holds a token: the late request is the send
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_store_late=1.0, store_late_s=TIMEOUT_S * 3)
    first = await bed.deliverer.run_pass()
    bed.sims.faults.clear()
    assert first.unknown == 1
    bed.clock.advance(5)  # well past the backoff, well inside the late-store window
    early = await bed.deliverer.run_pass()
    assert (early.reconciled_requeued, early.sent) == (0, 0)
    await bed.sims.faults.settle()  # the slow server finishes the first request
    bed.clock.advance(120)
    late = await bed.deliverer.run_pass()
    assert late.reconciled_sent == 1
    assert bed.posted() == [key]


# --------------------------------------------------------------------------- supervision (5)


class _LockOnStore(list[dict[str, Any]]):
    """A channel's message list that, the moment ChatKitty stores a message in it, has
    another program take the state file's write lock (as a backup or a second tool
    would), so the service's next writes fail."""

    def __init__(self, items: list[dict[str, Any]], path: Path) -> None:
        super().__init__(items)
        self.path = path
        self.holder: sqlite3.Connection | None = None

    def append(self, item: dict[str, Any]) -> None:
        super().append(item)
        if self.holder is None:
            self.holder = sqlite3.connect(self.path, isolation_level=None)
            self.holder.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()


async def test_a_store_error_stops_its_channel_and_the_pass_waits_for_every_worker(
    bed: Bed,
) -> None:
    """A write the state file refuses is handled per row: the pass returns an outcome (no
    exception), no channel worker outlives it, the row stays `sending`; the next pass
    reconciles and nothing is posted twice."""
    keys = {ch: await bed.queue(ch, 10) for ch in (702, 703, 704)}
    wire = _LockOnStore(bed.sims.chatkitty.messages[702], bed.path)
    bed.sims.chatkitty.messages[702] = wire
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_slow=1.0, slow_s=0.005)
    out = await bed.deliverer.run_pass()
    requests = len(bed.sims.chatkitty.requests)
    await asyncio.sleep(0.2)  # an orphaned worker would go on sending meanwhile
    assert len(bed.sims.chatkitty.requests) == requests
    assert out.store_errors >= 1
    wire.release()
    bed.sims.faults.clear()
    assert bed.rows()[bed.posted(702)[-1]].state == "sending"
    bed.clock.advance(120)
    again = await bed.deliverer.run_pass()
    assert again.store_errors == 0
    for channel, expected in keys.items():
        assert bed.posted(channel) == expected
    assert {row.state for row in bed.rows().values()} == {"sent"}


# --------------------------------------------------------------------------- refusals (9)


async def test_forty_minutes_of_429_use_up_nothing_and_keep_channel_order(bed: Bed) -> None:
    """Refusals are not failed attempts: after 40 min of 429s the message is still queued,
    the one after it does not overtake it, and both go out in order when 429s stop."""
    (first,) = await bed.queue()
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_429=1.0)
    for _ in range(80):
        bed.clock.advance(30)
        await bed.deliverer.run_pass()
    (second,) = await bed.queue()
    for _ in range(4):
        bed.clock.advance(30)
        await bed.deliverer.run_pass()
    assert bed.rows()[first].state == "pending"
    assert bed.posted() == []
    bed.sims.faults.clear()
    for _ in range(3):
        bed.clock.advance(60)
        await bed.deliverer.run_pass()
    assert bed.posted() == [first, second]


async def test_a_message_refused_past_give_up_after_fails_and_stays_listed(bed: Bed) -> None:
    """Give-up is by age: refused for longer than give_up_after, the row fails with its
    reason and stays until an operator acts; prune does not remove it."""
    bed.deliverer.configure(delivery_config(give_up_after=timedelta(hours=2)))
    (key,) = await bed.queue()
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_429=1.0)
    for _ in range(150):
        bed.clock.advance(60)
        await bed.deliverer.run_pass()
    row = bed.rows()[key]
    assert row.state == "failed"
    assert "(delivery.give_up_after)" in (row.last_error or "")
    assert "HTTP 429" in (row.last_error or "")
    await bed.store.prune(bed.clock.now() + timedelta(days=1))
    assert bed.rows()[key].state == "failed"
    assert (await bed.store.outbox_health()).failed == 1


async def test_retry_after_is_capped_at_backoff_max(bed: Bed) -> None:
    """A Retry-After of an hour waits at most backoff_max_s before asking again."""
    (key,) = await bed.queue()
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_429=1.0, retry_after_s=3600)
    for _ in range(6):  # half the 429s carry the header: see both kinds
        bed.clock.advance(61)
        await bed.deliverer.run_pass()
        wait = (bed.rows()[key].next_attempt_at - bed.clock.now()).total_seconds()
        assert wait <= 60.0


# ----------------------------------------------------------------- permanent answers (11)


@pytest.mark.parametrize("how", ["deleted", "denied"])
async def test_a_row_of_unknown_outcome_in_a_channel_that_cannot_be_read_fails(
    bed: Bed, how: str
) -> None:
    """Reconciliation that gets a permanent answer (404 deleted, 403 denied) fails the row
    with its reason instead of leaving it `sending` forever."""
    (key,) = await bed.queue()
    await stored_then_failed(bed)
    if how == "deleted":
        bed.sims.chatkitty.remove_channel(702)
    else:
        bed.sims.chatkitty.denied_channels.add(702)
    bed.clock.advance(120)
    out = await bed.deliverer.run_pass()
    row = bed.rows()[key]
    assert out.failed == 1
    assert row.state == "failed"
    assert "cannot be searched" in (row.last_error or "")
    assert ("404" if how == "deleted" else "403") in (row.last_error or "")
    assert row.may_be_sent


async def test_retrying_a_row_that_may_have_been_posted_searches_before_sending(
    bed: Bed,
) -> None:
    """`outbox retry KEY` on a row whose send may have landed re-checks the channel first:
    found there, it is marked sent without a second copy."""
    (key,) = await bed.queue()
    await stored_then_failed(bed)
    bed.sims.chatkitty.denied_channels.add(702)
    bed.clock.advance(120)
    await bed.deliverer.run_pass()
    bed.sims.chatkitty.denied_channels.clear()
    assert bed.store.retry_sync(key)
    assert bed.rows()[key].state == "sending"
    out = await bed.deliverer.run_pass()
    assert out.reconciled_sent == 1
    assert bed.posted() == [key]


# --------------------------------------------------------------------------- clock steps (12)


async def test_clock_stepped_back_does_not_hold_the_channel(bed: Bed) -> None:
    """A due time further ahead than the longest possible wait counts as due now: after a
    2 h step back the next pass delivers."""
    (key,) = await bed.queue()
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_429=1.0)
    await bed.deliverer.run_pass()
    bed.sims.faults.clear()
    bed.clock.advance(-2 * 3600)
    out = await bed.deliverer.run_pass()
    assert out.sent == 1
    assert bed.posted() == [key]


async def test_a_negative_outbox_age_is_reported_not_clamped(bed: Bed) -> None:
    """When the clock steps back past the oldest queued message its age is negative in the
    pass outcome and the metric, not hidden as 0."""
    await bed.queue()
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_429=1.0)
    bed.clock.advance(-3600)
    out = await bed.deliverer.run_pass()
    (row,) = bed.rows().values()
    age = (bed.clock.now() - row.created_at).total_seconds()
    assert age < -3000
    assert out.oldest_age_s == pytest.approx(age)
    assert f"listingbot_outbox_oldest_pending_age_seconds {age}" in bed.metrics.render().decode()


# --------------------------------------------------------------------------- backlog


async def test_a_backlog_of_300_in_one_channel_drains_in_one_pass_in_order(bed: Bed) -> None:
    """A pass goes on while rows are due and ChatKitty accepts them (not 50 per interval)."""
    keys = await bed.queue(702, 300)
    out = await bed.deliverer.run_pass()
    assert out.sent == 300
    assert bed.posted() == keys


# --------------------------------------------------------------------------- outbox commands (11)


async def test_outbox_list_retry_and_drop_from_the_command_line(
    bed: Bed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`outbox list --state failed` shows the failed row with its reason; `retry KEY` and
    `drop KEY` act on it (exit 0) and refuse unknown keys or rows in another state (exit 1),
    all beside the process holding the state file."""
    from listingbot import cli  # noqa: PLC0415

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    text = config_text(
        bed.sims,
        "- name: ny\n  source: kotohomes\n  channel: 702\n  filters: {zip_codes: ['10001']}\n",
        state_path=bed.path,
        sources=("kotohomes",),
    )
    config = str(write_config(bed.path.parent, text))
    first, second = await bed.queue(702, 2)
    bed.sims.chatkitty.remove_channel(702)
    await bed.deliverer.run_pass()  # 404 on send: both fail with the reason
    capsys.readouterr()
    assert cli.main(["outbox", "list", "--state", "failed", "--config", config]) == 0
    out = capsys.readouterr().out
    assert out.startswith("outbox: pending 0 · sending 0 · sent 0 · failed 2 · dropped 0\n")
    assert f"{first}\n  failed · channel 702 · new · kotohomes li_{first} · 1 send(s)" in out
    assert "last error: chatkitty:" in out
    assert "404" in out
    assert cli.main(["outbox", "retry", first, "--config", config]) == 0
    assert "queued again" in capsys.readouterr().out
    assert bed.rows()[first].state == "pending"
    assert cli.main(["outbox", "drop", second, "--config", config]) == 0
    assert capsys.readouterr().out == f"{second}: dropped; it will not be sent\n"
    assert cli.main(["outbox", "drop", second, "--config", config]) == 1
    assert "not changed: it was dropped" in capsys.readouterr().out
    assert cli.main(["outbox", "retry", "no-such-key", "--config", config]) == 1
    assert "no outbox message with key 'no-such-key'" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        cli.main(["outbox", "list", "--state", "lost", "--config", config])
    assert usage.value.code == 2


async def test_readiness_shows_a_clock_step_back_and_stays_red_while_a_message_is_failed(
    tmp_path: Path, clock: FakeClock
) -> None:
    """/readyz: a negative outbox age appears as a detail (not hidden as 0); a failed
    message keeps readiness red, naming the outbox commands, until an operator acts."""
    from tests.harness import load, running  # noqa: PLC0415

    async with make_sims(clock) as sims:
        sub = "- name: ny\n  source: kotohomes\n  channel: 702\n  filters: {zip_codes: ['10001']}\n"
        text = config_text(sims, sub, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",))
        async with running(load(tmp_path, text), clock) as app:
            assert app.store is not None
            await app.store.record_poll(PollRecord("kotohomes", messages=[message("k1")]))
            sims.faults.enabled_for = {"chatkitty"}
            sims.faults.set(rate_429=1.0)
            clock.advance(-3600)
            await app.deliver()
            _ready, checks = await app.readiness()
            assert checks["outbox"]["oldest_age_s"] < -3000
            assert "the clock stepped back" in checks["outbox"]["detail"]
            sims.faults.clear()
            sims.chatkitty.remove_channel(702)
            clock.advance(120)  # past the 429's backoff
            await app.deliver()
            ready, checks = await app.readiness()
            assert not ready
            assert checks["outbox"]["failed"] == 1
            assert "listingbot outbox list --state failed" in checks["outbox"]["error"]
            assert app.store.drop_sync("k1")
            _ready, checks = await app.readiness()
            assert checks["outbox"]["ok"]
