"""ChatKittyClient: HAL channel pages, single-attempt sends, message cursor pages."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from listingbot.clients.chatkitty import Channel, ChatKittyClient, SentMessage
from listingbot.clock import FakeClock
from listingbot.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from tests.clients.conftest import FakeServer, Reply, Seen

CLIENT_ID = "ck-id-123"
CLIENT_SECRET = "ck-secret-XYZ"


class Tokens:
    def __init__(self) -> None:
        self.issued = 0

    def __call__(self, _: Seen) -> Reply:
        self.issued += 1
        return Reply(json={"access_token": f"ck-tok-{self.issued}", "expires_in": 43200})


def make(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    *,
    prefix: str = "/v1",
    timeout_s: float = 5.0,
) -> ChatKittyClient:
    return ChatKittyClient(
        api_url=server.url,
        path_prefix=prefix,
        token_url=f"{server.url}/oauth/token",
        client_id=SecretStr(CLIENT_ID),
        client_secret=SecretStr(CLIENT_SECRET),
        session=session,
        clock=clock,
        timeout_s=timeout_s,
    )


@pytest.fixture
def tokens(server: FakeServer) -> Tokens:
    issuer = Tokens()
    server.script("POST", "/oauth/token", issuer)
    return issuer


def channel(n: int) -> dict[str, Any]:
    return {"id": n, "type": "PUBLIC", "name": f"ch-{n}", "displayName": f"Channel {n}"}


def channel_pages(server_url: str, channels: list[dict[str, Any]], size: int) -> Any:
    def handle(seen: Seen) -> Reply:
        query = dict(seen.query)
        number, size_asked = int(query["page"]), int(query["size"])
        assert size_asked == size
        chunk = channels[number * size : (number + 1) * size]
        total_pages = -(-len(channels) // size)
        body: dict[str, Any] = {
            "_links": {"self": {"href": f"{server_url}/v1/channels?page={number}&size={size}"}},
            "page": {
                "size": size,
                "totalElements": len(channels),
                "totalPages": total_pages,
                "number": number,
            },
        }
        if chunk:
            body["_embedded"] = {"channels": chunk}
        if number + 1 < total_pages:
            body["_links"]["next"] = {"href": f"{server_url}/v1/channels?page={number + 1}"}
        return Reply(json=body)

    return handle


async def test_list_channels_follows_zero_based_pages(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """Pages 0, 1, 2 are requested by number and every channel is returned."""
    server.script(
        "GET", "/v1/channels", channel_pages(server.url, [channel(n) for n in range(5)], 2)
    )
    channels = await make(server, session, clock).list_channels(page_size=2)
    assert [c.id for c in channels] == [0, 1, 2, 3, 4]
    assert channels[1] == Channel(id=1, name="ch-1", display_name="Channel 1", type="PUBLIC")
    assert [dict(r.query)["page"] for r in server.seen("GET", "/v1/channels")] == ["0", "1", "2"]


async def test_list_channels_accepts_an_empty_page_without_embedded(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """No channels: the page has no `_embedded` key at all, and that is an empty list."""
    server.script("GET", "/v1/channels", channel_pages(server.url, [], 100))
    assert await make(server, session, clock).list_channels() == []


async def test_channels_without_an_id_are_skipped(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """A channel resource with no usable id is dropped; direct channels have no name."""
    body = {
        "_embedded": {"channels": [{"type": "PUBLIC"}, {"id": 9, "type": "DIRECT"}]},
        "page": {"size": 100, "totalPages": 1, "number": 0},
    }
    server.script("GET", "/v1/channels", Reply(json=body))
    channels = await make(server, session, clock).list_channels()
    assert channels == [Channel(id=9, name="", display_name=None, type="DIRECT")]


@pytest.mark.parametrize(
    ("prefix", "path"),
    [
        ("/v1", "/v1/channels"),
        ("", "/channels"),
        ("/v1/applications/1/", "/v1/applications/1/channels"),
    ],
)
async def test_the_path_prefix_is_configurable(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    tokens: Tokens,
    prefix: str,
    path: str,
) -> None:
    """The three path layouts ChatKitty has used are all reachable."""
    server.script("GET", path, channel_pages(server.url, [channel(702)], 100))
    listed = await make(server, session, clock, prefix=prefix).list_channels()
    assert [c.id for c in listed] == [702]


async def test_send_message_posts_camel_case_text_with_properties(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """POST {type: TEXT, body, properties} with a Basic-auth token; returns the message id."""
    answer = {"id": 44902, "type": "SYSTEM_TEXT", "channelId": 702, "createdTime": "2026-01-01"}
    server.script("POST", "/v1/channels/702/messages", Reply(json=answer))
    sent = await make(server, session, clock).send_message(
        702, "New listing", {"listingbot": {"key": "k1"}}
    )
    assert sent == SentMessage(id=44902, channel_id=702, created_time="2026-01-01")
    request = server.seen("POST", "/v1/channels/702/messages")[0]
    assert request.json == {
        "type": "TEXT",
        "body": "New listing",
        "properties": {"listingbot": {"key": "k1"}},
    }
    assert request.headers["Authorization"] == "Bearer ck-tok-1"
    assert server.seen("POST", "/oauth/token")[0].headers["Authorization"].startswith("Basic ")


async def test_send_message_makes_a_single_attempt_on_500(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """A 500 is not retried (it may have been stored): one POST, ambiguous error."""
    server.script("POST", "/v1/channels/702/messages", Reply(500, json={"message": "oops"}))
    with pytest.raises(UpstreamUnavailable) as caught:
        await make(server, session, clock).send_message(702, "hi", {})
    assert caught.value.ambiguous
    assert len(server.seen("POST", "/v1/channels/702/messages")) == 1
    assert clock.sleeps == []


async def test_send_message_timeout_is_ambiguous(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """No answer in time: UpstreamUnavailable(ambiguous=True), one attempt only."""
    server.script("POST", "/v1/channels/702/messages", Reply(hang=True))
    with pytest.raises(UpstreamUnavailable) as caught:
        await make(server, session, clock, timeout_s=0.05).send_message(702, "hi", {})
    assert caught.value.ambiguous
    assert len(server.seen("POST", "/v1/channels/702/messages")) == 1


async def test_send_message_400_is_rejected_with_the_message(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """A ClientError body becomes UpstreamRejected with its message as hint."""
    error = {"error": "ClientError", "message": "body must be a string", "timestamp": "t"}
    server.script("POST", "/v1/channels/702/messages", Reply(400, json=error))
    with pytest.raises(UpstreamRejected) as caught:
        await make(server, session, clock).send_message(702, "hi", {})
    assert (caught.value.status, caught.value.hint) == (400, "body must be a string")


async def test_send_message_to_a_removed_channel_is_not_found(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """The channel is gone: NotFound (a permanent failure for that row)."""
    gone = {"error": "ResourceNotFoundError", "message": "Resource not found"}
    server.script("POST", "/v1/channels/702/messages", Reply(404, json=gone))
    with pytest.raises(NotFound):
        await make(server, session, clock).send_message(702, "hi", {})


async def test_send_message_refreshes_an_expired_token_once(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """401 on a send: one new token and one replay, even though sends are not retried."""
    expired = Reply(401, json={"error": "unauthorized", "error_description": "expired"})
    server.script("POST", "/v1/channels/702/messages", expired, Reply(json={"id": 1}))
    sent = await make(server, session, clock).send_message(702, "hi", {})
    assert sent.id == 1
    assert tokens.issued == 2


async def test_a_send_answer_without_an_id_is_ambiguous(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """200 without a message id: probably stored, so ambiguous rather than failed."""
    server.script("POST", "/v1/channels/702/messages", Reply(json={"type": "TEXT"}))
    with pytest.raises(UpstreamUnavailable) as caught:
        await make(server, session, clock).send_message(702, "hi", {})
    assert caught.value.ambiguous


def message_pages(server_url: str, total: int, size: int) -> Any:
    """Newest-first cursor pages; `next` carries the cursor as an absolute link."""

    def handle(seen: Seen) -> Reply:
        query = dict(seen.query)
        start = int(query.get("next", total))
        ids = list(range(start, max(start - size, 0), -1))
        body: dict[str, Any] = {
            "_embedded": {"messages": [{"id": i, "properties": {}} for i in ids]},
            "page": {"size": size},
            "_links": {"self": {"href": f"{server_url}/v1/channels/702/messages"}},
        }
        if ids and ids[-1] > 1:
            body["_links"]["next"] = {
                "href": f"{server_url}/v1/channels/702/messages"
                f"?size={size}&start={total}&next={ids[-1] - 1}&relation=NEXT"
            }
        return Reply(json=body)

    return handle


async def test_recent_messages_follows_next_links_until_absent(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """All messages, newest first, by following `_links.next.href` as returned."""
    server.script("GET", "/v1/channels/702/messages", message_pages(server.url, 7, 3))
    messages = await make(server, session, clock).recent_messages(702, page_size=3)
    assert [m["id"] for m in messages] == [7, 6, 5, 4, 3, 2, 1]
    followed = server.seen("GET", "/v1/channels/702/messages")
    assert followed[0].query == [("size", "3")]
    assert dict(followed[1].query)["relation"] == "NEXT"


async def test_recent_messages_stops_at_the_limit(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """limit=4 with pages of 3: two pages fetched, four messages returned."""
    server.script("GET", "/v1/channels/702/messages", message_pages(server.url, 50, 3))
    messages = await make(server, session, clock).recent_messages(702, limit=4, page_size=3)
    assert [m["id"] for m in messages] == [50, 49, 48, 47]
    assert len(server.seen("GET", "/v1/channels/702/messages")) == 2


async def test_recent_messages_refuses_links_to_another_host(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, tokens: Tokens
) -> None:
    """The bearer token is never sent to a host other than the configured API."""
    body = {
        "_embedded": {"messages": [{"id": 1}]},
        "_links": {"next": {"href": "https://evil.example/v1/channels/702/messages?next=0"}},
    }
    server.script("GET", "/v1/channels/702/messages", Reply(json=body))
    with pytest.raises(UpstreamUnavailable, match="another host"):
        await make(server, session, clock).recent_messages(702)


def test_repr_shows_no_credentials(session: aiohttp.ClientSession, clock: FakeClock) -> None:
    """The client's repr names the API, not the credentials."""
    client = ChatKittyClient(
        api_url="http://h",
        path_prefix="/v1",
        token_url="http://h/oauth/token",
        client_id=SecretStr(CLIENT_ID),
        client_secret=SecretStr(CLIENT_SECRET),
        session=session,
        clock=clock,
    )
    assert CLIENT_ID not in repr(client)
    assert CLIENT_SECRET not in repr(client)
