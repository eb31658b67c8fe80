"""Hostile upstream data: every kind of corrupted record the simulators can serve is
skipped and counted (no usable id), posted without its unreadable fields (each counted),
or posted sanitized, and never stops the rest of the poll.

The simulators corrupt a record by a hash of its id (``listingbot.sim.faults``), so a
test picks ids that get the corruption it wants.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from listingbot.app import App
from listingbot.clock import FakeClock
from listingbot.messages import MESSAGE_MAX_CHARS
from listingbot.models import SOURCES
from listingbot.sim import SimStack
from listingbot.sim.faults import (
    FIELD_DROPPING_VARIANTS,
    REJECTABLE_VARIANTS,
    SURVIVABLE_VARIANTS,
    hostile_variant,
)
from tests.harness import SECRETS, LogCapture, config_text, load, make_sims, meta, running, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

RATE = 0.5  # the share of records served corrupted
CHANNEL = {"kotohomes": 702, "kato": 704}
SUBS = f"""\
- name: ny-homes
  source: kotohomes
  channel: 702
  filters: {{states: [NY, NJ, CA, WA, FL, MA, TX, IL], zip_codes: {zips()}}}
  first_run: post
- name: uk-all
  source: kato
  channel: 704
  filters: {{}}
  first_run: post
"""


@pytest.fixture
async def sims(clock: FakeClock) -> AsyncIterator[SimStack]:
    """An empty market: each test adds exactly the records it is about."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as stack:
        yield stack


def ids_with(source: str, variant: str | None, count: int = 1) -> list[str]:
    """Listing ids the simulators serve with this corruption (None: served clean)."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        n += 1
        candidate = f"li_hostile{n:05d}" if source == "kotohomes" else str(90_000 + n)
        if hostile_variant(source, candidate, RATE) == variant:
            found.append(candidate)
    return found


def add(sims: SimStack, source: str, listing_id: str) -> None:
    if source == "kotohomes":
        sims.market.add_kotohomes(id=listing_id, state="NY")
    else:
        sims.market.add_kato(id=int(listing_id))


def posted(sims: SimStack, source: str) -> dict[str, list[dict[str, Any]]]:
    """Messages posted for ``source``, by listing id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for message in sims.chatkitty.messages.get(CHANNEL[source], []):
        out.setdefault(meta(message)["listing_id"], []).append(message)
    return out


def skipped(app: App, source: str) -> float:
    value = app.metrics.registry.get_sample_value(
        "listingbot_records_skipped_total", {"source": source}
    )
    return value or 0.0


def assert_safe(body: str) -> None:
    """Nothing in a posted body can mention anyone, hide text or break encoding."""
    assert "<@" not in body
    assert "<#" not in body
    bad = [ch for ch in body if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cs")]
    assert not bad, f"control or surrogate characters {bad!r} in {body!r}"
    body.encode("utf-8")
    assert len(body) <= MESSAGE_MAX_CHARS


async def poll_once(sims: SimStack, tmp_path: Path, clock: FakeClock) -> App:
    config = load(tmp_path, config_text(sims, SUBS, state_path=tmp_path / "state.sqlite3"))
    sims.faults.set(rate_malformed=RATE)
    async with running(config, clock) as app:
        assert await app.once()
    return app


@pytest.mark.parametrize("source", ["kotohomes", "kato"])
@pytest.mark.parametrize("variant", sorted(REJECTABLE_VARIANTS))
async def test_rejectable_record_is_skipped_and_counted_and_the_rest_posted(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture, source: str, variant: str
) -> None:
    """A record that cannot be trusted is skipped, counted and logged; the others post."""
    (bad,) = ids_with(source, variant)
    good = ids_with(source, None, 2)
    for listing_id in (good[0], bad, good[1]):
        add(sims, source, listing_id)
    app = await poll_once(sims, tmp_path, clock)
    assert sims.faults.corrupted == {(source, bad): variant}
    by_id = posted(sims, source)
    assert sorted(by_id) == sorted(good)
    assert skipped(app, source) == 1
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    skips = [line for line in lines if line["event"] == "record_skipped"]
    assert [line["source"] for line in skips] == [source] * len(skips) != []
    if variant != "missing_id":
        assert {line["record_id"] for line in skips} == {bad}


def dropped(app: App, source: str) -> float:
    return sum(
        sample.value
        for metric in app.metrics.registry.collect()
        if metric.name == "listingbot_record_fields_dropped"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["source"] == source
    )


@pytest.mark.parametrize("source", ["kotohomes", "kato"])
@pytest.mark.parametrize("variant", sorted(FIELD_DROPPING_VARIANTS))
async def test_a_record_with_unreadable_fields_is_posted_without_them_and_counted(
    sims: SimStack, tmp_path: Path, clock: FakeClock, source: str, variant: str
) -> None:
    """Wrong types, impossible prices or dates cost those fields, not the listing: it is
    posted once, safely, with each dropped field counted; nothing is skipped."""
    (odd,) = ids_with(source, variant)
    good = ids_with(source, None, 2)
    for listing_id in (good[0], odd, good[1]):
        add(sims, source, listing_id)
    app = await poll_once(sims, tmp_path, clock)
    assert sims.faults.corrupted == {(source, odd): variant}
    by_id = posted(sims, source)
    assert sorted(by_id) == sorted([*good, odd])
    assert all(len(messages) == 1 for messages in by_id.values())
    assert skipped(app, source) == 0
    assert dropped(app, source) >= 1
    assert_safe(by_id[odd][0]["body"])


@pytest.mark.parametrize("source", ["kotohomes", "kato"])
@pytest.mark.parametrize("variant", sorted(SURVIVABLE_VARIANTS))
async def test_survivable_record_is_posted_sanitized_with_the_rest(
    sims: SimStack, tmp_path: Path, clock: FakeClock, source: str, variant: str
) -> None:
    """A record with hostile text is posted once, its text made safe; the others post."""
    (hostile,) = ids_with(source, variant)
    good = ids_with(source, None, 2)
    for listing_id in (good[0], hostile, good[1]):
        add(sims, source, listing_id)
    app = await poll_once(sims, tmp_path, clock)
    assert sims.faults.corrupted == {(source, hostile): variant}
    by_id = posted(sims, source)
    assert sorted(by_id) == sorted([*good, hostile])
    assert all(len(messages) == 1 for messages in by_id.values())
    assert skipped(app, source) == 0
    for (message,) in by_id.values():
        assert_safe(message["body"])


async def test_a_whole_market_of_hostile_records_never_stops_a_poll(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Half the records corrupted, every kind at once: each clean or survivable listing is
    posted once and safely, each rejectable one skipped and counted."""
    async with make_sims(clock, kotohomes_count=40, kato_count=40) as sims:
        app = await poll_once(sims, tmp_path, clock)
        corrupted = dict(sims.faults.corrupted)
    kinds = set(corrupted.values())
    assert len(kinds) >= 8, f"too few kinds of corruption served: {sorted(kinds)}"
    for source in SOURCES:
        live = {str(r["id"]) for r in sims.market.live(source)}
        rejected = {
            i for (s, i), v in corrupted.items() if s == source and v in REJECTABLE_VARIANTS
        }
        by_id = posted(sims, source)
        assert set(by_id) == live - rejected
        assert all(len(messages) == 1 for messages in by_id.values())
        assert skipped(app, source) == len(rejected)
        for (message,) in by_id.values():
            assert_safe(message["body"])
            for value in SECRETS.values():
                assert value not in message["body"]


async def test_a_record_without_an_id_is_counted_once(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """One id-less record, served in both Kotohomes answers of a poll, is one skip."""
    (bad,) = ids_with("kotohomes", "missing_id")
    (good,) = ids_with("kotohomes", None)
    add(sims, "kotohomes", bad)
    add(sims, "kotohomes", good)
    sims.market.now += timedelta(minutes=1)
    sims.market.update_kotohomes(bad, price=123_000)  # newest by update, oldest by creation
    app = await poll_once(sims, tmp_path, clock)
    assert list(posted(sims, "kotohomes")) == [good]
    assert skipped(app, "kotohomes") == 1
