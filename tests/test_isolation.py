"""One failing part never stops the rest, in process on a fake clock: the real app, its ops
endpoint and `listingbot status`, against the simulators. A missing channel holds only its
subscriptions, a refused query fails only its subscriptions, a stalled ChatKitty never
delays a poll, and liveness is not readiness."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from listingbot import cli
from listingbot.clock import FakeClock
from listingbot.sim import SimStack
from tests.harness import (
    LogCapture,
    config_text,
    load,
    messages,
    meta,
    running,
    write_config,
    zips,
)
from tests.test_ops import get, get_json, samples, serving

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

DEADLINE_S = 10.0

UK_POST = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
  first_run: post
"""
NYC_NAMED = """\
- name: nyc-offices
  source: kato
  channel: nyc-homes
  filters: {}
"""
NY_POST = f"""\
- name: ny-homes
  source: kotohomes
  channel: 702
  filters: {{states: [NY], zip_codes: {zips("NY")}}}
  first_run: post
"""
# Today's Kotohomes refuses a search by states alone (HTTP 400): a query only this
# subscription makes, refused by the source.
CA_STATES_ONLY = """\
- name: ca-states
  source: kotohomes
  channel: 703
  filters: {states: [CA]}
"""


def cfg(sims: SimStack, tmp_path: Path, subs: str) -> str:
    return config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kato",))


def events(logs: LogCapture, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    return [e for e in lines if e.get("event") == name]


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------ missing channel


async def test_a_missing_channel_holds_only_its_subscription_and_is_named_everywhere(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture, capsys: Any
) -> None:
    """A channel ChatKitty does not have holds just the subscription posting there: the
    other one delivers, and the held one is named in the log (once), in `status` (run
    without any secret in the environment), in the /readyz body and in a metric."""
    sims.chatkitty.remove_channel(702)
    text = cfg(sims, tmp_path, UK_POST + NYC_NAMED)
    path = write_config(tmp_path, text)
    async with running(load(tmp_path, text), clock) as app, serving(app) as base:
        assert not await app.once()  # something is held: `once` says so with exit 1
        assert not await app.once()
        status, body = await get_json(f"{base}/readyz")
        _, metrics = await get(f"{base}/metrics")
    assert messages(sims, 704)  # uk-all delivered
    assert status == 200
    assert body["degraded"] == ["subscriptions"]
    assert body["checks"]["subscriptions"]["held"] == {
        "nyc-offices": "ChatKitty has no channel named 'nyc-homes'"
    }
    assert samples(metrics, "listingbot_subscription_problem") == {
        (("reason", "channel_missing"), ("subscription", "nyc-offices")): 1.0
    }
    assert [e["subscription"] for e in events(logs, "subscription_held")] == ["nyc-offices"]
    capsys.readouterr()
    assert cli.main(["status", "--config", str(path)]) == 0  # the secrets are not set here
    out = capsys.readouterr().out
    assert "nyc-offices: HELD since " in out
    assert "ChatKitty has no channel named 'nyc-homes'" in out


async def test_a_near_channel_name_is_suggested(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A channel name that differs only in case or a leading # is held with "did you mean"."""
    subs = NYC_NAMED.replace("channel: nyc-homes", "channel: '#NYC-homes'")
    async with running(load(tmp_path, cfg(sims, tmp_path, subs)), clock) as app:
        assert app.channels.held == {
            "nyc-offices": "ChatKitty has no channel named '#NYC-homes' (did you mean 'nyc-homes'?)"
        }


async def test_a_renamed_channel_holds_its_subscription_until_it_returns_without_a_flood(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """A channel renamed while running holds its subscription at the next channel check;
    renamed back, the subscription resumes from its kept state: nothing it had recorded
    is posted again (no flood), and the next change is posted once."""
    async with running(load(tmp_path, cfg(sims, tmp_path, UK_POST + NYC_NAMED)), clock) as app:
        assert await app.once()  # nyc-offices baselines, uk-all posts what matches
        baseline = len(messages(sims, 704))
        sims.chatkitty.add_channel(702, "nyc-homes-archive", "NYC homes (old)")
        await app.check_channels()
        assert "nyc-offices" in app.channels.held
        during = sims.market.add_kato()
        assert not await app.once()
        assert messages(sims, 702) == []  # held: nothing posted to the renamed channel
        assert len(messages(sims, 704)) == baseline + 1  # uk-all goes on
        sims.chatkitty.add_channel(702, "nyc-homes", "NYC homes")
        await app.check_channels()
        assert app.channels.held == {}
        after = sims.market.add_kato()
        assert await app.once()
    assert during["id"] != after["id"]
    assert [meta(m)["listing_id"] for m in messages(sims, 702)] == [str(after["id"])]
    assert len(events(logs, "subscription_held")) == 1
    assert [e["subscription"] for e in events(logs, "subscription_resumed")] == ["nyc-offices"]


# ------------------------------------------------------------------------ refused query


async def test_a_refused_query_fails_that_subscription_and_not_its_source(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """Kotohomes refusing one subscription's query (HTTP 400) names that subscription;
    Kotohomes' other subscription keeps delivering and Kotohomes stays up and ready."""
    text = config_text(
        sims, NY_POST + CA_STATES_ONLY, state_path=tmp_path / "s.sqlite3", sources=("kotohomes",)
    )
    async with running(load(tmp_path, text), clock) as app, serving(app) as base:
        assert not await app.once()
        added = sims.market.add_kotohomes(state="NY")
        clock.advance(300)
        assert not await app.once()
        status, body = await get_json(f"{base}/readyz")
        _, metrics = await get(f"{base}/metrics")
    assert str(added["id"]) in [meta(m)["listing_id"] for m in messages(sims, 702)]
    assert messages(sims, 703) == []
    assert status == 200
    assert body["checks"]["source:kotohomes"]["ok"] is True
    assert body["checks"]["source:kotohomes"]["failing"] is False
    assert list(body["checks"]["subscriptions"]["failing"]) == ["ca-states"]
    assert "HTTP 400" in body["checks"]["subscriptions"]["failing"]["ca-states"]
    assert samples(metrics, "listingbot_source_up") == {(("source", "kotohomes"),): 1.0}
    assert samples(metrics, "listingbot_subscription_problem") == {
        (("reason", "query_rejected"), ("subscription", "ca-states")): 1.0
    }
    assert [e["subscription"] for e in events(logs, "subscription_failing")] == ["ca-states"]
    assert events(logs, "source_failing") == []


# ------------------------------------------------------------------------ stalled ChatKitty


async def test_poll_times_keep_their_interval_through_a_60s_chatkitty_stall(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A ChatKitty that stops answering for 60 s does not delay a poll: each scheduled poll
    commits its messages and returns while the send is held; after the stall every
    message is delivered once, in order."""
    interval = 15.0
    async with running(load(tmp_path, cfg(sims, tmp_path, UK_POST)), clock) as app:
        assert await app.once()
        before = len(messages(sims, 704))
        polled_at: list[float] = []
        app.on_poll.append(lambda _outcome: polled_at.append(clock.monotonic()))
        sims.faults.enabled_for = {"chatkitty"}
        sims.faults.hold()
        app.start_workers()
        added = []
        try:
            for _ in range(5):  # 60 s of a stalled ChatKitty, one Kato poll every 15 s
                added.append(str(sims.market.add_kato()["id"]))
                await asyncio.wait_for(app.poll_then_deliver("kato"), DEADLINE_S)
                await until(lambda: sims.faults.held > 0, "a send to be held")
                clock.advance(interval)
            assert len(messages(sims, 704)) == before  # the stall really held delivery
            gaps = [b - a for a, b in itertools.pairwise(polled_at)]
            assert gaps == [interval] * 4
            sims.faults.release()
            await until(lambda: len(messages(sims, 704)) >= before + len(added), "the messages")
        finally:
            sims.faults.release()
            await app.shutdown()
    posted = [meta(m)["listing_id"] for m in messages(sims, 704)]
    assert posted[-len(added) :] == added
    assert len(posted) == len(set(posted))
