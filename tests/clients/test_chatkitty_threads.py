"""ChatKittyClient against the ChatKitty simulator, whose schemas check every body: thread
replies, FILE messages, merge patches, the application-wide message list, message pages
and moderators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from listingbot.clients.chatkitty import ChatKittyClient, ChatUser, ExternalFile
from listingbot.clock import FakeClock
from listingbot.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from listingbot.sim._http import start_app
from listingbot.sim.chatkitty import ChatKittySim
from listingbot.sim.faults import Faults
from tests.clients.conftest import FakeServer, Reply

CHANNELS = [(702, "homes", "Homes"), (703, "offices", "Offices")]
PHOTO = ExternalFile(
    url="http://127.0.0.1:9/p/1.jpg", name="1.jpg", content_type="image/jpeg", size=7
)


@pytest.fixture
def sim(clock: FakeClock) -> ChatKittySim:
    return ChatKittySim(channels=CHANNELS, clock=clock, faults=Faults())


@pytest.fixture
async def client(
    sim: ChatKittySim, session: aiohttp.ClientSession, clock: FakeClock
) -> AsyncIterator[ChatKittyClient]:
    runner, url = await start_app(sim.app(), "127.0.0.1", 0)
    try:
        yield ChatKittyClient(
            api_url=url,
            path_prefix="/v1",
            token_url=f"{url}/oauth/token",
            client_id=SecretStr("test-ck-id"),
            client_secret=SecretStr("test-ck-secret"),
            session=session,
            clock=clock,
            timeout_s=5.0,
        )
    finally:
        await runner.cleanup()


async def _collect(pages: AsyncIterator[list[dict[str, Any]]]) -> list[list[int]]:
    return [[m["id"] for m in page] async for page in pages]


async def test_a_thread_reply_lands_in_the_thread_with_its_group_tag(
    client: ChatKittyClient, sim: ChatKittySim
) -> None:
    """reply_in_thread posts a TEXT reply under the message; the answer names its channel."""
    root = sim.post_system(702, "root")
    sent = await client.reply_in_thread(root["id"], "Price drop", {"k": 1}, group_tag="g")
    (reply,) = sim.thread(root["id"])
    assert (sent.id, sent.channel_id) == (reply["id"], 702)
    assert (reply["body"], reply["properties"], reply["groupTag"]) == ("Price drop", {"k": 1}, "g")


async def test_a_reply_to_a_deleted_message_is_not_found(
    client: ChatKittyClient, sim: ChatKittySim
) -> None:
    """The root is gone: NotFound, so the caller can post a channel message instead."""
    root = sim.post_system(702, "root")
    sim.delete_message(root["id"])
    with pytest.raises(NotFound):
        await client.reply_in_thread(root["id"], "x", {})


async def test_a_reply_is_one_attempt(client: ChatKittyClient, sim: ChatKittySim) -> None:
    """A 500 on a reply is ambiguous and not repeated (there is no idempotency key)."""
    root = sim.post_system(702, "root")
    await client.list_channels()  # (the token is in hand before the fault)
    sim.faults.set(rate_500=1.0)
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.reply_in_thread(root["id"], "x", {})
    assert caught.value.ambiguous
    assert sum(r.method == "POST" and "/threads/" in r.path for r in sim.requests) == 1


async def test_a_file_message_satisfies_the_schema(
    client: ChatKittyClient, sim: ChatKittySim
) -> None:
    """send_file posts an external file the simulator's schema accepts, grouped by tag."""
    sent = await client.send_file(702, PHOTO, {"k": 2}, group_tag="g1")
    (message,) = sim.messages[702]
    assert message["id"] == sent.id
    assert message["type"] == "SYSTEM_FILE"
    assert message["file"] == {
        "type": "EXTERNAL",
        "url": PHOTO.url,
        "name": "1.jpg",
        "contentType": "image/jpeg",
        "size": 7,
    }
    assert message["groupTag"] == "g1"


async def test_a_file_can_go_in_a_thread(client: ChatKittyClient, sim: ChatKittySim) -> None:
    """send_file(thread_of=…) posts the file as a thread reply."""
    root = sim.post_system(702, "root")
    await client.send_file(702, PHOTO, {}, thread_of=root["id"])
    assert [m["type"] for m in sim.thread(root["id"])] == ["SYSTEM_FILE"]


async def test_a_refused_file_is_rejected(client: ChatKittyClient, sim: ChatKittySim) -> None:
    """refuse_files_with=400 makes send_file raise UpstreamRejected; nothing is stored."""
    sim.refuse_files_with = 400
    with pytest.raises(UpstreamRejected):
        await client.send_file(702, PHOTO, {})
    assert sim.messages[702] == []


async def test_text_goes_out_with_a_group_tag(client: ChatKittyClient, sim: ChatKittySim) -> None:
    """send_message(group_tag=…) tags the text so it groups with its photo."""
    await client.send_message(702, "text", {}, group_tag="g1")
    assert sim.messages[702][0]["groupTag"] == "g1"


async def test_properties_are_merge_patched(client: ChatKittyClient, sim: ChatKittySim) -> None:
    """patch_message_properties merges nested keys and removes keys set to None."""
    root = sim.post_system(702, "root", properties={"listingbot": {"price": 1, "old": True}})
    answer = await client.patch_message_properties(
        root["id"], {"listingbot": {"price": 2, "old": None, "status": "pending"}}
    )
    expected = {"listingbot": {"price": 2, "status": "pending"}}
    assert answer["properties"] == expected
    assert (await client.get_message(root["id"]))["properties"] == expected
    assert sim.messages[702][0]["body"] == "root"


async def test_patching_a_deleted_message_is_not_found(
    client: ChatKittyClient, sim: ChatKittySim
) -> None:
    """The root is gone: NotFound."""
    root = sim.post_system(702, "root")
    sim.delete_message(root["id"])
    with pytest.raises(NotFound):
        await client.patch_message_properties(root["id"], {"a": 1})


async def test_a_patch_is_retried_after_a_server_error(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A merge patch applied twice leaves the same message, so a 503 is retried; it goes
    out as application/json+merge-patch."""
    server.script("POST", "/oauth/token", Reply(json={"access_token": "t", "expires_in": 600}))
    server.script("PATCH", "/v1/messages/5", Reply(503, json={}), Reply(json={"id": 5}))
    scripted = ChatKittyClient(
        api_url=server.url,
        path_prefix="/v1",
        token_url=f"{server.url}/oauth/token",
        client_id=SecretStr("id"),
        client_secret=SecretStr("secret"),
        session=session,
        clock=clock,
    )
    assert (await scripted.patch_message_properties(5, {"a": 1}))["id"] == 5
    sent = server.seen("PATCH", "/v1/messages/5")
    assert len(sent) == 2
    assert sent[-1].headers["Content-Type"] == "application/json+merge-patch"
    assert sent[-1].json == {"properties": {"a": 1}}


async def test_application_messages_are_filtered_and_paged(
    client: ChatKittyClient, sim: ChatKittySim
) -> None:
    """message_pages(query=…) walks every channel's matching messages, newest first."""
    wanted = []
    for n in range(5):
        wanted.append(sim.post_as(702 + n % 2, "jane", f"/listings {n}")["id"])
        sim.post_as(702, "bob", "chatter")
    pages = await _collect(client.message_pages(query="/listings", page_size=2))
    assert pages == [wanted[:-3:-1], wanted[2:0:-1], wanted[:1]]


async def test_application_messages_filter_by_username(
    client: ChatKittyClient, sim: ChatKittySim
) -> None:
    """message_pages(username=…) keeps one sender's messages."""
    sim.post_as(702, "jane", "a")
    bob = sim.post_as(703, "bob", "b")
    assert await _collect(client.message_pages(username="bob")) == [[bob["id"]]]


async def test_channel_message_pages_walk_to_the_first_message(
    client: ChatKittyClient, sim: ChatKittySim
) -> None:
    """channel_message_pages yields the channel's top-level messages, newest first."""
    ids = [sim.post_as(702, "jane", f"m{n}")["id"] for n in range(3)]
    sim.post_as(703, "jane", "elsewhere")
    assert await _collect(client.channel_message_pages(702, page_size=2)) == [
        ids[:0:-1],
        ids[:1],
    ]


async def test_thread_messages_back_to_a_moment(
    client: ChatKittyClient, sim: ChatKittySim, clock: FakeClock
) -> None:
    """thread_messages_back_to pages a thread's replies until one predates ``since``."""
    root = sim.post_system(702, "root")
    old = sim.post_system(702, "old", thread_of=root["id"])
    clock.advance(7200)
    since = clock.now()
    clock.advance(3600)
    new = [sim.post_system(702, f"new {n}", thread_of=root["id"])["id"] for n in range(3)]
    messages, complete = await client.thread_messages_back_to(
        root["id"], since - timedelta(minutes=1), max_messages=50, page_size=2
    )
    assert complete
    assert [m["id"] for m in messages] == [*new[::-1], old["id"]]


async def test_an_unfinished_thread_walk_says_so(
    client: ChatKittyClient, sim: ChatKittySim, clock: FakeClock
) -> None:
    """Stopping at max_messages with older replies left is not complete."""
    root = sim.post_system(702, "root")
    for n in range(5):
        sim.post_system(702, f"r{n}", thread_of=root["id"])
    messages, complete = await client.thread_messages_back_to(
        root["id"], clock.now() - timedelta(days=1), max_messages=2, page_size=2
    )
    assert (len(messages), complete) == (2, False)


async def test_moderators_are_read_across_pages(client: ChatKittyClient, sim: ChatKittySim) -> None:
    """channel_moderators follows numbered pages and returns every moderator."""
    sim.set_moderators(702, ["jane", "bob", "ann"])
    moderators = await client.channel_moderators(702, page_size=2)
    assert [m.name for m in moderators] == ["jane", "bob", "ann"]
    assert all(isinstance(m, ChatUser) and m.id is not None for m in moderators)


async def test_no_moderators_is_an_empty_list(client: ChatKittyClient) -> None:
    """A channel without moderators answers an empty page: no one."""
    assert await client.channel_moderators(703) == []
