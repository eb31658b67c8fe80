"""End to end: burst digests and labels (issue 13) against the simulators.

One poll yielding more than ``messages.digest_over`` messages for a channel posts one
digest instead; the listings it covers count as told.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from listingbot.clock import FakeClock
from listingbot.sim import SimStack
from tests.harness import config_text, load, messages, meta, running, sample, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

NY = f"{{states: [NY], zip_codes: {zips('NY')}}}"


def sub(name: str = "ny-homes", extra: str = "", channel: int = 702) -> str:
    return f"- name: {name}\n  source: kotohomes\n  channel: {channel}\n  filters: {NY}\n" + extra


def cfg(sims: SimStack, tmp_path: Path, subs: str, **kwargs: Any) -> str:
    return config_text(
        sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",), **kwargs
    )


def ny_ids(sims: SimStack) -> list[str]:
    return [str(r["id"]) for r in sims.market.kotohomes_records() if r.get("state") == "NY"]


def add_ny(sims: SimStack, count: int) -> list[str]:
    return [str(sims.market.add_kotohomes(state="NY")["id"]) for _ in range(count)]


async def test_a_burst_over_digest_over_posts_one_digest(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """More than `digest_over` messages for a channel from one poll: one digest, whose
    properties list every listing it stands for, in order, with its key."""
    async with running(load(tmp_path, cfg(sims, tmp_path, sub(), digest_over=3)), clock) as app:
        assert await app.once()  # baseline
        added = add_ny(sims, 5)
        assert await app.once()
    (digest,) = messages(sims, 702)
    info = meta(digest)
    assert (info["event"], info["reason"], info["count"]) == ("digest", "burst", 5)
    assert [i["listing_id"] for i in info["items"]] == added
    assert {i["event"] for i in info["items"]} == {"new"}
    assert all(i["source"] == "kotohomes" and i["key"] for i in info["items"])
    assert digest["body"].startswith("🗞 5 updates · ny-homes\n5 new\n")


async def test_beside_a_burst_another_channel_reads_each_message_in_full(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The same poll digests one channel's burst and posts another channel's messages
    (its subscription allows more) each as its whole text, not as a digest line."""
    subs = sub() + sub("ny-watch", "  digest_over: 10\n", channel=703)
    async with running(load(tmp_path, cfg(sims, tmp_path, subs, digest_over=3)), clock) as app:
        assert await app.once()
        added = add_ny(sims, 5)
        assert await app.once()
    (digest,) = messages(sims, 702)
    assert meta(digest)["count"] == 5
    posted = messages(sims, 703)
    assert [meta(m)["listing_id"] for m in posted] == added
    for message, listing_id in zip(posted, added, strict=True):
        lines = message["body"].split("\n")
        assert lines[0] == "🏠 New listing · ny-watch"
        assert f"https://www.kotohomes.com/listings/{listing_id}" in lines
        assert len(lines) >= 4  # the figures and the address between them


async def test_digests_are_counted_in_the_metrics(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A burst digest counts once in `listingbot_digests_total`, and the messages it told
    in `listingbot_messages_digested_total`."""
    async with running(load(tmp_path, cfg(sims, tmp_path, sub(), digest_over=3)), clock) as app:
        assert await app.once()
        add_ny(sims, 5)
        assert await app.once()
        labels = {"source": "kotohomes", "reason": "burst"}
        counted = (
            sample(app, "listingbot_digests_total", **labels),
            sample(app, "listingbot_messages_digested_total", **labels),
        )
    assert counted == (1, 5)


async def test_a_poll_at_the_limit_posts_each_message(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Exactly `digest_over` messages are not a burst: each is posted as itself."""
    async with running(load(tmp_path, cfg(sims, tmp_path, sub(), digest_over=3)), clock) as app:
        assert await app.once()
        added = add_ny(sims, 3)
        assert await app.once()
    assert [meta(m)["event"] for m in messages(sims, 702)] == ["new"] * 3
    assert [meta(m)["listing_id"] for m in messages(sims, 702)] == added


async def test_digest_over_zero_turns_digests_off(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """`digest_over: 0`: a burst of twelve is twelve messages."""
    async with running(load(tmp_path, cfg(sims, tmp_path, sub(), digest_over=0)), clock) as app:
        assert await app.once()
        add_ny(sims, 12)
        assert await app.once()
    assert [meta(m)["event"] for m in messages(sims, 702)] == ["new"] * 12


async def test_a_subscription_digest_over_overrides_the_messages_section(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A subscription's own `digest_over` wins over `messages.digest_over` (here 0)."""
    text = cfg(sims, tmp_path, sub(extra="  digest_over: 2\n"), digest_over=0)
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
        add_ny(sims, 3)
        assert await app.once()
    (digest,) = messages(sims, 702)
    assert meta(digest)["count"] == 3


async def test_a_reload_changes_digest_over_for_the_next_poll(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """`messages.digest_over` changed by a reload applies from the next poll on."""
    async with running(load(tmp_path, cfg(sims, tmp_path, sub(), digest_over=0)), clock) as app:
        assert await app.once()
        add_ny(sims, 3)
        assert await app.once()
        assert len(messages(sims, 702)) == 3
        await app.reload(load(tmp_path, cfg(sims, tmp_path, sub(), digest_over=2)))
        add_ny(sims, 3)
        assert await app.once()
    events = [meta(m)["event"] for m in messages(sims, 702)]
    assert events == ["new", "new", "new", "digest"]


async def test_first_run_post_is_one_digest_by_default(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """With the documented default (10), a first run with `first_run: post` over more
    than ten current matches posts one digest of them all, not a flood."""
    text = cfg(sims, tmp_path, sub(extra="  first_run: post\n"), digest_over=None)
    add_ny(sims, 8)
    current = ny_ids(sims)
    assert len(current) > 10
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
    (digest,) = messages(sims, 702)
    assert sorted(i["listing_id"] for i in meta(digest)["items"]) == sorted(current)


async def test_a_catch_up_after_downtime_is_one_digest_by_default(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Listings added while the service was down arrive as one digest at the next start."""
    text = cfg(sims, tmp_path, sub(), digest_over=None)
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
    clock.advance(6 * 3600)
    sims.market.now = clock.now()
    added = add_ny(sims, 11)
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
    (digest,) = messages(sims, 702)
    assert [i["listing_id"] for i in meta(digest)["items"]] == added


async def test_listings_in_a_digest_count_as_told(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A listing told by a digest is not announced again, even after a restart, and
    its next change is posted as a message of its own."""
    text = cfg(sims, tmp_path, sub(), digest_over=3)
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
        added = add_ny(sims, 4)
        assert await app.once()
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
        clock.advance(60)
        sims.market.now = clock.now()
        record = next(r for r in sims.market.kotohomes_records() if r["id"] == added[0])
        sims.market.update_kotohomes(added[0], price=int(record["price"]) - 10_000)
        assert await app.once()
    digest, change = messages(sims, 702)
    assert meta(digest)["event"] == "digest"
    assert (meta(change)["event"], meta(change)["listing_id"]) == ("price_drop", added[0])


async def test_a_digest_whose_send_fails_after_storing_is_posted_once(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """ChatKitty stores the digest and then fails: reconciliation finds it by its key,
    and the digest is not sent twice."""
    async with running(load(tmp_path, cfg(sims, tmp_path, sub(), digest_over=3)), clock) as app:
        assert await app.once()
        add_ny(sims, 4)
        sims.faults.enabled_for = {"chatkitty"}
        sims.faults.set(rate_commit_then_fail=1.0)
        assert await app.once()
        found = sample(app, "listingbot_messages_reconciled_total", result="already_sent")
    (digest,) = messages(sims, 702)
    assert meta(digest)["event"] == "digest"
    assert found == 1


async def test_a_digest_leaves_out_listings_the_channel_was_told_of(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A second subscription's first run in the same channel: the listings the channel
    was already told of (their keys are used) are neither posted nor listed in its
    digest; only the new ones are."""
    first = sub("ny-all", extra="  first_run: post\n")
    async with running(load(tmp_path, cfg(sims, tmp_path, first)), clock) as app:
        assert await app.once()  # digest_over 0: each current NY listing, one by one
    told = len(messages(sims, 702))
    assert told > 3
    added = add_ny(sims, 4)
    both = sub("ny-all", extra="  first_run: post\n  digest_over: 100\n") + sub(
        "ny-again", extra="  first_run: post\n  digest_over: 3\n"
    )
    async with running(load(tmp_path, cfg(sims, tmp_path, both)), clock) as app:
        assert await app.once()
    later = messages(sims, 702)[told:]
    (digest,) = later
    assert [i["listing_id"] for i in meta(digest)["items"]] == added


async def test_labels_replace_subscription_names_in_headlines_and_digests(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A subscription's `label` is what a message's headline and a digest's title show;
    its name stays in the properties."""
    text = cfg(sims, tmp_path, sub(extra="  label: NYC family homes\n"), digest_over=2)
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
        add_ny(sims, 1)
        assert await app.once()
        add_ny(sims, 3)
        assert await app.once()
    single, digest = messages(sims, 702)
    assert single["body"].splitlines()[0] == "🏠 New listing · NYC family homes"
    assert meta(single)["subscriptions"] == ["ny-homes"]
    assert digest["body"].startswith("🗞 3 updates · NYC family homes\n")
    assert meta(digest)["subscriptions"] == ["ny-homes"]


async def test_a_quiet_hours_digest_names_subscriptions_by_label(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The digest that ends quiet hours shows the subscriptions' labels too."""
    night, morning = datetime(2026, 1, 2, 4, 0, tzinfo=UTC), datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    clock.jump((night - clock.now()).total_seconds())
    quiet = '  quiet_hours: "22:00-07:00"\n  timezone: America/New_York\n  label: NYC homes\n'
    async with running(load(tmp_path, cfg(sims, tmp_path, sub(extra=quiet))), clock) as app:
        assert await app.once()
        add_ny(sims, 2)
        assert await app.once()
        clock.advance((morning - clock.now()).total_seconds())
        assert await app.once()
    (digest,) = messages(sims, 702)
    assert digest["body"].startswith("🌙 While it was quiet · 2 updates · NYC homes\n")
