"""Thread specs: a listing's first message is its root, later ones reply in its thread,
the root's properties are patched, and each of these is delivered exactly once.

The real Deliverer on a real Store against the ChatKitty simulator on loopback, on a
fake clock; faults come from the simulator's switches (never from patching listingbot).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listingbot.clients.chatkitty import ChatKittyClient
from listingbot.clock import FakeClock
from listingbot.delivery import Deliverer
from listingbot.digests import DigestItem, build_digest
from listingbot.metrics import Metrics
from listingbot.outbox import followup_key, photo_message, root_patch
from listingbot.photos import PhotoProbe
from listingbot.records import KIND_PATCH, OutboxRow, OutgoingMessage
from listingbot.sim import SimStack
from listingbot.store import PollRecord, Store
from tests.factories import listing
from tests.harness import SECRETS, config_text, make_sims, meta, write_config
from tests.test_delivery import client, delivery_config

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

CHANNEL = 702


@dataclass
class Bed:
    sims: SimStack
    clock: FakeClock
    store: Store
    chatkitty: ChatKittyClient
    deliverer: Deliverer

    async def queue(self, *messages: OutgoingMessage) -> None:
        """Queue messages as a poll would."""
        await self.store.record_poll(PollRecord("kotohomes", messages=list(messages)))

    async def restart(self, path: Path) -> None:
        """What a new process does two minutes after this one died: a new store and
        deliverer on the same state file."""
        await self.store.close()
        self.clock.advance(120)
        self.store = await Store.open(path, self.clock.now, exclusive=True)
        self.deliverer = Deliverer(
            self.store, self.chatkitty, self.clock, Metrics(), delivery_config()
        )

    def rows(self) -> dict[str, OutboxRow]:
        return {row.message.key: row for row in self.store.all_rows_sync()}

    def top(self) -> list[dict[str, Any]]:
        """The bot's top-level messages in the channel, oldest first."""
        return [
            m
            for m in self.sims.chatkitty.messages.get(CHANNEL, [])
            if "listingbot" in (m.get("properties") or {})
        ]

    def replies(self, root: dict[str, Any]) -> list[str]:
        """The delivery keys of the replies in ``root``'s thread, oldest first."""
        return [meta(m)["key"] for m in self.sims.chatkitty.thread(int(root["id"]))]


def text(
    key: str,
    listing_id: str = "li_1",
    *,
    event: str = "new",
    price: float = 500_000,
    status: str = "active",
    threaded: bool = True,
) -> OutgoingMessage:
    """A listing's text, as compose writes it: its envelope and the listing's JSON."""
    shown = listing(listing_id, status=status).model_dump(mode="json", exclude_none=True)
    shown["price"]["amount"] = price
    return OutgoingMessage(
        key=key,
        channel_id=CHANNEL,
        source="kotohomes",
        listing_id=listing_id,
        event=event,
        subscriptions=("sub-a",),
        body=f"{event} {listing_id} {key}",
        properties={
            "listingbot": {
                "key": key,
                "event": event,
                "source": "kotohomes",
                "listing_id": listing_id,
                "subscriptions": ["sub-a"],
            },
            "listing": shown,
        },
        threaded=threaded,
    )


@pytest.fixture
async def bed(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Bed]:
    async with make_sims(clock) as sims, aiohttp.ClientSession() as session:
        store = await Store.open(tmp_path / "state.sqlite3", clock.now, exclusive=True)
        ck = client(sims, session, clock)
        deliverer = Deliverer(
            store, ck, clock, Metrics(), delivery_config(), photos=PhotoProbe(session)
        )
        bed = Bed(sims, clock, store, ck, deliverer)
        try:
            yield bed
        finally:
            await bed.store.close()  # the store a restart opened, if any


async def posted_root(bed: Bed) -> dict[str, Any]:
    """Post li_1's first message; returns it as ChatKitty holds it."""
    await bed.queue(text("k-new"))
    await bed.deliverer.run_pass()
    (root,) = bed.top()
    return root


async def stored_then_failed(bed: Bed) -> None:
    """One pass in which ChatKitty stores (or applies) the request, then fails the answer."""
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_commit_then_fail=1.0)
    await bed.deliverer.run_pass()
    bed.sims.faults.clear()


async def test_a_listings_later_event_replies_in_the_thread_of_its_first_message(
    bed: Bed,
) -> None:
    """The first message about a listing goes to the channel; the next one about it is a
    reply in that message's thread, not a channel message."""
    root = await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    out = await bed.deliverer.run_pass()
    assert [meta(m)["key"] for m in bed.top()] == ["k-new"]
    assert bed.replies(root) == ["k-drop"]
    assert bed.rows()["k-drop"].message.thread_id == root["id"]
    assert out.sent == 2  # the reply and its root's patch


async def test_another_listing_in_the_channel_starts_its_own_thread(bed: Bed) -> None:
    """Roots are per listing: a second listing's first message goes to the channel."""
    await bed.queue(text("k-1", "li_1"), text("k-2", "li_2"))
    await bed.deliverer.run_pass()
    assert [meta(m)["key"] for m in bed.top()] == ["k-1", "k-2"]
    roots = bed.store.thread_roots_sync(CHANNEL)
    assert [(r.listing_id, r.root_key) for r in roots] == [("li_1", "k-1"), ("li_2", "k-2")]


async def test_the_root_is_merge_patched_with_the_current_price_and_status(bed: Bed) -> None:
    """After a reply, the root's properties show the listing as it is now (``current``)
    and name the reply; the root keeps its own delivery key and what it said."""
    root = await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000, status="pending"))
    await bed.deliverer.run_pass()
    props = bed.sims.chatkitty.all_messages()[0]["properties"]
    assert props["current"]["price"]["amount"] == 450_000
    assert props["current"]["status"] == "pending"
    assert props["listing"]["price"]["amount"] == 500_000
    assert props["listingbot"]["key"] == "k-new"
    assert props["listingbot"]["latest"]["key"] == "k-drop"
    assert props["listingbot"]["patch"] == followup_key("k-drop", KIND_PATCH)
    assert root["body"] == "new li_1 k-new"  # only properties are patched


async def test_a_field_the_listing_no_longer_has_is_removed_from_the_root(bed: Bed) -> None:
    """The patch sets fields the listing lost to null, so the merge removes them."""
    await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    await bed.deliverer.run_pass()
    props = bed.sims.chatkitty.all_messages()[0]["properties"]
    assert "summary" in props["current"]
    later = text("k-status", event="status_change", price=450_000, status="pending")
    del later.properties["listing"]["summary"]
    await bed.queue(later)
    await bed.deliverer.run_pass()
    props = bed.sims.chatkitty.all_messages()[0]["properties"]
    assert "summary" not in props["current"]


async def test_the_patch_goes_right_after_its_reply_before_the_channels_later_rows(
    bed: Bed,
) -> None:
    """A reply's patch is the channel's next request, ahead of rows queued before it."""
    root = await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000), text("k-other", "li_2"))
    bed.sims.chatkitty.requests.clear()
    await bed.deliverer.run_pass()
    writes = [(r.method, r.path) for r in bed.sims.chatkitty.requests if r.method != "GET"]
    assert writes == [
        ("POST", f"/v1/threads/{root['id']}/messages"),
        ("PATCH", f"/v1/messages/{root['id']}"),
        ("POST", f"/v1/channels/{CHANNEL}/messages"),
    ]


async def test_a_deleted_root_makes_the_next_event_a_channel_message_and_the_new_root(
    bed: Bed,
) -> None:
    """A root deleted in ChatKitty: the next event about the listing is posted in the
    channel (no error, nothing lost) and later events reply under it."""
    root = await posted_root(bed)
    bed.sims.chatkitty.delete_message(int(root["id"]))
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    out = await bed.deliverer.run_pass()
    assert (out.sent, out.failed) == (1, 0)
    (new_root,) = bed.top()
    assert meta(new_root)["key"] == "k-drop"
    await bed.queue(text("k-status", event="status_change", status="pending"))
    await bed.deliverer.run_pass()
    assert bed.replies(new_root) == ["k-status"]


async def test_a_reply_stored_but_unanswered_is_found_in_the_thread_not_sent_twice(
    bed: Bed,
) -> None:
    """ChatKitty stores a reply and fails the answer: reconciliation finds it in the
    thread and marks it sent; it is never posted again."""
    root = await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    await stored_then_failed(bed)
    assert bed.rows()["k-drop"].state == "sending"
    bed.clock.advance(120)
    await bed.deliverer.run_pass()
    assert bed.replies(root) == ["k-drop"]
    assert bed.rows()["k-drop"].state == "sent"
    assert bed.rows()[followup_key("k-drop", KIND_PATCH)].state == "sent"


async def test_a_crash_after_a_reply_was_posted_is_settled_on_restart_without_a_repeat(
    bed: Bed, tmp_path: Path
) -> None:
    """A process that dies between posting a reply and recording it: the next process
    (a new store and deliverer on the same file) finds it in the thread, posts the patch
    and never the reply again."""
    root = await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    assert await bed.store.claim(bed.rows()["k-drop"].seq, thread_id=int(root["id"]))
    # What the dead process's request did: the reply exists, nothing recorded it.
    bed.sims.chatkitty.post_system(
        CHANNEL,
        "price_drop li_1 k-drop",
        thread_of=int(root["id"]),
        properties=text("k-drop").properties,
    )
    await bed.restart(tmp_path / "state.sqlite3")
    out = await bed.deliverer.run_pass()
    assert out.reconciled_sent == 1
    assert bed.replies(root) == ["k-drop"]
    patch = bed.rows()[followup_key("k-drop", KIND_PATCH)]
    assert patch.state == "sent"


async def test_a_crash_before_a_reply_went_out_sends_it_once_after_restart(
    bed: Bed, tmp_path: Path
) -> None:
    """A process that dies after claiming a reply but before its request: the next one
    searches the thread, finds nothing, and posts the reply once."""
    root = await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    assert await bed.store.claim(bed.rows()["k-drop"].seq, thread_id=int(root["id"]))
    await bed.restart(tmp_path / "state.sqlite3")
    out = await bed.deliverer.run_pass()
    assert out.reconciled_requeued == 1
    assert bed.replies(root) == ["k-drop"]


async def test_a_reply_of_unknown_outcome_whose_root_was_deleted_goes_to_the_channel(
    bed: Bed,
) -> None:
    """The root is deleted while a reply's outcome is unknown: its thread cannot be read,
    so the root is forgotten and the text is posted in the channel as the new root."""
    root = await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    await stored_then_failed(bed)
    bed.sims.chatkitty.delete_message(int(root["id"]))
    bed.clock.advance(120)
    await bed.deliverer.run_pass()
    assert [meta(m)["key"] for m in bed.top()] == ["k-drop"]
    (new_root,) = bed.store.thread_roots_sync(CHANNEL)
    assert new_root.root_key == "k-drop"


async def test_a_patch_applied_but_unanswered_is_settled_by_reading_the_root(
    bed: Bed,
) -> None:
    """A PATCH that ChatKitty applied without answering: reconciliation reads the root,
    finds the patch's key in its properties and marks the patch sent."""
    await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    bed.sims.faults.enabled_for = {"chatkitty"}
    bed.sims.faults.set(rate_commit_then_fail=1.0)
    await bed.deliverer.run_pass()  # the reply is stored, unanswered: reconciled next
    bed.clock.advance(120)
    await bed.deliverer.run_pass()  # found; its patch is applied, unanswered
    bed.sims.faults.clear()
    key = followup_key("k-drop", KIND_PATCH)
    assert bed.rows()[key].state == "sending"
    bed.clock.advance(120)
    out = await bed.deliverer.run_pass()
    assert out.reconciled_sent == 1
    assert bed.rows()[key].state == "sent"


async def test_the_patch_of_a_root_that_is_gone_is_dropped_with_the_reason(
    bed: Bed,
) -> None:
    """A patch whose root was deleted before it went: dropped (there is nothing to
    patch), holding nothing up, and the listing has no root any more."""
    root = await posted_root(bed)
    (recorded,) = bed.store.thread_roots_sync(CHANNEL)
    patch = root_patch(text("k-drop", event="price_drop"), recorded, reply_id=1)
    bed.sims.chatkitty.delete_message(int(root["id"]))
    await bed.queue(patch, text("k-next", "li_2"))
    out = await bed.deliverer.run_pass()
    row = bed.rows()[patch.key]
    assert (row.state, out.dropped, out.failed) == ("dropped", 1, 0)
    assert "gone" in (row.last_error or "")
    assert bed.rows()["k-next"].state == "sent"
    assert [r.listing_id for r in bed.store.thread_roots_sync(CHANNEL)] == ["li_2"]


async def test_a_text_with_threads_off_goes_to_the_channel_even_with_a_root(bed: Bed) -> None:
    """``threaded=False`` (messages.threads off for its subscription): a channel message,
    and the listing's root stays the first message."""
    await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000, threaded=False))
    await bed.deliverer.run_pass()
    assert [meta(m)["key"] for m in bed.top()] == ["k-new", "k-drop"]
    (root,) = bed.store.thread_roots_sync(CHANNEL)
    assert root.root_key == "k-new"


async def test_a_service_without_threads_gets_channel_messages(bed: Bed) -> None:
    """Every thread route answers 404: each event goes to the channel, nothing fails."""
    await posted_root(bed)
    bed.sims.chatkitty.threads_unavailable = True
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    await bed.queue(text("k-status", event="status_change", status="pending"))
    out = await bed.deliverer.run_pass()
    assert out.failed == 0
    assert [meta(m)["key"] for m in bed.top()] == ["k-new", "k-drop", "k-status"]


async def test_a_digest_is_the_root_of_every_listing_it_tells(bed: Bed) -> None:
    """A later event about a listing told by a digest replies in the digest's thread,
    and the digest's properties keep that listing's current state under its id."""
    items = [
        DigestItem(f"k-{lid}", "kotohomes", lid, "new", ("sub-a",), f"line {lid}")
        for lid in ("li_1", "li_2")
    ]
    digest = build_digest(CHANNEL, items, reason="burst", labels=["sub-a"])
    head = OutgoingMessage(
        key=digest.key,
        channel_id=CHANNEL,
        source="kotohomes",
        listing_id="",
        event="digest",
        subscriptions=("sub-a",),
        body=digest.body,
        properties=digest.properties,
    )
    await bed.queue(head)
    await bed.deliverer.run_pass()
    (posted,) = bed.top()
    await bed.queue(text("k-drop", "li_2", event="price_drop", price=450_000))
    await bed.deliverer.run_pass()
    assert bed.replies(posted) == ["k-drop"]
    props = bed.sims.chatkitty.all_messages()[0]["properties"]
    assert props["current_listings"]["kotohomes:li_2"]["price"]["amount"] == 450_000
    assert props["listingbot"]["key"] == digest.key


async def test_outbox_list_says_which_rows_are_replies_and_patches(
    bed: Bed, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`outbox list` names a reply's thread and the message a patch patches."""
    from listingbot import cli  # noqa: PLC0415

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    text_ = config_text(
        bed.sims,
        "- name: ny\n  source: kotohomes\n  channel: 702\n  filters: {zip_codes: ['10001']}\n",
        state_path=tmp_path / "state.sqlite3",
        sources=("kotohomes",),
    )
    config = str(write_config(tmp_path, text_))
    root = await posted_root(bed)
    await bed.queue(text("k-drop", event="price_drop", price=450_000))
    await bed.deliverer.run_pass()
    capsys.readouterr()
    assert cli.main(["outbox", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"k-drop\n  sent · channel 702 · price_drop · reply in the thread of {root['id']}" in out
    patch = followup_key("k-drop", KIND_PATCH)
    assert f"{patch}\n  sent · channel 702 · price_drop · patch of message {root['id']}" in out


async def test_a_photo_stored_but_unanswered_is_found_in_the_channel_not_sent_twice(
    bed: Bed,
) -> None:
    """ChatKitty stores a FILE message and fails the answer: reconciliation finds the
    photo by its own key in the channel; it is posted once."""
    url = f"{bed.sims.kotohomes_url}/photos/li_1/0_large.jpg"
    photo = photo_message(dataclasses.replace(text("k-new"), photo=url))
    assert photo is not None
    await bed.queue(photo)
    await stored_then_failed(bed)
    assert bed.rows()[photo.key].state == "sending"
    bed.clock.advance(120)
    out = await bed.deliverer.run_pass()
    assert out.reconciled_sent == 1
    files = [m for m in bed.sims.chatkitty.messages[CHANNEL] if "file" in m]
    assert [meta(m)["key"] for m in files] == [photo.key]
    assert files[0]["groupTag"] == "listing-k-new"
