"""The ChatKitty simulator: tokens, HAL channel pages, the message schema, cursor pages,
patches, threads and the documented error bodies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from listingbot.clock import FakeClock
from listingbot.sim.chatkitty import ApiProblem, ChatKittySim
from tests.sim.helpers import Serve, basic, bearer

CLIENT = ("test-ck-id", "test-ck-secret")
CHANNELS = [(700 + n, f"channel-{n}", f"Channel {n}") for n in range(5)]
AUTH_ERROR_KEYS = {"error", "error_description"}
API_ERROR_KEYS = {"error", "message", "timestamp"}
FILE = {"url": "https://x.test/a.jpg", "name": "a.jpg", "contentType": "image/jpeg", "size": 9}


@pytest.fixture
def sim(clock: FakeClock) -> ChatKittySim:
    return ChatKittySim(channels=CHANNELS, clock=clock)


@pytest.fixture
async def root(serve: Serve, sim: ChatKittySim) -> AsyncIterator[str]:
    async with serve(sim.app()) as base:
        yield base


@pytest.fixture
def api(root: str) -> str:
    return f"{root}/v1"


async def _token_response(http: aiohttp.ClientSession, root: str) -> Any:
    headers = {"Authorization": basic(*CLIENT)}
    data = {"grant_type": "client_credentials"}
    async with http.post(f"{root}/oauth/token", data=data, headers=headers) as response:
        assert response.status == 200
        return await response.json()


@pytest.fixture
async def auth(http: aiohttp.ClientSession, root: str) -> dict[str, str]:
    return bearer((await _token_response(http, root))["access_token"])


async def _send(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], body: Any
) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=auth) as response:
        return response.status, await response.json()


async def test_token_with_basic_auth(http: aiohttp.ClientSession, root: str) -> None:
    """Basic client id:secret plus grant_type gives a bearer token, ~12 h."""
    body = await _token_response(http, root)
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 43200
    assert body["scope"]
    assert body["access_token"]


async def test_token_is_reused_while_valid_with_a_shrinking_expiry(
    http: aiohttp.ClientSession, root: str, clock: FakeClock, sim: ChatKittySim
) -> None:
    """Asking again within the lifetime returns the same token with less time left."""
    first = await _token_response(http, root)
    clock.advance(308)
    second = await _token_response(http, root)
    assert second["access_token"] == first["access_token"]
    assert second["expires_in"] == 42892
    assert sim.tokens_issued == 2


async def test_bad_client_credentials_are_401_unauthorized(
    http: aiohttp.ClientSession, root: str
) -> None:
    """A wrong secret: 401 with the {error, error_description} body."""
    headers = {"Authorization": basic("test-ck-id", "nope")}
    data = {"grant_type": "client_credentials"}
    async with http.post(f"{root}/oauth/token", data=data, headers=headers) as response:
        assert response.status == 401
        body = await response.json()
    assert set(body) == AUTH_ERROR_KEYS
    assert body["error"] == "unauthorized"


async def test_token_request_without_basic_auth_is_401(
    http: aiohttp.ClientSession, root: str
) -> None:
    """Credentials only in the form are not enough: Basic auth is required."""
    data = {"grant_type": "client_credentials", "username": CLIENT[0], "password": CLIENT[1]}
    async with http.post(f"{root}/oauth/token", data=data) as response:
        assert response.status == 401


async def test_missing_bearer_is_401_full_authentication_required(
    http: aiohttp.ClientSession, api: str
) -> None:
    """No token: 401 AuthenticationError."""
    async with http.get(f"{api}/channels") as response:
        assert response.status == 401
        body = await response.json()
    assert body == {
        "error": "unauthorized",
        "error_description": "Full authentication is required to access this resource",
    }


async def test_unknown_bearer_is_401(http: aiohttp.ClientSession, api: str) -> None:
    """A token the server never issued is refused with the auth error body."""
    async with http.get(f"{api}/channels", headers=bearer("forged")) as response:
        assert response.status == 401
        assert set(await response.json()) == AUTH_ERROR_KEYS


async def test_token_expires_after_expires_in(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], clock: FakeClock
) -> None:
    """After expires_in seconds on the shared clock the token is refused."""
    async with http.get(f"{api}/channels", headers=auth) as response:
        assert response.status == 200
    clock.advance(43200)
    async with http.get(f"{api}/channels", headers=auth) as response:
        assert response.status == 401
        assert (await response.json())["error_description"] == "Access token expired"


async def test_expire_tokens_forces_a_new_token(
    http: aiohttp.ClientSession, root: str, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """expire_tokens(): the old token fails, the next token request issues a new one."""
    sim.expire_tokens()
    async with http.get(f"{api}/channels", headers=auth) as response:
        assert response.status == 401
    fresh = await _token_response(http, root)
    assert bearer(fresh["access_token"]) != auth


async def test_channels_are_hal_pages_with_zero_based_numbers(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """page=1&size=2 of 5 channels: embedded channels, links by rel, page metadata."""
    async with http.get(f"{api}/channels", params={"page": "1", "size": "2"}, headers=auth) as r:
        body = await r.json()
    assert [c["id"] for c in body["_embedded"]["channels"]] == [702, 703]
    assert body["page"] == {"size": 2, "totalElements": 5, "totalPages": 3, "number": 1}
    links = body["_links"]
    assert set(links) == {"first", "prev", "self", "next", "last"}
    assert links["next"]["href"] == f"{api}/channels?page=2&size=2"
    assert links["last"]["href"] == f"{api}/channels?page=2&size=2"
    channel = body["_embedded"]["channels"][0]
    assert {"id", "type", "name", "displayName", "properties", "createdTime"} <= channel.keys()
    assert channel["_links"]["self"]["href"] == f"{api}/channels/702"


async def test_last_channel_page_has_no_next(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """The last page links back but not forward."""
    async with http.get(f"{api}/channels", params={"page": "2", "size": "2"}, headers=auth) as r:
        body = await r.json()
    assert "next" not in body["_links"]
    assert [c["id"] for c in body["_embedded"]["channels"]] == [704]


async def test_empty_channel_page_omits_embedded(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """With no channels there is no _embedded key at all."""
    for channel_id, _, _ in CHANNELS:
        sim.remove_channel(channel_id)
    async with http.get(f"{api}/channels", headers=auth) as response:
        body = await response.json()
    assert "_embedded" not in body
    assert body["page"] == {"size": 25, "totalElements": 0, "totalPages": 0, "number": 0}
    assert set(body["_links"]) == {"self"}


async def test_get_channel_and_404_api_error(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """A known channel is returned; an unknown one is a 404 ResourceNotFoundError."""
    async with http.get(f"{api}/channels/703", headers=auth) as response:
        assert (await response.json())["name"] == "channel-3"
    async with http.get(f"{api}/channels/999", headers=auth) as response:
        assert response.status == 404
        body = await response.json()
    assert set(body) == API_ERROR_KEYS
    assert body["error"] == "ResourceNotFoundError"


async def test_send_returns_a_system_text_message_resource(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """No user: stored as SYSTEM_TEXT; properties are stored and echoed."""
    properties = {"listingbot": {"key": "k-1", "event": "new"}}
    status, body = await _send(
        http,
        f"{api}/channels/702/messages",
        auth,
        {"type": "TEXT", "body": "New listing", "properties": properties},
    )
    assert status == 200
    # The schema's required fields, in camelCase as on the wire.
    assert {"id", "type", "channelId", "createdTime", "nestedLevel", "properties"} <= body.keys()
    assert body["type"] == "SYSTEM_TEXT"
    assert (body["channelId"], body["body"], body["nestedLevel"]) == (702, "New listing", 0)
    assert body["properties"] == properties
    assert body["_links"]["self"]["href"] == f"{api}/messages/{body['id']}"
    assert body["_links"]["channel"]["href"] == f"{api}/channels/702"
    stored = sim.messages[702]
    assert [m["id"] for m in stored] == [body["id"]]
    assert stored[0]["properties"] == properties


async def test_send_on_behalf_of_a_user_is_a_text_message(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """With a user reference the message type is TEXT."""
    body = {"type": "TEXT", "body": "hi", "user": {"username": "jane@example.com"}}
    status, message = await _send(http, f"{api}/channels/702/messages", auth, body)
    assert status == 200
    assert message["type"] == "TEXT"


async def test_file_message_is_stored_as_system_file(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """type FILE with an external file becomes SYSTEM_FILE."""
    file = {"url": "https://x.test/a.jpg", "name": "a.jpg", "contentType": "image/jpeg", "size": 9}
    status, message = await _send(
        http, f"{api}/channels/702/messages", auth, {"type": "FILE", "file": file}
    )
    assert status == 200
    assert message["type"] == "SYSTEM_FILE"
    assert message["file"]["url"] == file["url"]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "SHOUT", "body": "x"},
        {"body": "no type"},
        {"type": "TEXT"},
        {"type": "TEXT", "body": 42},
        {"type": "TEXT", "body": "   "},
        {"type": "TEXT", "body": "x", "properties": ["not", "an", "object"]},
        {"type": "FILE"},
        {"type": "FILE", "file": {"url": "https://x.test/a"}},
        {"type": "FILE", "file": {**FILE, "size": -1}},
        {"type": "FILE", "file": {**FILE, "size": "9"}},
        {"type": "FILE", "file": {**FILE, "url": "/relative.jpg"}},
        {"type": "FILE", "file": {**FILE, "contentType": "jpeg"}},
        {"type": "FILE", "file": {**FILE, "caption": "x"}},
        {"type": "FILE", "file": FILE, "body": "text too"},
        {"type": "TEXT", "body": "x", "file": FILE},
        {"type": "TEXT", "body": "x", "group_tg": "g"},
        {"type": "TEXT", "body": "x", "groupTag": 7},
        {"type": "TEXT", "body": "x", "user": {"nickname": "j"}},
        ["a", "list"],
    ],
)
async def test_bodies_that_do_not_fit_the_message_schema_are_400(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim, body: Any
) -> None:
    """Schema violations: 400 ClientError with message and timestamp; nothing stored."""
    status, error = await _send(http, f"{api}/channels/702/messages", auth, body)
    assert status == 400
    assert set(error) == API_ERROR_KEYS
    assert error["error"] == "ClientError"
    assert sim.messages[702] == []


async def test_invalid_json_is_400(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """A body that is not JSON at all is a ClientError."""
    headers = {**auth, "Content-Type": "application/json"}
    async with http.post(f"{api}/channels/702/messages", data="{oops", headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["error"] == "ClientError"


async def test_non_json_content_type_is_415(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """The send endpoint consumes application/json."""
    headers = {**auth, "Content-Type": "text/plain"}
    async with http.post(f"{api}/channels/702/messages", data="hello", headers=headers) as r:
        assert r.status == 415
        assert set(await r.json()) == API_ERROR_KEYS


async def test_send_to_a_removed_channel_is_404(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """After remove_channel the send is a ResourceNotFoundError."""
    sim.remove_channel(702)
    status, body = await _send(
        http, f"{api}/channels/702/messages", auth, {"type": "TEXT", "body": "x"}
    )
    assert status == 404
    assert body["error"] == "ResourceNotFoundError"


async def test_denied_channel_is_403_access_denied(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """A channel the application may not use answers 403 with the auth error body."""
    sim.denied_channels.add(702)
    status, body = await _send(
        http, f"{api}/channels/702/messages", auth, {"type": "TEXT", "body": "x"}
    )
    assert status == 403
    assert body == {"error": "access_denied", "error_description": "Access is denied"}


async def _post_many(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], count: int
) -> list[int]:
    ids = []
    for n in range(count):
        status, body = await _send(
            http, f"{api}/channels/702/messages", auth, {"type": "TEXT", "body": f"m{n}"}
        )
        assert status == 200
        ids.append(body["id"])
    return ids


async def test_message_pages_are_newest_first_and_follow_next_links(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """size=2 over 5 messages: three pages via _links.next, none after the last."""
    ids = await _post_many(http, api, auth, 5)
    url: str | None = f"{api}/channels/702/messages?size=2"
    pages: list[list[int]] = []
    while url is not None:
        async with http.get(url, headers=auth) as response:
            body = await response.json()
        pages.append([m["id"] for m in body["_embedded"]["messages"]])
        assert body["page"]["size"] == 2
        assert "relation=SELF" in body["_links"]["self"]["href"]
        nxt = body["_links"].get("next")
        url = None if nxt is None else nxt["href"]
        if nxt is not None:
            assert "relation=NEXT" in nxt["href"]
            assert body["page"]["next"]
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]


async def test_a_page_walk_is_pinned_to_its_start(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """Messages posted mid-walk do not shift the older pages."""
    ids = await _post_many(http, api, auth, 3)
    async with http.get(f"{api}/channels/702/messages?size=2", headers=auth) as response:
        first = await response.json()
    await _post_many(http, api, auth, 2)
    async with http.get(first["_links"]["next"]["href"], headers=auth) as response:
        second = await response.json()
    assert [m["id"] for m in second["_embedded"]["messages"]] == [ids[0]]


async def test_empty_channel_message_page(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """No messages: no _embedded, no next."""
    async with http.get(f"{api}/channels/703/messages", headers=auth) as response:
        body = await response.json()
    assert "_embedded" not in body
    assert "next" not in body["_links"]
    assert body["page"]["size"] == 25


async def test_get_and_merge_patch_a_message(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """PATCH with application/json+merge-patch merges properties (null deletes)."""
    _, sent = await _send(
        http,
        f"{api}/channels/702/messages",
        auth,
        {"type": "TEXT", "body": "v1", "properties": {"a": 1, "b": {"c": 2, "d": 3}}},
    )
    patch = '{"body": "v2", "properties": {"a": null, "b": {"d": 4}}}'
    headers = {**auth, "Content-Type": "application/json+merge-patch"}
    async with http.patch(f"{api}/messages/{sent['id']}", data=patch, headers=headers) as r:
        assert r.status == 200
    async with http.get(f"{api}/messages/{sent['id']}", headers=auth) as response:
        message = await response.json()
    assert message["body"] == "v2"
    assert message["properties"] == {"b": {"c": 2, "d": 4}}
    assert sim.messages[702][0]["properties"] == {"b": {"c": 2, "d": 4}}


async def test_patch_with_plain_json_is_415(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """The merge-patch content type is required."""
    _, sent = await _send(http, f"{api}/channels/702/messages", auth, {"type": "TEXT", "body": "x"})
    async with http.patch(f"{api}/messages/{sent['id']}", json={"body": "y"}, headers=auth) as r:
        assert r.status == 415


async def test_thread_reply_is_nested_and_listed_separately(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """A reply has nestedLevel 1, lives in the thread, not in the channel's top level."""
    _, parent = await _send(
        http, f"{api}/channels/702/messages", auth, {"type": "TEXT", "body": "parent"}
    )
    status, reply = await _send(
        http, f"{api}/threads/{parent['id']}/messages", auth, {"type": "TEXT", "body": "reply"}
    )
    assert status == 200
    assert (reply["nestedLevel"], reply["channelId"]) == (1, 702)
    assert [m["id"] for m in sim.messages[702]] == [parent["id"]]
    assert [m["id"] for m in sim.replies[parent["id"]]] == [reply["id"]]
    async with http.get(f"{api}/threads/{parent['id']}/messages", headers=auth) as response:
        listed = await response.json()
    assert [m["id"] for m in listed["_embedded"]["messages"]] == [reply["id"]]
    async with http.get(f"{api}/channels/702/messages", headers=auth) as response:
        top = await response.json()
    assert [m["id"] for m in top["_embedded"]["messages"]] == [parent["id"]]


@pytest.mark.parametrize("prefix", ["", "/v1/applications/1"])
async def test_prefix_is_configurable(
    http: aiohttp.ClientSession, serve: Serve, clock: FakeClock, prefix: str
) -> None:
    """The same API is served under "" or the application-scoped layout."""
    sim = ChatKittySim(prefix=prefix, clock=clock)
    async with serve(sim.app()) as root:
        auth = bearer((await _token_response(http, root))["access_token"])
        status, body = await _send(
            http, f"{root}{prefix}/channels/702/messages", auth, {"type": "TEXT", "body": "x"}
        )
    assert status == 200
    assert body["_links"]["self"]["href"].startswith(f"{root}{prefix}/messages/")


async def _get(http: aiohttp.ClientSession, url: str, auth: dict[str, str]) -> tuple[int, Any]:
    async with http.get(url, headers=auth) as response:
        return response.status, await response.json()


def _ids(page: Any) -> list[int]:
    return [m["id"] for m in page.get("_embedded", {}).get("messages", [])]


async def test_a_file_message_reads_snake_case_fields_and_keeps_its_group_tag(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """CreateExternalFileProperties in the schema's own spelling (content_type, group_tag)
    is accepted and echoed camelCase, with the file typed EXTERNAL."""
    file = {"url": FILE["url"], "name": "a.jpg", "content_type": "image/jpeg", "size": 9}
    status, message = await _send(
        http,
        f"{api}/channels/702/messages",
        auth,
        {"type": "FILE", "file": file, "group_tag": "g1"},
    )
    assert status == 200
    assert message["groupTag"] == "g1"
    assert message["file"] == {**FILE, "type": "EXTERNAL"}


async def test_refused_files_answer_the_switched_status_and_store_nothing(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """refuse_files_with refuses FILE messages only; text still goes."""
    sim.refuse_files_with = 400
    status, error = await _send(
        http, f"{api}/channels/702/messages", auth, {"type": "FILE", "file": FILE}
    )
    assert (status, set(error)) == (400, API_ERROR_KEYS)
    status, _ = await _send(
        http, f"{api}/channels/702/messages", auth, {"type": "TEXT", "body": "x"}
    )
    assert status == 200
    assert [m["type"] for m in sim.messages[702]] == ["SYSTEM_TEXT"]


async def test_a_user_post_is_a_text_message_with_its_user(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """post_as stores a TEXT message carrying ChatUserProperties and a user link."""
    posted = sim.post_as(702, "jane", "/listings help")
    status, page = await _get(http, f"{api}/channels/702/messages", auth)
    assert status == 200
    (message,) = page["_embedded"]["messages"]
    assert (message["id"], message["type"], message["body"]) == (
        posted["id"],
        "TEXT",
        "/listings help",
    )
    assert message["user"]["name"] == "jane"
    assert {"id", "type", "displayName", "displayPictureUrl", "presence"} <= message["user"].keys()
    assert message["_links"]["user"]["href"] == f"{api}/users/{message['user']['id']}"


async def test_a_system_post_has_no_user(sim: ChatKittySim) -> None:
    """post_system stores SYSTEM_TEXT, as another integration's message would be."""
    posted = sim.post_system(702, "Maintenance tonight", properties={"bot": "other"})
    assert (posted["type"], "user" in posted, posted["properties"]) == (
        "SYSTEM_TEXT",
        False,
        {"bot": "other"},
    )


async def test_a_user_can_post_in_a_thread(sim: ChatKittySim) -> None:
    """post_as(thread_of=…) replies in that message's thread; another channel's is a 400."""
    root = sim.post_system(702, "root")
    reply = sim.post_as(702, "jane", "in thread", thread_of=root["id"])
    assert sim.thread(root["id"]) == [reply]
    assert root["repliesCount"] == 1
    with pytest.raises(ApiProblem):
        sim.post_as(703, "jane", "wrong channel", thread_of=root["id"])


async def test_channel_messages_filter_by_username(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """username keeps only that sender's messages."""
    sim.post_as(702, "jane", "one")
    bob = sim.post_as(702, "bob", "two")
    sim.post_system(702, "three")
    _, page = await _get(http, f"{api}/channels/702/messages?username=bob", auth)
    assert _ids(page) == [bob["id"]]


async def test_application_messages_filter_by_text_across_channels_and_threads(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """GET /messages?query= finds text messages of every channel and thread, newest first,
    case-insensitively; other messages and file messages stay out."""
    first = sim.post_as(702, "jane", "/listings list")
    sim.post_as(703, "bob", "hello")
    reply = sim.post_as(702, "bob", "/LISTINGS help", thread_of=first["id"])
    third = sim.post_as(704, "ann", "please /listings pause x")
    await _send(http, f"{api}/channels/702/messages", auth, {"type": "FILE", "file": FILE})
    status, page = await _get(http, f"{api}/messages?query=/listings", auth)
    assert status == 200
    assert _ids(page) == [third["id"], reply["id"], first["id"]]


async def test_application_message_pages_keep_their_filter(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """The next links of a filtered walk carry query (and username) on, until the end."""
    wanted = []
    for n in range(5):
        wanted.append(sim.post_as(700 + n, "jane", f"/listings {n}")["id"])
        sim.post_as(700 + n, "jane", f"chatter {n}")
    url: str | None = f"{api}/messages?query=/listings&username=jane&size=2"
    seen: list[int] = []
    while url is not None:
        _, page = await _get(http, url, auth)
        seen += _ids(page)
        url = page["_links"].get("next", {}).get("href")
        assert url is None or ("query=%2Flistings" in url and "username=jane" in url)
    assert seen == wanted[::-1]


async def test_application_messages_leave_out_channels_the_token_cannot_use(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """Denied and removed channels' messages are not listed."""
    kept = sim.post_as(702, "jane", "/listings a")
    sim.post_as(703, "jane", "/listings b")
    sim.post_as(704, "jane", "/listings c")
    sim.denied_channels.add(703)
    sim.remove_channel(704)
    _, page = await _get(http, f"{api}/messages", auth)
    assert _ids(page) == [kept["id"]]


async def test_moderators_are_a_paged_user_list(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """GET /channels/{id}/moderators: PagedModelChatUserResource, zero-based pages."""
    sim.set_moderators(702, ["jane", "bob", "jane"])
    status, first = await _get(http, f"{api}/channels/702/moderators?size=1", auth)
    assert status == 200
    assert [u["name"] for u in first["_embedded"]["users"]] == ["jane"]
    assert first["page"] == {"size": 1, "totalElements": 2, "totalPages": 2, "number": 0}
    _, second = await _get(http, first["_links"]["next"]["href"], auth)
    assert [u["name"] for u in second["_embedded"]["users"]] == ["bob"]
    assert "next" not in second["_links"]


async def test_a_channel_without_moderators_has_an_empty_page(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str]
) -> None:
    """No moderators: no _embedded; an unknown channel is a 404."""
    _, page = await _get(http, f"{api}/channels/703/moderators", auth)
    assert "_embedded" not in page
    assert page["page"]["totalElements"] == 0
    status, _ = await _get(http, f"{api}/channels/999/moderators", auth)
    assert status == 404


async def test_a_thread_is_its_message(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """GET /threads/{id} answers a ReplyThreadResource for message id; 404 otherwise."""
    root = sim.post_system(702, "root")
    status, thread = await _get(http, f"{api}/threads/{root['id']}", auth)
    assert status == 200
    assert (thread["id"], thread["type"]) == (root["id"], "MESSAGE")
    assert {"createdTime", "properties", "_links"} <= thread.keys()
    status, _ = await _get(http, f"{api}/threads/{root['id'] + 100}", auth)
    assert status == 404


async def test_unavailable_threads_answer_404(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """threads_unavailable: a reply to an existing message is a 404 and stores nothing."""
    root = sim.post_system(702, "root")
    sim.threads_unavailable = True
    status, body = await _send(
        http, f"{api}/threads/{root['id']}/messages", auth, {"type": "TEXT", "body": "r"}
    )
    assert (status, body["error"]) == (404, "ResourceNotFoundError")
    assert sim.thread(root["id"]) == []


async def test_a_deleted_message_is_gone_with_its_thread(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """After delete_message: GET, PATCH and thread replies are 404; the channel lists it no more."""
    root = sim.post_system(702, "root")
    sim.post_as(702, "jane", "reply", thread_of=root["id"])
    sim.delete_message(root["id"])
    assert (await _get(http, f"{api}/messages/{root['id']}", auth))[0] == 404
    status, _ = await _send(
        http, f"{api}/threads/{root['id']}/messages", auth, {"type": "TEXT", "body": "r"}
    )
    assert status == 404
    headers = {**auth, "Content-Type": "application/json+merge-patch"}
    async with http.patch(f"{api}/messages/{root['id']}", data="{}", headers=headers) as r:
        assert r.status == 404
    _, page = await _get(http, f"{api}/messages", auth)
    assert _ids(page) == []


async def test_delete_route_removes_a_message(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """DELETE /messages/{id} answers the message's thread resource and removes it."""
    root = sim.post_system(702, "root")
    async with http.delete(f"{api}/messages/{root['id']}", headers=auth) as response:
        assert response.status == 200
        assert (await response.json())["id"] == root["id"]
    assert sim.messages[702] == []


async def test_patch_with_an_unknown_key_is_400(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """Only body and properties can be patched; anything else is named in a 400."""
    root = sim.post_system(702, "root", properties={"a": 1})
    headers = {**auth, "Content-Type": "application/json+merge-patch"}
    data = '{"properties": {"a": 2}, "groupTag": "x"}'
    async with http.patch(f"{api}/messages/{root['id']}", data=data, headers=headers) as r:
        assert r.status == 400
        assert "groupTag" in (await r.json())["message"]
    assert root["properties"] == {"a": 1}


async def test_a_reply_can_be_patched(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """Merge-patching a thread reply's properties works like a channel message's."""
    root = sim.post_system(702, "root")
    reply = sim.post_system(702, "r", thread_of=root["id"], properties={"x": {"y": 1}})
    headers = {**auth, "Content-Type": "application/merge-patch+json"}
    data = '{"properties": {"x": {"z": 2}}}'
    async with http.patch(f"{api}/messages/{reply['id']}", data=data, headers=headers) as r:
        assert r.status == 200
    assert sim.thread(root["id"])[0]["properties"] == {"x": {"y": 1, "z": 2}}


async def test_a_patch_can_be_applied_and_its_answer_lost(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """commit_then_fail covers PATCH: the patch is applied, then the answer fails."""
    root = sim.post_system(702, "root")
    sim.faults.enabled_for = {"chatkitty"}
    sim.faults.set(rate_commit_then_fail=1.0)
    headers = {**auth, "Content-Type": "application/json+merge-patch"}
    data = '{"properties": {"a": 1}}'
    with contextlib.suppress(aiohttp.ClientError):
        async with http.patch(f"{api}/messages/{root['id']}", data=data, headers=headers) as r:
            assert r.status == 500
    assert root["properties"] == {"a": 1}
    assert sim.faults.counts["commit_then_fail"] == 1


async def test_the_app_wide_list_can_be_unserved_while_channel_pages_work(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """app_wide_list_status: GET /messages answers that status; a channel's page still lists."""
    posted = sim.post_as(702, "jane", "/listings help")
    sim.app_wide_list_status = 501
    status, body = await _get(http, f"{api}/messages", auth)
    assert (status, body["error"]) == (501, "ServerError")
    _, page = await _get(http, f"{api}/channels/702/messages", auth)
    assert _ids(page) == [posted["id"]]


async def test_new_messages_can_be_refused_while_reads_work(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """refuse_posts_with: channel messages and thread replies answer that status and
    store nothing; GETs still answer."""
    root = sim.post_as(702, "jane", "/listings help")
    sim.refuse_posts_with = 503
    body = {"type": "TEXT", "body": "answer"}
    assert (await _send(http, f"{api}/threads/{root['id']}/messages", auth, body))[0] == 503
    assert (await _send(http, f"{api}/channels/702/messages", auth, body))[0] == 503
    assert sim.thread(root["id"]) == []
    assert [m["id"] for m in sim.messages[702]] == [root["id"]]
    assert (await _get(http, f"{api}/threads/{root['id']}/messages", auth))[0] == 200


async def test_a_new_message_can_be_stored_and_its_response_lost(
    http: aiohttp.ClientSession, api: str, auth: dict[str, str], sim: ChatKittySim
) -> None:
    """lose_posts: that many next new messages are stored, then the connection drops."""
    root = sim.post_as(702, "jane", "/listings help")
    sim.lose_posts = 1
    body = {"type": "TEXT", "body": "answer"}
    with pytest.raises(aiohttp.ClientError):
        await _send(http, f"{api}/threads/{root['id']}/messages", auth, body)
    assert [m["body"] for m in sim.thread(root["id"])] == ["answer"]
    assert (await _send(http, f"{api}/threads/{root['id']}/messages", auth, body))[0] == 200
