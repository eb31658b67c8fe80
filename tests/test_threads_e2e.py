"""End to end: threads and photos as a channel sees them, the real app against the
simulators (README "Messages": threads, photos)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from listingbot.app import App
from listingbot.clock import FakeClock
from listingbot.sim import SimStack
from tests.harness import config_text, load, messages, meta, running, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

NY_SUB = (
    "- name: ny-homes\n"
    "  source: kotohomes\n"
    "  channel: 702\n"
    f"  filters: {{states: [NY], zip_codes: {zips('NY')}}}\n"
)
KATO_SUB = "- name: uk-offices\n  source: kato\n  channel: 704\n  filters: {}\n"


def cfg(
    sims: SimStack,
    tmp_path: Path,
    subs: str = NY_SUB,
    *,
    photos: bool = False,
    sources: tuple[str, ...] = ("kotohomes",),
    **options: Any,
) -> str:
    return config_text(
        sims,
        subs,
        state_path=tmp_path / "state.sqlite3",
        sources=sources,
        threads=None,  # the default: on
        messages=f"photos: {str(photos).lower()}\n",
        **options,
    )


def thread(sims: SimStack, root: dict[str, Any]) -> list[dict[str, Any]]:
    return sims.chatkitty.thread(int(root["id"]))


async def listed(app: App, sims: SimStack, clock: FakeClock, **fields: Any) -> dict[str, Any]:
    """A new NY listing, told: returns its record."""
    record = sims.market.add_kotohomes(state="NY", **fields)
    assert await app.once()
    return record


def change(sims: SimStack, clock: FakeClock, listing_id: str, **fields: Any) -> None:
    clock.advance(60)
    sims.market.now = clock.now()
    sims.market.update_kotohomes(listing_id, **fields)


async def test_a_price_drop_replies_under_the_listings_post_which_shows_the_new_price(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """With threads on (the default), a price drop is a reply in the thread of the
    listing's first post, and that post's properties now carry the new price."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app:
        await app.once()
        record = await listed(app, sims, clock, price=600_000)
        change(sims, clock, record["id"], price=550_000)
        assert await app.once()
    (root,) = messages(sims, 702)
    assert meta(root)["event"] == "new"
    (reply,) = thread(sims, root)
    assert meta(reply)["event"] == "price_drop"
    assert "$600,000 → $550,000" in reply["body"]
    assert root["properties"]["current"]["price"]["amount"] == 550_000
    assert root["properties"]["listingbot"]["latest"]["key"] == meta(reply)["key"]


async def test_a_subscription_with_threads_off_posts_every_event_in_the_channel(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """``threads: false`` on the subscription wins over the top-level default."""
    subs = NY_SUB + "  threads: false\n"
    async with running(load(tmp_path, cfg(sims, tmp_path, subs)), clock) as app:
        await app.once()
        record = await listed(app, sims, clock, status="active")
        change(sims, clock, record["id"], status="pending")
        assert await app.once()
    posted = messages(sims, 702)
    assert [meta(m)["event"] for m in posted] == ["new", "status_change"]
    assert thread(sims, posted[0]) == []


async def test_a_deleted_post_is_replaced_by_the_next_event_in_the_channel(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A moderator deleted the listing's post: its next event goes to the channel (once,
    without failing), and the one after replies under that."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app:
        await app.once()
        record = await listed(app, sims, clock, price=600_000, status="active")
        (root,) = messages(sims, 702)
        sims.chatkitty.delete_message(int(root["id"]))
        change(sims, clock, record["id"], price=550_000)
        assert await app.once()
        change(sims, clock, record["id"], status="pending")
        assert await app.once()
    (new_root,) = messages(sims, 702)
    assert meta(new_root)["event"] == "price_drop"
    assert [meta(m)["event"] for m in thread(sims, new_root)] == ["status_change"]


async def test_a_reply_posted_before_a_crash_is_not_posted_again_after_the_restart(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """ChatKitty stores a reply and the answer is lost, then the service stops: the next
    run finds the reply in the thread instead of posting it again, and patches the root."""
    config = load(tmp_path, cfg(sims, tmp_path))
    async with running(config, clock) as app:
        await app.once()
        record = await listed(app, sims, clock, price=600_000)
        change(sims, clock, record["id"], price=550_000)
        assert (await app.poll("kotohomes")).ok
        sims.faults.enabled_for = {"chatkitty"}
        sims.faults.set(rate_commit_then_fail=1.0)
        outcome = await app.deliver()
        sims.faults.clear()
        assert outcome.unknown == 1
    clock.advance(120)
    async with running(config, clock) as app:
        assert await app.once()
    (root,) = messages(sims, 702)
    assert [meta(m)["event"] for m in thread(sims, root)] == ["price_drop"]
    assert root["properties"]["current"]["price"]["amount"] == 550_000


async def test_a_new_listing_posts_its_photo_grouped_with_its_text(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """``photos: true``: the listing's primary photo follows its text as a FILE message
    with the same groupTag, sized by a HEAD request, its file name made safe."""
    async with running(load(tmp_path, cfg(sims, tmp_path, photos=True)), clock) as app:
        await app.once()
        record = await listed(app, sims, clock)
    text, photo = messages(sims, 702)
    assert text["type"] == "SYSTEM_TEXT"
    assert photo["type"] == "SYSTEM_FILE"
    assert photo["groupTag"] == text["groupTag"]
    assert meta(photo)["of"] == meta(text)["key"]
    assert photo["file"]["url"].endswith(f"/photos/{record['id']}/0_large.jpg")
    assert photo["file"]["contentType"] == "image/jpeg"
    assert photo["file"]["size"] > 0
    assert photo["file"]["name"] == f"{record['id']}-0_large.jpg"


async def test_photos_are_off_by_default(sims: SimStack, tmp_path: Path, clock: FakeClock) -> None:
    """Without ``photos`` anywhere, a new listing is one TEXT message."""
    config = config_text(
        sims, NY_SUB, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",)
    )
    async with running(load(tmp_path, config), clock) as app:
        await app.once()
        await listed(app, sims, clock)
    assert [m["type"] for m in messages(sims, 702)] == ["SYSTEM_TEXT"]


async def test_a_refused_photo_leaves_the_text_posted_and_the_run_ok(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """ChatKitty refuses FILE messages: the text still goes, the photo is dropped with
    the reason, and nothing counts as failed."""
    sims.chatkitty.refuse_files_with = 400
    async with running(load(tmp_path, cfg(sims, tmp_path, photos=True)), clock) as app:
        await app.once()
        await listed(app, sims, clock)
        assert app.store is not None
        rows = app.store.all_rows_sync()
    assert [m["type"] for m in messages(sims, 702)] == ["SYSTEM_TEXT"]
    (dropped,) = [r for r in rows if r.message.kind == "photo"]
    assert dropped.state == "dropped"
    assert "photo refused" in (dropped.last_error or "")


async def test_a_photo_whose_size_cannot_be_found_is_left_out(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The photo host answers 404 to the HEAD: the photo is left out, the text goes."""
    sims.kotohomes.photos.status = 404
    async with running(load(tmp_path, cfg(sims, tmp_path, photos=True)), clock) as app:
        await app.once()
        await listed(app, sims, clock)
    assert [m["type"] for m in messages(sims, 702)] == ["SYSTEM_TEXT"]
    assert sims.kotohomes.photos.requests == 1


async def test_a_photo_without_a_content_length_is_left_out(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A HEAD answer without a size: CreateExternalFileProperties needs one, so no photo."""
    sims.kotohomes.photos.omit_length = True
    async with running(load(tmp_path, cfg(sims, tmp_path, photos=True)), clock) as app:
        await app.once()
        await listed(app, sims, clock)
    assert [m["type"] for m in messages(sims, 702)] == ["SYSTEM_TEXT"]


async def test_a_listing_without_a_photo_url_uses_its_photo_template(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Kotohomes' ``photo_template`` gives the photo when ``photo_url`` is missing."""
    async with running(load(tmp_path, cfg(sims, tmp_path, photos=True)), clock) as app:
        await app.once()
        record = await listed(app, sims, clock, photo_url=None)
    _, photo = messages(sims, 702)
    assert photo["file"]["url"].endswith(f"/photos/{record['id']}/0_large.jpg")


async def test_a_kato_listing_posts_its_first_image(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Kato's first image is the primary photo."""
    config = cfg(sims, tmp_path, KATO_SUB, photos=True, sources=("kato",))
    async with running(load(tmp_path, config), clock) as app:
        await app.once()
        record = sims.market.add_kato()
        assert await app.once()
    text, photo = messages(sims, 704)
    assert meta(text)["listing_id"] == str(record["id"])
    first = record["images"][0]["url"].removeprefix("https://media.kato.app")
    assert photo["file"]["url"].endswith(f"/media{first}")
    assert photo["groupTag"] == text["groupTag"]


async def test_a_reply_carries_no_photo(sims: SimStack, tmp_path: Path, clock: FakeClock) -> None:
    """The photo goes with the post that starts a listing's thread, not with replies."""
    async with running(load(tmp_path, cfg(sims, tmp_path, photos=True)), clock) as app:
        await app.once()
        record = await listed(app, sims, clock, price=600_000)
        change(sims, clock, record["id"], price=550_000)
        assert await app.once()
    text, _photo = messages(sims, 702)
    assert [m["type"] for m in thread(sims, text)] == ["SYSTEM_TEXT"]


async def test_a_listing_told_by_a_digest_replies_under_the_digest(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Listings told in a burst digest count as told: a later change of one of them is a
    reply in the digest's thread."""
    config = cfg(sims, tmp_path, digest_over=2)
    async with running(load(tmp_path, config), clock) as app:
        await app.once()
        records = [sims.market.add_kotohomes(state="NY", price=600_000) for _ in range(3)]
        assert await app.once()
        change(sims, clock, records[1]["id"], price=550_000)
        assert await app.once()
    (digest,) = messages(sims, 702)
    assert meta(digest)["event"] == "digest"
    (reply,) = thread(sims, digest)
    assert meta(reply)["listing_id"] == records[1]["id"]
    current = digest["properties"]["current_listings"][f"kotohomes:{records[1]['id']}"]
    assert current["price"]["amount"] == 550_000
