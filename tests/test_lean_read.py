"""Specification of the lean read (issue 15): a Kato record a poll normalizes is first read
lean (its facts and the fields a subscription's index reads) and normalized whole only when
a subscription's keyword filter or a message needs it. What is posted, matched and
reported is what the whole read gives: messages show the whole listing, keywords are
checked on it, and a bad field is reported when it is read."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from listingbot.clock import FakeClock
from listingbot.records import fingerprint
from listingbot.sources.kato import normalize_kato
from tests.harness import make_sims
from tests.test_polling import dropped, poller_for, tick


def _sub(filters: str, first_run: str = "post") -> str:
    return (
        "- name: uk-one\n  source: kato\n  channel: 704\n"
        f"  filters: {filters}\n  first_run: {first_run}\n"
    )


def _address(postcode: str) -> dict[str, Any]:
    return {
        "name": None,
        "line1": "1 Lean Street",
        "line2": None,
        "town": "Leeds",
        "county": "West Yorkshire",
        "postcode": postcode,
        "country": "United Kingdom",
    }


async def test_a_listing_a_subscription_accepts_is_posted_whole(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The message of a listing matched on its lean read carries the whole listing: the
    same title, link, summary, photo and agent as normalizing its record whole gives."""
    async with make_sims(clock, kotohomes_count=0, kato_count=60) as sims:
        subs = _sub("{postcode_prefixes: [LS99]}", first_run="baseline")
        async with poller_for(sims, tmp_path, clock, subs, "kato") as (poller, store):
            assert (await poller.poll()).ok
            tick(sims, clock, 60)
            added = sims.market.add_kato(address=_address("LS99 1AA"))
            assert (await poller.poll()).queued == 1
            rows = store.all_rows_sync()
        record = sims.market.find("kato", str(added["id"]))
    assert record is not None
    whole = normalize_kato(record).model_dump(mode="json", exclude_none=True)
    for shown_only in ("title", "summary", "photo_url", "agent"):
        assert whole[shown_only], shown_only
    [row] = rows
    shown = dict(row.message.properties["listing"])
    # The simulator serves its photos from its own address; the record path is the same.
    photo = f"/availability/{added['id']}/1.jpg"
    assert shown.pop("photo_url").endswith(photo)
    assert whole.pop("photo_url").endswith(photo)
    assert shown == whole
    assert whole["title"] in row.message.body


async def test_a_keyword_filter_is_checked_on_the_whole_listing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A keyword is looked for in the title, summary and address the lean read does not
    read: a listing whose address holds it is posted, one otherwise the same is not."""
    async with make_sims(clock, kotohomes_count=0, kato_count=60) as sims:
        subs = _sub("{postcode_prefixes: [LS99], keywords_any: [lean street]}", "baseline")
        async with poller_for(sims, tmp_path, clock, subs, "kato") as (poller, store):
            assert (await poller.poll()).ok
            tick(sims, clock, 60)
            wanted = sims.market.add_kato(address=_address("LS99 1AA"))
            other = _address("LS99 1AB")
            other["line1"] = "2 Other Road"
            sims.market.add_kato(address=other)
            assert (await poller.poll()).ok
            rows = store.all_rows_sync()
    assert [r.message.listing_id for r in rows] == [str(wanted["id"])]


async def test_a_bad_field_only_a_message_shows_is_reported_when_it_is_posted(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A bad field the index reads (size) is reported for every record; a bad field only
    a message shows (the photo's link) is reported for the record that is posted, once,
    and not for one no subscription accepts (nothing ever reads it)."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        bad = {"size": {"from": "plenty", "to": None, "metric": "sqft"},
               "images": [{"url": 42}]}  # fmt: skip
        sims.market.add_kato(address=_address("LS99 1AA"), **bad)
        sims.market.add_kato(address=_address("EC1 1AA"), **bad)
        subs = _sub("{postcode_prefixes: [LS99]}", first_run="post")
        async with poller_for(sims, tmp_path, clock, subs, "kato") as (poller, _store):
            assert (await poller.poll()).queued == 1
            sizes, images = dropped(poller, "size"), dropped(poller, "images")
    assert (sizes, images) == (2, 1)


async def test_a_state_file_of_listing_fingerprints_upgrades_without_a_message(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A state file an older listingbot wrote holds each listing's fingerprint of its
    serialized listing, not its record's digest. The first sweep after the upgrade posts
    only what changed: records served as before keep their stored facts, a record changed
    only where nothing looks is detected again and posts nothing, a price drop is posted
    once, and the sweep after posts nothing."""
    async with make_sims(clock, kotohomes_count=0, kato_count=60) as sims:
        subs = _sub("{}", first_run="baseline")
        async with poller_for(sims, tmp_path, clock, subs, "kato") as (poller, store):
            assert (await poller.poll()).ok
            ids = sims.market.ids("kato")
            older = []
            for listing_id in ids:
                record = sims.market.find("kato", listing_id)
                assert record is not None
                older.append((fingerprint(normalize_kato(record)), listing_id))
            conn = sqlite3.connect(tmp_path / "state.sqlite3")
            with conn:
                conn.executemany("UPDATE listings SET fingerprint = ? WHERE listing_id = ?", older)
            conn.close()
            tick(sims, clock, 600)
            let = [r for r in (sims.market.find("kato", i) for i in ids) if r and r["rent"]]
            cheaper, quiet = str(let[0]["id"]), let[1]
            sims.market.update_kato(cheaper, rent=int(let[0]["rent"]["from"] * 0.8))
            sims.market.update_kato(str(quiet["id"]), updated_at=quiet["updated_at"], crm_note="x")
            second = await poller.poll()
            tick(sims, clock, 600)
            third = await poller.poll()
            rows = store.all_rows_sync()
    assert second.ok
    assert [(r.message.event, r.message.listing_id) for r in rows] == [("price_drop", cheaper)]
    assert (third.events, third.queued) == (0, 0)


async def test_a_state_file_of_digests_taken_another_way_upgrades_without_a_message(
    tmp_path: Path, clock: FakeClock
) -> None:
    """An older listingbot took a record's digest from its decoded values, not from its
    bytes (clients.kato.KatoRecord): after the upgrade no stored digest matches. The
    first sweep reads every record again and posts nothing, it stores the digests of the
    records' bytes, and the sweep after posts nothing either."""
    async with make_sims(clock, kotohomes_count=0, kato_count=60) as sims:
        subs = _sub("{}", first_run="baseline")
        async with poller_for(sims, tmp_path, clock, subs, "kato") as (poller, store):
            assert (await poller.poll()).ok
            conn = sqlite3.connect(tmp_path / "state.sqlite3")
            query = "SELECT listing_id, digest, fingerprint FROM listings ORDER BY listing_id"
            stored = conn.execute(query).fetchall()
            with conn:
                conn.execute(
                    "UPDATE listings SET digest = randomblob(16),"
                    " fingerprint = lower(hex(randomblob(16)))"
                )
            tick(sims, clock, 600)
            second = await poller.poll()
            upgraded = conn.execute(query).fetchall()
            conn.close()
            tick(sims, clock, 600)
            third = await poller.poll()
            rows = store.all_rows_sync()
    assert len(stored) == 60
    assert all(digest is not None for _, digest, _ in stored)
    assert second.ok
    assert (second.events, second.queued) == (0, 0)
    assert upgraded == stored
    assert (third.events, third.queued) == (0, 0)
    assert rows == []
